"""Is the haze the decoder's or the sampler's? The held lines (:func:`mp3net.evaluate.held_lines`: one
Hann window over the whole clip) of 8 clips of a pretraining run's table, of G's reconstructions of them (G
applied to their learned latents, at the training levels), and of 8 samples of its export; the per-bin
distance of the reconstructions at two STFT windows; and with ``--out`` three clips' whole-clip spectra,
real over reconstruction, up to 2.75 kHz (docs/experiments.md#issue-32-the-grass-between-partials).

    python benchmarks/table_lines.py ~/runs/r33-chorales --data ~/runs/chorales --out /tmp/lines.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from mp3net import artifacts
from mp3net.config import Config
from mp3net.data import ClipDataset
from mp3net.dsp.mdct import imdct
from mp3net.dsp.spectral import audio_power_spectrogram, log_power
from mp3net.evaluate import clip_spectrum_db, held_lines
from mp3net.model import Generator
from mp3net.train.pretrain import checkpoint_export

ROWS = 8
PICTURED = (5, 4, 0)  # rows of the 8 in the picture
TOP_HZ = 2750


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a pretraining run directory")
    ap.add_argument("--data", type=Path, required=True, help="its prepared data")
    ap.add_argument("--out", type=Path, help="a PNG of three clips' spectra, real and reconstructed")
    args = ap.parse_args()
    found = artifacts.load_latest(args.run / "pretrain")
    if found is None:
        raise SystemExit(f"{args.run}: no pretraining checkpoint")
    state, where = found
    cfg = Config.from_dict(state["config"])
    m = cfg.model
    G = Generator(m)
    G.load_state_dict(state["G"])
    E, _ = checkpoint_export(state)
    rows = list(range(0, len(state["clips"]), max(1, len(state["clips"]) // ROWS)))[:ROWS]
    data = ClipDataset(args.data, m.clip_samples, m.sample_rate, m.channels)
    real = torch.stack([data[int(state["clips"][r])] for r in rows]).float()
    with torch.no_grad():
        recon = imdct(G.eval()(state["latents"]["weight"][rows])).float()
        z = torch.randn(ROWS, m.latent_dim, generator=torch.Generator().manual_seed(0))
        samples = imdct(E.eval().generate(z))
    n = min(real.shape[-1], recon.shape[-1])
    real, recon = real[..., :n], recon[..., :n]
    print(f"{where}")
    for name, clips in (("real", real), ("reconstructed", recon), ("sampled", samples)):
        counts = [len(held_lines(c, m.sample_rate)) for c in clips]
        print(f"{name:14s} held lines per clip: {counts}")
    for n_fft in (256, 2048):
        pr, pf = audio_power_spectrogram(real, n_fft), audio_power_spectrogram(recon, n_fft)
        dist = 20 * float((log_power(pf) - log_power(pr)).abs().mean())
        print(f"window {n_fft}: reconstruction's log-spectrogram distance {dist:.2f} dB")
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(len(PICTURED), 1, figsize=(16, 3.3 * len(PICTURED)))
        for ax, i in zip(axes, PICTURED, strict=True):
            for x, label in ((real[i], "real clip"), (recon[i], "G's reconstruction of it")):
                db = clip_spectrum_db(x)
                hz = np.arange(len(db)) * m.sample_rate / x.shape[-1]
                ax.plot(hz[hz < TOP_HZ], db[hz < TOP_HZ], lw=0.6, label=label)
            ax.set_ylim(-40, 80)
            ax.set_ylabel("dB")
            ax.legend(loc="upper right")
        axes[-1].set_xlabel("Hz")
        fig.tight_layout()
        fig.savefig(args.out, dpi=70)


if __name__ == "__main__":
    main()
