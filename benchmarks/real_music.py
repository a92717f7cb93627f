"""Build mp3net datasets from real recordings and sampled instruments that Debian bookworm installs.

Each set goes to ``~/datasets/<set>/``: the raw audio in ``audio/`` (links into the Debian package for the
game soundtracks, FluidSynth renders of music21 scores for the others), the dataset that ``mp3net prepare``
makes of it in ``prepared/``, and ``LICENSES.md`` and ``SOURCES.json`` (every file's source, licence and
attribution) both beside ``audio/`` and inside ``prepared/``. Audio is never committed. Re-running skips
what is already there. ``--list`` prints the sets and their licences; ``--install`` installs what a set
needs with apt-get. The commands (add ``--install`` on a fresh machine):

    python benchmarks/real_music.py --set singularity     # 64 min, CC-BY-SA-3.0 electronic/orchestral
    python benchmarks/real_music.py --set planetblupi     # 163 min, GPL-3.0-or-later
    python benchmarks/real_music.py --set drascula        # 47 min, bespoke licence: measure only, never ship
    python benchmarks/real_music.py --set piano           # 157 min of music21 scores on FluidR3's grand piano
    python benchmarks/real_music.py --set piano --limit 3 # the first three scores only
    python benchmarks/real_music.py --set quartets        # 261 min of string quartets on GM strings

``--soundfont musescore`` renders with MuseScore_General (its piano: the public-domain Splendid Grand)
instead of FluidR3_GM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SAMPLE_RATE = 44100  # of the FluidSynth renders; `mp3net prepare` resamples to the preset's rate
RENDER_TIMEOUT_S = 120  # one score's render (about 2-10 s for 5 minutes of music here)


@dataclass(frozen=True)
class MusicSet:
    """One dataset: where its audio comes from and what its licence allows."""

    kind: str  # "package": the audio files of a Debian package; "scores": music21 scores through FluidSynth
    packages: tuple[str, ...]  # Debian packages it needs (the SoundFont is added for "scores")
    licence: str  # SPDX identifier, or LicenseRef-… where none exists
    shippable: str  # may a model trained on it be shipped: "yes", "with conditions" or "no"
    conditions: str  # what shipping requires, or why not
    attribution: str
    audio_dir: str = ""  # "package": where the package puts its audio files
    description: str = ""


SETS: dict[str, MusicSet] = {
    "singularity": MusicSet(
        kind="package",
        packages=("singularity-music",),
        licence="CC-BY-SA-3.0",
        shippable="with conditions",
        conditions="credit Max McCracken; a model trained on it is shared under CC-BY-SA-3.0 (ShareAlike)",
        attribution="Endgame: Singularity soundtrack, (C) 2007-2008, 2012 Max McCracken",
        audio_dir="/usr/share/games/singularity/music",
        description="16 tracks, 64 min, 48 kHz stereo Ogg: ambient electronic and orchestral game music",
    ),
    "planetblupi": MusicSet(
        kind="package",
        packages=("planetblupi-music-ogg",),
        licence="GPL-3.0-or-later",
        shippable="with conditions",
        conditions="a model trained on it is distributed under GPL-3.0-or-later, with credit",
        attribution="Planet Blupi music, (C) 1997 Daniel Roux, EPSITEC SA & Denis Dumoulin; "
        "2017-2018 Mathieu Schroeter",
        audio_dir="/usr/share/planetblupi/music",
        description="10 tracks, 163 min, 44.1 kHz stereo Ogg: produced game music (long tracks hold loops)",
    ),
    "drascula": MusicSet(
        kind="package",
        packages=("drascula-music",),
        licence="LicenseRef-Drascula",
        shippable="no",
        conditions="bespoke freeware licence (no fee, modified versions marked): use to measure, never ship",
        attribution="Drascula: The Vampire Strikes Back music, (C) 1996-2008 Alcachofa Soft S.L.",
        audio_dir="/usr/share/scummvm/drascula/audio",
        description="31 tracks, 47 min, 44.1 kHz stereo Ogg: adventure-game score",
    ),
    "piano": MusicSet(
        kind="scores",
        packages=("fluidsynth",),
        licence="LicenseRef-PD-composition AND MIT",
        shippable="yes",
        conditions="compositions in the public domain; keep the SoundFont's MIT notice; music21 warns "
        "that some corpus encodings restrict commercial use: SOURCES.json lists each file's own notice",
        attribution="music21 corpus scores (composers in SOURCES.json); SoundFont credited in LICENSES.md",
        description="keyboard works, Mozart and Haydn quartets and 60 Bach chorales, every part on program 0",
    ),
    "quartets": MusicSet(
        kind="scores",
        packages=("fluidsynth",),
        licence="LicenseRef-PD-composition AND MIT",
        shippable="yes",
        conditions="as for piano",
        attribution="music21 corpus scores (composers in SOURCES.json); SoundFont credited in LICENSES.md",
        description="Mozart, Haydn and Beethoven string quartets, each part on its own GM instrument",
    ),
}

SOUNDFONTS = {  # name: (Debian package, file, licence, credit)
    "fluid": (
        "fluid-soundfont-gm",
        "/usr/share/sounds/sf2/FluidR3_GM.sf2",
        "MIT",
        "FluidR3_GM SoundFont, (C) 2000-2002, 2008 Frank Wen and contributors",
    ),
    "musescore": (
        "musescore-general-soundfont",
        "/usr/share/sounds/sf3/MuseScore_General_Full.sf3",
        "MIT AND CC0-1.0 AND LicenseRef-PD",
        "MuseScore_General SoundFont, (C) 2018-2021 S. Christian Collins; FluidR3 (C) Frank Wen; "
        "Splendid Grand piano (public domain)",
    ),
}

KEYBOARD = [  # (music21 corpus path, composer): only MusicXML encodings (KernScores' terms are stricter)
    ("mozart/k545/movement1_exposition.mxl", "W. A. Mozart"),
    ("joplin/maple_leaf_rag.mxl", "Scott Joplin"),
    ("cpebach/h186.mxl", "C. P. E. Bach"),
    *[(f"schumann_clara/polonaise_op1n{i}.mxl", "Clara Schumann") for i in range(1, 5)],
    ("schumann_robert/dichterliebe_no2.xml", "Robert Schumann"),
    ("schoenberg/opus19/movement2.mxl", "Arnold Schoenberg"),
    ("schoenberg/opus19/movement6.mxl", "Arnold Schoenberg"),
]
MOZART = [
    (f"mozart/{k}/movement{m}.mxl", "W. A. Mozart")
    for k, n in [("k80", 4), ("k155", 3), ("k156", 4)]
    for m in range(1, n + 1)
] + [(f"mozart/k458/movement{m}.mxl", "W. A. Mozart") for m in range(1, 5)]
HAYDN = [(f"haydn/opus1no1/movement{m}.mxl", "Joseph Haydn") for m in range(1, 6)] + [
    (f"haydn/opus74no1/movement{m}.mxl", "Joseph Haydn") for m in range(1, 5)
]
BEETHOVEN = [(f"beethoven/opus18no1/movement{m}.mxl", "Ludwig van Beethoven") for m in range(1, 5)] + [
    (f"beethoven/opus59no{n}/movement{m}.mxl", "Ludwig van Beethoven") for n in (1, 2, 3) for m in range(1, 5)
]
N_CHORALES = 60


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments end in one line on stderr, not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SystemExit(f"real_music.py: error: {message} (see --help)")


def fail(message: str) -> None:
    raise SystemExit(f"real_music.py: error: {message}")


def score_list(name: str) -> list[tuple[str, str]]:
    """The (corpus path, composer) of each score of a "scores" set, in render order."""
    if name == "quartets":
        return MOZART + HAYDN + BEETHOVEN
    from music21 import corpus

    bach = sorted(str(p).split("/corpus/", 1)[1] for p in corpus.getComposer("bach"))
    chorales = [p for p in bach if re.fullmatch(r"bach/bwv\d+\.\d+\.mxl", p)][:N_CHORALES]
    return KEYBOARD + MOZART + HAYDN + [(p, "J. S. Bach") for p in chorales]


def needed_packages(name: str, soundfont: str) -> list[str]:
    spec = SETS[name]
    return list(spec.packages) + ([SOUNDFONTS[soundfont][0]] if spec.kind == "scores" else [])


def apt_install(packages: list[str]) -> None:
    """apt-get install -y the packages (sudo when not root); on failure apt-get update and retry once."""
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "-q", *packages]
    print("installing:", " ".join(packages), flush=True)
    if subprocess.run(install, env=env).returncode == 0:
        return
    subprocess.run([*sudo, "apt-get", "update", "-q"], env=env)
    if subprocess.run(install, env=env).returncode != 0:
        fail(f"apt-get install {' '.join(packages)} failed")


def check_tools(name: str, soundfont: str) -> None:
    """One line naming what is missing, and how to get it."""
    spec = SETS[name]
    hint = f"run with --install, or: sudo apt-get install {' '.join(needed_packages(name, soundfont))}"
    if spec.kind == "package" and not Path(spec.audio_dir).is_dir():
        fail(f"{spec.audio_dir} is missing (Debian package {spec.packages[0]}); {hint}")
    if spec.kind == "scores":
        if shutil.which("fluidsynth") is None:
            fail(f"the fluidsynth program is missing; {hint}")
        if not Path(SOUNDFONTS[soundfont][1]).is_file():
            fail(f"the SoundFont {SOUNDFONTS[soundfont][1]} is missing; {hint}")
        try:
            import music21  # noqa: F401
        except ImportError:
            fail("music21 is missing: pip install -e '.[demo]' (or pip install music21)")


def package_version(package: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def link_package_audio(name: str, audio: Path, limit: int | None) -> list[dict]:
    """Link the package's first ``limit`` audio files into ``audio`` (sub-folders kept); the SOURCES.json
    entries of every file linked there, by this run or an earlier one."""
    spec = SETS[name]
    src_root = Path(spec.audio_dir)
    files = [p for p in src_root.rglob("*") if p.suffix.lower() in {".ogg", ".mp3", ".flac", ".wav"}]
    files.sort(
        key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]
    )  # track2 < track10
    version = package_version(spec.packages[0])
    wanted = files[:limit]
    for i, src in enumerate(wanted):
        dst = audio / src.relative_to(src_root)
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
        print(f"[{i + 1}/{len(wanted)}] {dst.relative_to(audio)}", flush=True)
    return [
        {
            "file": str(src.relative_to(src_root)),
            "source": f"Debian package {spec.packages[0]} {version}: {src}",
            "licence": spec.licence,
            "attribution": spec.attribution,
        }
        for src in files
        if (audio / src.relative_to(src_root)).exists()
    ]


def to_midi(path: str, midi: Path, piano: bool) -> str | None:
    """Write the corpus score ``path`` as a MIDI file (every part on program 0 when ``piano``); its notice."""
    from music21 import corpus, instrument, repeat

    score = corpus.parse(path)
    if piano:
        for part in score.parts:
            for inst in list(part.recurse().getElementsByClass(instrument.Instrument)):
                inst.activeSite.remove(inst)
            part.insert(0, instrument.Piano())
    for grace in [n for n in score.recurse().notes if n.duration.isGrace]:
        grace.activeSite.remove(grace)  # zero-length in MIDI, their note-off written before their note-on
    tmp = midi.with_suffix(".tmp.mid")
    try:
        score.write("midi", fp=str(tmp))  # music21 expands the repeats
    except repeat.ExpanderException:  # badly formed repeats: play it through once
        drop_repeats(score)
        score.write("midi", fp=str(tmp))
    one_voice_per_key(tmp)
    tmp.replace(midi)
    notice = str(score.metadata.copyright or "").strip() if score.metadata is not None else ""
    return notice or None


def one_voice_per_key(path: Path) -> None:
    """Rewrite the MIDI file so that each key sounds once at a time and stops: music21 writes a second
    note-on for a pitch that another voice of the part still holds (unisons, double stops) and note-offs
    before their note-ons, which leaves FluidSynth voices that never end (string notes held to the end, and
    a render that never stops)."""
    from music21 import midi

    mf = midi.MidiFile()
    mf.open(str(path))
    mf.read()
    mf.close()
    for track in mf.tracks:
        pairs = list(zip(track.events[0::2], track.events[1::2], strict=False))
        if len(track.events) % 2 == 0 and all(d.isDeltaTime() and not e.isDeltaTime() for d, e in pairs):
            track.events = keyed_events(track, pairs)  # else not the list music21 writes: left as it is
            track.updateEvents()
    mf.open(str(path), "wb")
    mf.write()
    mf.close()


def keyed_events(track, pairs: list) -> list:
    """The track's (delta time, event) list with a note-off before each note-on of a sounding key, only the
    note-off that ends the last overlapping note of a key kept, and every key still sounding ended."""
    from collections import Counter

    from music21 import midi

    events, carry, sounding = [], 0, Counter()

    def add(event) -> None:
        nonlocal carry
        events.extend([midi.DeltaTime(track, time=carry), event])
        carry = 0

    def note_off(channel: int, pitch: int):
        off = midi.MidiEvent(track, type=midi.ChannelVoiceMessages.NOTE_OFF, channel=channel)
        off.pitch, off.velocity = pitch, 0
        return off

    for delta, event in pairs:
        carry += delta.time
        if event.type == midi.MetaEvents.END_OF_TRACK:
            for key in [k for k, n in sounding.items() if n > 0]:
                add(note_off(*key))
        elif event.isNoteOn() or event.isNoteOff():
            key = (event.channel, event.pitch)
            if event.isNoteOff() and sounding[key] != 1:  # stray (0) or not the last overlapping note (> 1)
                sounding[key] = max(0, sounding[key] - 1)
                continue
            if event.isNoteOn() and sounding[key]:
                add(note_off(*key))
            sounding[key] = sounding[key] + 1 if event.isNoteOn() else 0
        add(event)
    return events


def drop_repeats(score) -> None:
    """Remove the repeat barlines and repeat expressions (da capo, segno, ...) of a music21 score."""
    from music21 import bar, repeat

    for barline in list(score.recurse().getElementsByClass(bar.Repeat)):
        measure = barline.activeSite
        if measure.leftBarline is barline:
            measure.leftBarline = None
        if measure.rightBarline is barline:
            measure.rightBarline = None
    for expression in list(score.recurse().getElementsByClass(repeat.RepeatExpression)):
        expression.activeSite.remove(expression)


def render(midi: Path, wav: Path, soundfont: str) -> None:
    """FluidSynth's offline render of ``midi`` into ``wav`` (44.1 kHz stereo, reverb and chorus on)."""
    tmp = wav.with_suffix(".tmp.wav")
    cmd = [
        "fluidsynth",
        "-ni",
        "-q",
        "-F",
        str(tmp),
        "-r",
        str(SAMPLE_RATE),
        SOUNDFONTS[soundfont][1],
        str(midi),
    ]
    try:  # renders take seconds; a MIDI file that never ends would fill the disk
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        fail(f"fluidsynth did not finish {midi} within {RENDER_TIMEOUT_S} s")
    if out.returncode != 0 or not tmp.is_file() or tmp.stat().st_size <= 44:
        tmp.unlink(missing_ok=True)
        fail(f"fluidsynth failed on {midi}: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")
    tmp.replace(wav)


