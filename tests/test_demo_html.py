"""mp3net.demo_html: the report page holds every track and table row, with every value escaped."""

from __future__ import annotations

import re

from mp3net import demo_html
from mp3net.config import preset
from mp3net.demo_html import Track


def test_page_lists_every_track_and_row_escaped() -> None:
    gen = [Track(f"seed {i}", f"generated/seed-{i}.wav", f"generated/seed-{i}.png") for i in range(3)]
    real = [Track("real <clip> & co", "real/real-0.wav", "real/real-0.png")]
    rows = [("tonality", "0.70", "0.40"), ("FD <features>", "1.0", "9.0")]
    pre = demo_html.pretrained_section(gen[:1], rows[:1], "pretrained/tonality.png")
    m = preset("tiny").model
    page = demo_html.page(
        dataset="added 2 tracks & more",
        model=m,
        steps=12,
        clips=64,
        minutes=0.5,
        elapsed_minutes=1.25,
        out="demo<out>",
        generated=gen,
        real=real,
        rows=rows,
        n_fake=3,
        n_real=1,
        pretrained=pre,
    )
    assert page.count("<audio ") == len(gen) + len(real) + 1
    srcs = re.findall(r'<audio controls preload="none" src="([^"]+)"', page)
    assert srcs == [t.audio for t in gen + real + gen[:1]]
    assert "real &lt;clip&gt; &amp; co" in page and "<clip>" not in page
    assert "FD &lt;features&gt;" in page and page.count("<tr><td>") == len(rows) + 1
    assert "added 2 tracks &amp; more" in page and "demo&lt;out&gt;" in page
    assert f"{m.sample_rate} Hz" in page and "12 steps on a table of 64" in page
    assert 'src="pretrained/tonality.png"' in page
    assert "could not be loaded: a &lt;b&gt;" in demo_html.pretrained_error("a <b>")


def test_side_by_side_puts_each_clip_index_in_one_row_and_each_model_in_one_column():
    from mp3net.demo_html import Track, side_by_side

    def tracks(prefix: str, n: int) -> list[Track]:
        return [Track(f"{prefix} {i}", f"{prefix}/{i}.wav", f"{prefix}/{i}.png") for i in range(n)]

    rows_a = [("tonality", "38%", "20%"), ("FD", "1 (halves)", "90")]
    rows_b = [("tonality", "38%", "30%"), ("FD", "1 (halves)", "50")]
    out = side_by_side(
        {"real": tracks("r", 2), "run": tracks("g", 2), "shipped": tracks("p", 1)},
        {"run": rows_a, "shipped": rows_b},
    )
    table_rows = out.split("<tr>")
    assert "<th>real</th><th>run</th><th>shipped</th>" in table_rows[1]
    assert all(x in table_rows[2] for x in ("r/0.wav", "g/0.wav", "p/0.wav"))
    assert "r/1.wav" in table_rows[3] and "p/" not in table_rows[3]
    assert "<td>FD</td><td>1 (halves)</td><td>90</td><td>50</td>" in out
    # a model without tracks gets no column
    assert "<th>shipped</th>" not in side_by_side({"real": tracks("r", 1), "shipped": []}, {})
