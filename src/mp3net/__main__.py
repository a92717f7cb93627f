from mp3net.cli import main

raise SystemExit(main())