def render_scores(name: str, root: Path, audio: Path, soundfont: str, limit: int | None) -> list[dict]:
    """Render the set's first ``limit`` scores (skipping those already rendered); the SOURCES.json entries of
    every score rendered into ``audio``, by this run or an earlier one."""
    scores = score_list(name)
    wanted = scores[:limit]
    (root / "midi").mkdir(parents=True, exist_ok=True)
    notices_file = root / "notices.json"  # each score's embedded notice, kept for resumed runs
    notices = json.loads(notices_file.read_text()) if notices_file.is_file() else {}
    for i, (path, _) in enumerate(wanted):
        wav, midi = audio / f"{stem(path)}.wav", root / "midi" / f"{stem(path)}.mid"
        status = "kept"
        if not wav.is_file():
            try:
                notices[path] = to_midi(path, midi, piano=name == "piano")
            except Exception as e:  # music21 cannot read or convert this encoding: leave it out
                print(f"[{i + 1}/{len(wanted)}] skipped {path}: {type(e).__name__}: {e}", flush=True)
                continue
            render(midi, wav, soundfont)
            notices_file.write_text(json.dumps(notices, indent=1))
            status = "rendered"
        print(f"[{i + 1}/{len(wanted)}] {status} {wav.name}", flush=True)
    sf_name, sf_licence = Path(SOUNDFONTS[soundfont][1]).name, SOUNDFONTS[soundfont][2]
    return [
        {
            "file": f"{stem(path)}.wav",
            "source": f"music21 corpus: {path}",
            "composer": composer,
            "licence": SETS[name].licence,
            "encoding_notice": notices.get(path),
            "soundfont": f"{sf_name} ({sf_licence})",
        }
        for path, composer in scores
        if (audio / f"{stem(path)}.wav").is_file()
    ]


