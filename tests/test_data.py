"""mp3net.data: prepare (decode, channels, resample, normalise, shard, manifest) and clip sampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mp3net import preset
from mp3net.data import MANIFEST, ClipDataset, CropSampler, clip_indices, load_manifest, prepare, table_runs
from mp3net.utils import MP3NetError

CFG = preset("tiny").model
SR, CH, CLIP = CFG.sample_rate, CFG.channels, CFG.clip_samples


def tone(sr: int, seconds: float, channels: int, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    cols = [x * (1.0 if c == 0 else 0.5) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """Generated files of every kind; returns the folder and the expected duration of each good file."""
    src = tmp_path_factory.mktemp("src")
    (src / "sub" / "deeper").mkdir(parents=True)
    good = {
        "a_stereo_44k.wav": (44100, 4.0, 2, {}),
        "sub/b_mono_8k.flac": (8000, 3.5, 1, {}),
        "sub/deeper/c_stereo_48k.ogg": (48000, 3.2, 2, {"subtype": "VORBIS"}),
        "d_mono_22k.mp3": (22050, 3.6, 1, {"format": "MP3", "subtype": "MPEG_LAYER_III"}),
        "e_native.wav": (SR, 3.1, 2, {"subtype": "FLOAT"}),
    }
    expected = {}
    for name, (sr, sec, ch, kw) in good.items():
        sf.write(src / name, tone(sr, sec, ch, freq=300 + 40 * len(expected)), sr, **kw)
        expected[name] = sec
    (src / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" + bytes(200))
    (src / "empty.flac").write_bytes(b"")
    sf.write(src / "no_samples.wav", np.zeros((0, 2), np.float32), 44100)
    sf.write(src / "short.wav", tone(16000, 1.0, 2), 16000)
    sf.write(src / "silent.wav", np.zeros((SR * 4, 2), np.float32), SR)
    (src / "notes.txt").write_text("not audio")
    return src, expected


def test_prepare_lands_good_tracks_and_reports_bad(corpus, tmp_path):
    src, expected = corpus
    out = tmp_path / "ds"
    report = prepare(src, out, SR, CH, CLIP, workers=2, progress=False)
    assert report.added == len(expected) == report.total_tracks
    skipped = {Path(s).name: r for s, r in report.skipped}
    assert set(skipped) == {"corrupt.wav", "empty.flac", "no_samples.wav", "short.wav", "silent.wav"}
    assert skipped["corrupt.wav"].startswith("cannot decode")
    assert skipped["empty.flac"].startswith("empty")
    assert skipped["no_samples.wav"].startswith("empty")
    assert skipped["short.wav"].startswith("too short")
    assert skipped["silent.wav"].startswith("silent")

    m = load_manifest(out)
    assert (m["sample_rate"], m["channels"]) == (SR, CH)
    by_name = {Path(t["source"]).name: t for t in m["tracks"]}
    assert set(by_name) == {Path(n).name for n in expected}
    for name, sec in expected.items():
        t = by_name[Path(name).name]
        tol = 0.08 if name.endswith(".mp3") else 2 / SR  # mp3 decoders pad by up to a frame
        assert abs(t["duration"] - sec) <= tol, (name, t["duration"], sec)
        assert t["frames"] == round(t["duration"] * SR)
    # tracks are laid out back to back in the shards
    for s_i, s in enumerate(m["shards"]):
        ts = sorted((t for t in m["tracks"] if t["shard"] == s_i), key=lambda t: t["offset"])
        assert sum(t["frames"] for t in ts) == s["frames"]
        assert (out / s["file"]).stat().st_size == s["frames"] * CH * 2


def test_prepare_content_is_normalised_resampled_stereo(corpus, tmp_path):
    src, _ = corpus
    out = tmp_path / "ds"
    prepare(src, out, SR, CH, CLIP, workers=1, progress=False)
    ds = ClipDataset(out, CLIP, SR, CH)
    names = [Path(t["source"]).name for t in ds.tracks]
    # a file already at the target rate comes back exactly (up to int16 rounding) after peak normalisation
    i = names.index("e_native.wav")
    x = ds[ds._cum[i]].numpy()  # first clip of that track: [C, CLIP]
    ref = tone(SR, 3.1, 2, freq=300 + 40 * 4).T[:, :CLIP]
    ref = ref * (0.999 / np.abs(tone(SR, 3.1, 2, freq=300 + 40 * 4)).max())
    assert np.abs(x - ref).max() < 1.0 / 32767 + 1e-6
    # mono input is duplicated on both channels, and the 8 kHz file is resampled with its pitch kept
    j = names.index("b_mono_8k.flac")
    batch = ds.stack(iter([ds._cum[i], ds._cum[j] + 100]))  # a batch is the clips, in order
    assert batch.shape == (2, CH, CLIP) and np.array_equal(batch[0].numpy(), x)
    y = ds[ds._cum[j] + 100].numpy()
    assert np.array_equal(batch[1].numpy(), y)
    np.testing.assert_array_equal(y[0], y[1])
    spec = np.abs(np.fft.rfft(y[0]))
    assert abs(np.argmax(spec) * SR / CLIP - 340.0) < 2.0
    # every track is peak-normalised to 0.999 over both channels
    for k, t in enumerate(ds.tracks):
        pcm = ds._map(t["shard"])[t["offset"] : t["offset"] + t["frames"]]
        assert abs(np.abs(pcm).max() / 32767 - 0.999) < 2e-4, names[k]


def test_prepare_rerun_adds_nothing_and_cleans_leftovers(corpus, tmp_path):
    src, expected = corpus
    out = tmp_path / "ds"
    prepare(src, out, SR, CH, CLIP, progress=False)
    before = json.loads((out / MANIFEST).read_text())
    # leftovers of an interrupted run: a half-written temp shard and a shard the manifest never listed
    (out / "shard-00007.i16.tmp").write_bytes(b"\x00" * 100)
    (out / "shard-00008.i16").write_bytes(b"\x00" * 400)
    report = prepare(src, out, SR, CH, CLIP, progress=False)
    assert report.added == 0 and report.already == len(expected)
    after = json.loads((out / MANIFEST).read_text())
    assert after["tracks"] == before["tracks"] and after["shards"] == before["shards"]
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST] + [s["file"] for s in after["shards"]])
    # a new file is appended in a new shard, old tracks untouched
    extra = tmp_path / "src2"
    extra.mkdir()
    sf.write(extra / "new.wav", tone(SR, 3.5, 2), SR)
    report = prepare(extra, out, SR, CH, CLIP, progress=False)
    assert report.added == 1 and report.total_tracks == len(expected) + 1
    m = load_manifest(out)
    assert m["tracks"][: len(before["tracks"])] == before["tracks"]
    assert len(m["shards"]) == len(before["shards"]) + 1


def test_prepare_interrupted_keeps_finished_shards_and_drops_the_open_one(tmp_path, monkeypatch):
    import mp3net.data as data

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        sf.write(src / f"t{i}.wav", tone(SR, 3.0, 2, freq=220.0 * (i + 1)), SR)
    decode = data._process_file

    def interrupted_at_the_fourth(job):
        if job[0].endswith("t3.wav"):
            raise KeyboardInterrupt
        return decode(job)

    monkeypatch.setattr(data, "_process_file", interrupted_at_the_fourth)
    out = tmp_path / "ds"
    # two tracks per shard: the first shard is finished, the second holds one track when the run stops
    shard_bytes = int(2.5 * SR) * CH * 2 * 2
    with pytest.raises(KeyboardInterrupt):
        prepare(src, out, SR, CH, CLIP, progress=False, shard_bytes=shard_bytes)
    m = load_manifest(out)
    assert [Path(t["source"]).name for t in m["tracks"]] == ["t0.wav", "t1.wav"]
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST] + [s["file"] for s in m["shards"]])
    monkeypatch.setattr(data, "_process_file", decode)
    report = prepare(src, out, SR, CH, CLIP, progress=False, shard_bytes=shard_bytes)
    assert report.added == 2 and report.already == 2 and report.total_tracks == 4


def test_prepare_fails_clearly(corpus, tmp_path):
    src, _ = corpus
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"nonsense")
    sf.write(bad / "short.wav", tone(SR, 0.5, 1), SR)
    with pytest.raises(MP3NetError, match="no usable audio"):
        prepare(bad, tmp_path / "o1", SR, CH, CLIP, progress=False)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(MP3NetError, match="no audio files"):
        prepare(tmp_path / "nothing", tmp_path / "o2", SR, CH, CLIP, progress=False)
    with pytest.raises(MP3NetError, match="does not exist"):
        prepare(tmp_path / "missing", tmp_path / "o3", SR, CH, CLIP, progress=False)
    out = tmp_path / "ds"
    prepare(src, out, SR, CH, CLIP, progress=False)
    with pytest.raises(MP3NetError, match="use another OUT_DIR"):
        prepare(src, out, 22016, CH, CLIP, progress=False)
    with pytest.raises(MP3NetError, match="same preset"):
        ClipDataset(out, CLIP, 22016, CH)
    with pytest.raises(MP3NetError, match="no track of at least one clip"):
        ClipDataset(out, SR * 60, SR, CH)


def test_clips_cover_all_offsets_and_never_straddle_tracks(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    # each track is a constant ramp id so a clip's origin is readable from its samples
    lengths = [CLIP + 5, CLIP, CLIP + 40]
    for k, n in enumerate(lengths):
        x = np.full((n, 2), 0.1 * (k + 1), np.float32)
        x[:, 1] = np.linspace(0.01, 0.1 * (k + 1), n)  # channel 1 is a ramp ending at the peak
        sf.write(src / f"t{k}.wav", x, SR, subtype="FLOAT")
    prepare(src, tmp_path / "ds", SR, CH, CLIP, progress=False, shard_bytes=1)  # one shard per track
    ds = ClipDataset(tmp_path / "ds", CLIP, SR, CH)
    assert len(ds) == sum(n - CLIP + 1 for n in lengths)
    for i in range(len(ds)):
        t, start = ds.locate(i)
        assert 0 <= start <= ds.tracks[t]["frames"] - CLIP
        x = ds[i]
        assert x.shape == (CH, CLIP)
        assert float(x[0].min()) == float(x[0].max())  # one track only: constant channel 0
    last = ds[len(ds) - 1]
    assert abs(float(last[1, -1]) - 0.999) < 1e-3  # the very last sample of the last track is reachable
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_the_table_holds_runs_of_consecutive_clips_within_tracks(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    clips = [7, 1, 3, 10]  # whole clips per track (+ a remainder that no tile reaches)
    for k, n in enumerate(clips):
        sf.write(src / f"t{k}.wav", np.full((n * CLIP + 17, 2), 0.1, np.float32), SR, subtype="FLOAT")
    prepare(src, tmp_path / "ds", SR, CH, CLIP, progress=False)
    ds = ClipDataset(tmp_path / "ds", CLIP, SR, CH)
    every = table_runs(ds, 1000, 4)  # more rows than the data holds: all of its clips
    assert sum(map(len, every)) == sum(clips)
    for run in every:
        track = {ds.locate(i)[0] for i in run}
        assert len(track) == 1  # no run crosses from one track into the next
        starts = [ds.locate(i)[1] for i in run]
        assert starts == [starts[0] + k * CLIP for k in range(len(run))] and starts[0] % CLIP == 0
        assert 1 <= len(run) <= 4
    assert sorted(map(len, every)) == [1, 3, 3, 3, 3, 4, 4]  # 7 = 4 + 3, 1, 3, 10 = 4 + 3 + 3
    part = table_runs(ds, 9, 4)
    assert sum(map(len, part)) == 9 and len({ds.locate(r[0])[0] for r in part}) >= 3  # spread over tracks
    assert table_runs(ds, 5, 1) == [[i] for i in clip_indices(len(ds), 5)]  # single clips, as before
    with pytest.raises(ValueError, match="at least one clip"):
        table_runs(ds, 5, 0)


def test_crop_sampler_is_seeded_per_rank_and_resumable():
    a = CropSampler(10**9, 4, seed=3, rank=0)
    b = CropSampler(10**9, 4, seed=3, rank=1)
    it = iter(a)
    first = [next(it) for _ in range(5)]
    assert first != [next(iter(b)) for _ in range(5)]
    assert first[0] != first[1]
    resumed = CropSampler(10**9, 4, seed=0)
    resumed.load_state_dict(a.state_dict(consumed=3))
    assert next(iter(resumed)) == first[3]
    assert [next(iter(CropSampler(10**9, 4, seed=3))) for _ in range(2)] == [first[0]] * 2