def stem(corpus_path: str) -> str:
    """The file name of a corpus score's render: ``mozart/k80/movement1.mxl`` → ``mozart_k80_movement1``."""
    return corpus_path.rsplit(".", 1)[0].replace("/", "_")


def minutes(audio: Path, sources: list[dict]) -> float:
    """Adds each entry's length in minutes; returns the total."""
    import soundfile

    for s in sources:
        s["minutes"] = round(soundfile.info(str(audio / s["file"])).duration / 60, 2)
    return sum(s["minutes"] for s in sources)


def write_licences(
    name: str, root: Path, out: Path, sources: list[dict], soundfont: str, total: float
) -> None:
    """LICENSES.md (the set's licence, what shipping needs, credits, one row per file) and SOURCES.json in
    ``root``, copied into the prepared dataset ``out``."""
    spec = SETS[name]
    lines = [
        f"# {name}: licences and sources",
        "",
        spec.description,
        "",
        f"- Licence: {spec.licence}",
        f"- May a model trained on it be shipped: {spec.shippable} ({spec.conditions})",
        f"- Attribution: {spec.attribution}",
        f"- Files: {len(sources)}, {total:.1f} minutes",
    ]
    if spec.kind == "package":
        lines.append(
            f"- Full licence text: /usr/share/doc/{spec.packages[0]}/copyright (copied here as copyright.txt)"
        )
        shutil.copyfile(f"/usr/share/doc/{spec.packages[0]}/copyright", root / "copyright.txt")
    else:
        sf_pkg, sf_file, sf_licence, sf_credit = SOUNDFONTS[soundfont]
        lines += [
            f"- SoundFont: {sf_file} (Debian {sf_pkg}), {sf_licence}: {sf_credit}; "
            f"full text /usr/share/doc/{sf_pkg}/copyright",
            "- Scores: music21 corpus (BSD-3-Clause software; "
            "the encodings carry their own notices, listed below where a file has one)",
        ]
    lines += ["", "| file | source | composer | minutes | notice |", "|---|---|---|---|---|"]
    for s in sources:
        row = [
            s["file"],
            s["source"],
            s.get("composer", ""),
            str(s["minutes"]),
            s.get("encoding_notice") or "",
        ]
        lines.append("| " + " | ".join(row) + " |")
    summary = {
        "set": name,
        "licence": spec.licence,
        "shippable": spec.shippable,
        "conditions": spec.conditions,
        "attribution": spec.attribution,
        "minutes": round(total, 1),
        "files": sources,
    }
    (root / "LICENSES.md").write_text("\n".join(lines) + "\n")
    (root / "SOURCES.json").write_text(json.dumps(summary, indent=1) + "\n")
    if out.is_dir():  # the licences travel with the prepared dataset
        for f in ("LICENSES.md", "SOURCES.json", "copyright.txt"):
            if (root / f).is_file():
                shutil.copyfile(root / f, out / f)


def prepare(audio: Path, out: Path, preset: str, workers: int | None) -> None:
    cmd = [sys.executable, "-m", "mp3net", "prepare", str(audio), str(out), "--preset", preset]
    cmd += ["--workers", str(workers)] if workers else []
    print("$", " ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        fail(f"mp3net prepare {audio} {out} failed")


def print_sets() -> None:
    for name, s in SETS.items():
        where = s.audio_dir or "music21 corpus + FluidSynth"
        print(f"{name:12} {s.licence:34} ship: {s.shippable:16} {'+'.join(s.packages):22} {where}")
        print(f"{'':12} {s.description}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(description=__doc__.split("\n\n")[0], epilog="Sets: " + ", ".join(SETS))
    p.add_argument("--set", choices=list(SETS), help="which dataset to build")
    p.add_argument(
        "--list", action="store_true", help="print the sets, their licences and packages, and stop"
    )
    p.add_argument("--install", action="store_true", help="apt-get install what the set needs first")
    p.add_argument("--limit", type=int, help="only the first N files or scores")
    p.add_argument("--root", type=Path, help="the set's folder (default ~/datasets/SET)")
    p.add_argument("--out", type=Path, help="the prepared dataset (default ROOT/prepared)")
    p.add_argument("--preset", default="laptop", help="passed to mp3net prepare (default laptop)")
    p.add_argument("--workers", type=int, help="passed to mp3net prepare")
    p.add_argument("--soundfont", choices=list(SOUNDFONTS), default="fluid", help="for the score sets")
    p.add_argument("--no-prepare", action="store_true", help="stop after the raw audio and the licence files")
    args = p.parse_args(argv)
    if not args.list and args.set is None:
        p.error("--set is required (one of " + ", ".join(SETS) + ")")
    if args.limit is not None and args.limit < 1:
        p.error(f"--limit must be at least 1, not {args.limit}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        print_sets()
        return 0
    if args.install:
        apt_install(needed_packages(args.set, args.soundfont))
    check_tools(args.set, args.soundfont)
    root = (args.root or Path.home() / "datasets" / args.set).expanduser()
    audio, out = root / "audio", (args.out or root / "prepared")
    audio.mkdir(parents=True, exist_ok=True)
    if SETS[args.set].kind == "package":
        sources = link_package_audio(args.set, audio, args.limit)
    else:
        sources = render_scores(args.set, root, audio, args.soundfont, args.limit)
    total = minutes(audio, sources)
    print(f"{args.set}: {len(sources)} files, {total:.1f} minutes of audio in {audio}", flush=True)
    if not args.no_prepare:
        prepare(audio, out, args.preset, args.workers)
    write_licences(args.set, root, out, sources, args.soundfont, total)
    print(f"done: {audio if args.no_prepare else out} (licences in {root / 'LICENSES.md'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
