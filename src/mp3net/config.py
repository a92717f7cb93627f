"""Typed configuration: model, data and training settings, with named presets.

A :class:`Config` is saved as ``config.json`` into every run directory, checkpoint and exported model,
and can be overridden from the command line with ``section.field=value`` strings.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_VERSION = 1


UPSAMPLE_MODES = ("transposed", "resize", "kernel4")
OUTPUT_MODES = ("linear", "oscillator", "linear+oscillator", "bank", "linear+bank")
# D's pooled branch halves time and bands POOLED_DOWNSAMPLES times: both must be at least 2^that long
POOLED_DOWNSAMPLES = 4
POOLED_MIN_LENGTH = 2**POOLED_DOWNSAMPLES
# D's spectral view halves time and frequency this many times (docs/networks.md#spectral-discriminator)
SPECTRAL_DOWNSAMPLES = 5
LOSSES = ("wgan-gp", "ns-r1", "rpgan-r1r2")
LATENT_INITS = ("pca", "random")  # pretrain.latent_init
LR_DECAY_FLOOR = 0.1  # pretrain.lr_decay_*: the rates end at this share of pretrain.lr and latent_lr


class ConfigError(ValueError):
    """A config that cannot be loaded or an override that does not apply."""


@dataclass
class ModelConfig:
    """Architecture of generator and discriminator (docs/networks.md#channel-rule).

    The generator starts from ``[dense_channels, start_frames, start_bands]`` and each of the
    ``n_blocks`` blocks quadruples time and doubles the bands (adds an octave), so the output is
    ``[B, channels, start_frames * 4**n_blocks, start_bands * 2**n_blocks]``.

    Channel rule of block i (e = n_blocks - 1 - i): in = min(4·4^e·base, cap),
    mid = min(2·4^e·base, cap), out = min(4^e·base, cap). The discriminator mirrors it.
    """

    sample_rate: int = 22016
    channels: int = 2
    n_bands: int = 128
    latent_dim: int = 512
    n_blocks: int = 6
    start_frames: int = 4
    start_bands: int = 2
    base_channels: int = 16
    max_channels: int = 512
    d_dense: int = 512
    mbstd_group: int = 4
    leaky_slope: float = 0.2
    # floor on every block's channel counts: width where the detail lives (the widest grids), 0 = off
    min_channels: int = 0
    # G's stride-2 upsampling: "transposed" (the paper's 3-tap transposed conv), "resize" (nearest ×2, then
    # a 3×3 conv) or "kernel4" (4-tap transposed conv: the kernel divisible by the stride, no checkerboard)
    upsample: str = "transposed"
    # G's output layer: "linear" (the paper: a 1×1 conv and tanh give the amplitudes), "oscillator" (an
    # amplitude per channel and a frequency offset per band, whose phase the generator accumulates over
    # frames, so a held partial is a held output) or "linear+oscillator", their sum, the oscillators starting
    # silent (docs/networks.md#oscillator-output); "bank" (bank_size oscillators per band at fixed
    # offsets, an amplitude each: a pitch is which amplitude is drawn) or "linear+bank", the bank starting
    # silent (docs/networks.md#oscillator-bank)
    output: str = "linear"
    # oscillators per band of the "bank" outputs: pitch resolution 1/bank_size band
    bank_size: int = 16
    # the networks' unit: D multiplies its input by it, G divides its pre-tanh output by it, so both work at
    # unit scale while the amplitudes keep theirs (rms ≈ 0.01; docs/networks.md#amplitude-gain); 1 = the paper
    amplitude_gain: float = 1.0
    # per-band unit scale instead (docs/networks.md#band-normalisation): G's unit output in band k is an
    # amplitude of band_rms[k], D sees amplitudes / band_rms, so both start at the data's spectral envelope
    # and D weighs every band alike; band_rms is the data's rms per band, filled in when training starts
    band_norm: bool = False
    band_rms: tuple[float, ...] = ()
    # power p of D's input compression: D sees sign(u)·((|u| + ε)^p − ε^p) of u = amplitudes·gain, so quiet
    # bins (the gaps between partials, the top octave) weigh in its gradient as loud ones do; 1 = linear,
    # the paper (docs/networks.md#input-compression)
    d_compress: float = 1.0
    # width of D's pooled branch (docs/networks.md#pooled-branch): a second, small conv stack whose score is
    # added to D's, on D's input as rms over d_pooled_frames frames, where a held chord is steady and a
    # chord change one edge; 0 = off (the paper)
    d_pooled_channels: int = 0
    d_pooled_frames: int = 8
    # width of D's spectral view (docs/networks.md#spectral-discriminator): a second discriminator, with its
    # own score and loss, on the noised amplitudes turned back into audio and into a log spectrogram with a
    # d_spectral_fft-sample window, where a held partial is a narrow line; 0 = off (the paper)
    d_spectral_channels: int = 0
    d_spectral_fft: int = 1024
    # the view's input gains the batch's spread per bin (model.layers.minibatch_spread): partials drawn at
    # the same frequencies in every clip of a batch are plain there
    d_spectral_spread: bool = False
    # psychoacoustic model (docs/psychoacoustics.md)
    n_bark: int = 24
    alpha: float = 0.6

    @property
    def n_frames(self) -> int:
        """M: number of MDCT frames the generator outputs."""
        return self.start_frames * 4**self.n_blocks

    @property
    def clip_samples(self) -> int:
        """T: audio samples of one training clip; its MDCT has exactly ``n_frames`` frames."""
        return (self.n_frames - 1) * self.n_bands

    @property
    def clip_seconds(self) -> float:
        return self.clip_samples / self.sample_rate

    def block_channels(self, i: int) -> tuple[int, int, int]:
        """(in, mid, out) channels of generator block ``i`` (0 = deepest)."""
        e = self.n_blocks - 1 - i
        base, cap, floor = self.base_channels, self.max_channels, self.min_channels
        return tuple(max(floor, min(f * 4**e * base, cap)) for f in (4, 2, 1))  # type: ignore[return-value]

    @property
    def dense_channels(self) -> int:
        return self.block_channels(0)[0]

    def validate(self) -> None:
        if self.start_bands * 2**self.n_blocks != self.n_bands:
            raise ConfigError(
                f"start_bands·2^n_blocks = {self.start_bands * 2**self.n_blocks} "
                f"must equal n_bands = {self.n_bands}"
            )
        if self.start_bands % 2:
            raise ConfigError("start_bands must be even (the deepest block splits the bands in halves)")
        if self.channels < 1 or self.n_blocks < 1 or self.latent_dim < 1:
            raise ConfigError("channels, n_blocks and latent_dim must be positive")
        if not self.amplitude_gain > 0:
            raise ConfigError(f"model.amplitude_gain must be > 0, got {self.amplitude_gain}")
        if self.band_rms and (len(self.band_rms) != self.n_bands or min(self.band_rms) <= 0):
            raise ConfigError(
                f"model.band_rms must be {self.n_bands} positive levels (one per band) or empty"
            )
        if not 0 < self.d_compress <= 1:
            raise ConfigError(f"model.d_compress must be in (0, 1], got {self.d_compress}")
        if self.d_pooled_channels < 0:
            raise ConfigError(f"model.d_pooled_channels must be >= 0, got {self.d_pooled_channels}")
        if self.d_pooled_channels and (
            self.d_pooled_frames < 1
            or self.n_frames % self.d_pooled_frames
            or self.n_frames // self.d_pooled_frames < POOLED_MIN_LENGTH
            or self.n_bands < POOLED_MIN_LENGTH
        ):
            raise ConfigError(
                f"model.d_pooled_frames must divide the {self.n_frames} frames into at least "
                f"{POOLED_MIN_LENGTH} steps (and n_bands be at least {POOLED_MIN_LENGTH}), "
                f"got {self.d_pooled_frames}"
            )
        if self.d_spectral_channels < 0:
            raise ConfigError(f"model.d_spectral_channels must be >= 0, got {self.d_spectral_channels}")
        if self.d_spectral_channels:
            self.check_spectral_fft(2**SPECTRAL_DOWNSAMPLES)  # the view's stride-2 convs halve its frames
        if self.upsample not in UPSAMPLE_MODES:
            modes = ", ".join(UPSAMPLE_MODES)
            raise ConfigError(f"model.upsample must be one of {modes}, got {self.upsample!r}")
        if self.output not in OUTPUT_MODES:
            modes = ", ".join(OUTPUT_MODES)
            raise ConfigError(f"model.output must be one of {modes}, got {self.output!r}")
        if self.bank_size < 1:
            raise ConfigError(f"model.bank_size must be ≥ 1, got {self.bank_size}")

    def check_spectral_fft(self, min_hops: int) -> None:
        """The long-window spectrogram's ``d_spectral_fft`` (D's spectral view, mode seeking) must be a power
        of two whose hop fits ``min_hops`` times in a clip."""
        fft = self.d_spectral_fft
        if fft < 4 or fft & (fft - 1) or self.clip_samples // (fft // 4) < min_hops:
            raise ConfigError(
                f"model.d_spectral_fft must be a power of two whose hop (a quarter) fits at least "
                f"{min_hops} times in a clip of {self.clip_samples} samples, got {fft}"
            )


@dataclass
class TrainConfig:
    """Training settings (docs/training.md). Defaults follow the original code: WGAN-GP with drift,
    2 D steps per G step, Adam(1e-4, 0.5, 0.9) for both networks."""

    batch_size: int = 8
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    n_critic: int = 2
    gp_lambda: float = 3.0
    drift: float = 0.1
    noise_sigma: float = 1 / 6
    ema: bool = True
    ema_decay: float = 0.999
    # the recipe (docs/training.md#recipes): "wgan-gp" (paper), "ns-r1" (non-saturating + R1),
    # "rpgan-r1r2" (relativistic pairing + R1 + R2, as R3GAN)
    loss: str = "wgan-gp"
    r1_gamma: float = 1.0  # γ of the zero-centred penalties: γ/2 · E‖∇D‖²
    reg_every: int = 1  # lazy regularisation: the penalty every k D steps, scaled by k (StyleGAN2)
    lr_g: float | None = None  # None = lr
    lr_d: float | None = None
    betas_g: tuple[float, float] | None = None  # None = betas
    betas_d: tuple[float, float] | None = None
    warmup_steps: int = 0  # linear learning-rate warm-up over this many D steps
    augment: float = 0.0  # probability of each augmentation (time shift, gain, L/R swap) per clip, before D
    ema_half_life: float = 0.0  # clips; 0 = the fixed ema_decay
    ema_rampup: float = 0.0  # half-life at most this fraction of the clips seen so far (0 = no ramp)
    # weight of the change-matching term in G's loss (docs/training.md#change-matching); 0 = off
    change_match: float = 0.0
    change_lags: tuple[int, ...] = (1,)  # the steps (≈ 46 ms each) apart that change matching compares
    # G's loss adds contrast_match · W1 of the pooled level contrasts (docs/training.md#contrast-matching)
    contrast_match: float = 0.0
    contrast_width: int = 2  # bins on each side of a peak
    # D's spectral view (model.d_spectral_channels): its loss's weight in G's loss, and its R1 γ (on its own
    # input, the log spectrogram of the noised reals; docs/training.md#spectral-discriminator)
    spectral_weight: float = 1.0
    spectral_r1_gamma: float = 1.0
    # weight of the mode-seeking term in G's loss (docs/training.md#mode-seeking): pairs of fakes whose
    # long-window spectra differ less than their latents are penalised; 0 = off
    mode_seeking: float = 0.0
    # weight of partial-change matching in G's loss (docs/training.md#partial-change-matching): W1 of how
    # the partials change between segments of partial_change_frames long-window frames; 0 = off
    partial_change_match: float = 0.0
    partial_change_frames: int = 16
    # weight of the anchor term in G's loss (docs/training.md#anchored-gan): G keeps drawing the clips of the
    # pretraining run it started from (--init-from), each from its own latent; 0 = off
    anchor: float = 0.0

    def adam(self, net: str) -> tuple[float, tuple[float, float]]:
        """(learning rate, betas) of the generator (``net="G"``) or the discriminator (``"D"``)."""
        lr, betas = (self.lr_g, self.betas_g) if net == "G" else (self.lr_d, self.betas_d)
        return (self.lr if lr is None else lr), tuple(self.betas if betas is None else betas)  # type: ignore[return-value]

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"train.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.reg_every < 1 or self.n_critic < 1 or self.batch_size < 1:
            raise ConfigError("train.reg_every, train.n_critic and train.batch_size must be at least 1")
        if not 0.0 <= self.augment <= 1.0:
            raise ConfigError(f"train.augment is a probability in [0, 1], got {self.augment}")
        if (
            min(
                self.ema_half_life,
                self.ema_rampup,
                self.r1_gamma,
                self.warmup_steps,
                self.change_match,
                self.contrast_match,
                self.spectral_weight,
                self.spectral_r1_gamma,
                self.mode_seeking,
                self.partial_change_match,
                self.anchor,
            )
            < 0
        ):
            raise ConfigError(
                "train.ema_half_life, ema_rampup, r1_gamma, warmup_steps, change_match, contrast_match, "
                "spectral_weight, spectral_r1_gamma, mode_seeking, partial_change_match and anchor must be "
                ">= 0"
            )
        if self.partial_change_frames < 1:
            raise ConfigError(f"train.partial_change_frames must be >= 1, got {self.partial_change_frames}")
        if not self.change_lags or min(self.change_lags) < 1:
            raise ConfigError(f"train.change_lags must be one or more steps >= 1, got {self.change_lags}")
        if self.contrast_width < 1:
            raise ConfigError(f"train.contrast_width must be >= 1 bin, got {self.contrast_width}")
        if not self.ckpt_minutes >= 0:
            raise ConfigError(f"train.ckpt_minutes must be >= 0 (0 = off), got {self.ckpt_minutes}")
        if self.eval_every < 0 or (self.eval_every and self.eval_clips < 2):
            raise ConfigError("train.eval_every must be >= 0 (0 = off) and train.eval_clips at least 2")

    seed: int = 0
    max_steps: int = 750_000
    ckpt_every: int = 1000  # a checkpoint every this many D steps (0 = off) ...
    ckpt_minutes: float = 10.0  # ... or after this many minutes, whichever comes first (0 = off)
    keep_last: int = 3
    log_every: int = 10
    sample_every: int = 1000
    n_samples: int = 4
    # `mp3net evaluate`'s metrics of eval_clips fixed-seed fakes against as many training clips, logged as
    # eval/* every this many D steps (0 = off; docs/training.md#metrics-during-training)
    eval_every: int = 0
    eval_clips: int = 32
    freeze_deep: int = 0  # 0 = off; else the number of shallowest blocks left trainable (paper §4.3.1: 2)
    amp: str = "auto"  # "auto" = bf16 autocast on CUDA, off on CPU; "bf16"; "off"
    grad_checkpoint: bool = False
    num_workers: int = 2


@dataclass
class PretrainConfig:
    """`mp3net pretrain`: the generator learnt as the decoder of its latents, before any GAN
    (docs/training.md#autoencoder-pretraining). Each of ``clips`` fixed clips of the data owns a latent;
    G and the latents are fitted together to the clips' log spectrograms; then a Gaussian fitted to the
    latents is folded into G's head, so z ~ N(0, I) draws like them."""

    steps: int = 6000
    clips: int = 768  # fixed clips, spread evenly over the dataset, each with its own latent
    batch_size: int = 8
    lr: float = 5e-4  # Adam for G
    betas: tuple[float, float] = (0.9, 0.99)
    latent_lr: float = 1e-2  # sparse Adam for the latents: each is seen once every clips / batch steps
    # where the latents start: "pca" (the clips' principal components, whitened: like clips start alike,
    # docs/training.md#autoencoder-pretraining) or "random" (N(0, I))
    latent_init: str = "pca"
    ffts: tuple[int, ...] = (256, 1024, 2048)  # the windows of the log-spectrogram distance
    # weight of the envelope distance added to it: the level of blocks of frames and bins, so G draws the
    # clips at their level rather than at the median of its log (docs/training.md#autoencoder-pretraining)
    envelope: float = 1.0
    # the distance on mid and side rather than left and right, so the stereo image's width counts
    mid_side: bool = True
    # the export's output levels matched to the data's, band by band (docs/training.md#level-calibration)
    calibrate: bool = True
    # from step lr_decay_start on, both rates fall along half a cosine over lr_decay_steps to LR_DECAY_FLOOR
    # of themselves and stay there: the last steps settle what the noisy ones found; 0 steps: constant
    lr_decay_start: int = 0
    lr_decay_steps: int = 0
    ckpt_every: int = 250

    def validate(self) -> None:
        if min(self.steps, self.clips, self.batch_size, self.ckpt_every) < 1:
            raise ConfigError("pretrain.steps, clips, batch_size and ckpt_every must be at least 1")
        if self.clips < 2:
            raise ConfigError("pretrain.clips must be at least 2 (a Gaussian is fitted to their latents)")
        if not self.lr > 0 or not self.latent_lr > 0:
            raise ConfigError("pretrain.lr and pretrain.latent_lr must be > 0")
        if min(self.lr_decay_start, self.lr_decay_steps) < 0:
            raise ConfigError("pretrain.lr_decay_start and pretrain.lr_decay_steps must be >= 0")
        if not self.envelope >= 0:
            raise ConfigError(f"pretrain.envelope must be >= 0, got {self.envelope}")
        if not self.ffts or any(n < 16 or n & (n - 1) for n in self.ffts):
            raise ConfigError(f"pretrain.ffts must be powers of two >= 16, got {list(self.ffts)}")
        if self.latent_init not in LATENT_INITS:
            raise ConfigError(f"pretrain.latent_init must be one of {', '.join(LATENT_INITS)}")


@dataclass
class Config:
    name: str = "95s"
    version: int = CONFIG_VERSION
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        if not isinstance(d, dict):
            raise ConfigError("config must be a JSON object")
        version = d.get("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ConfigError(
                f"config version {version} is not supported (this mp3net reads version {CONFIG_VERSION})"
            )
        try:
            md = dict(d.get("model", {}))
            if md.get("band_rms") is not None:
                md["band_rms"] = tuple(float(v) for v in md["band_rms"])
            model = ModelConfig(**md)
            tr = dict(d.get("train", {}))
            for key in ("betas", "betas_g", "betas_d", "change_lags"):
                if tr.get(key) is not None:
                    tr[key] = tuple(tr[key])
            train = TrainConfig(**tr)
            pr = dict(d.get("pretrain", {}))
            if pr:  # written before these fields existed: random latents, the log distance alone
                pr.setdefault("latent_init", "random")
                pr.setdefault("envelope", 0.0)
                pr.setdefault("mid_side", False)
                pr.setdefault("calibrate", False)
            for key in ("betas", "ffts"):
                if pr.get(key) is not None:
                    pr[key] = tuple(pr[key])
            pretrain = PretrainConfig(**pr)
        except TypeError as e:
            raise ConfigError(f"unknown or invalid config field: {e}") from None
        cfg = cls(name=d.get("name", "custom"), version=version, model=model, train=train, pretrain=pretrain)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        self.model.validate()
        self.train.validate()
        self.pretrain.validate()
        if max(self.pretrain.ffts) > self.model.clip_samples:
            raise ConfigError(
                f"pretrain.ffts: a window must fit in a clip of {self.model.clip_samples} samples, "
                f"got {max(self.pretrain.ffts)}"
            )
        if self.model.d_spectral_channels and self.train.loss == "wgan-gp":
            raise ConfigError(
                "model.d_spectral_channels needs a zero-centred recipe (train.loss=ns-r1 or rpgan-r1r2): "
                "its penalty is R1"
            )
        if self.train.mode_seeking > 0:
            self.model.check_spectral_fft(4)  # its spectra are the spectral view's: a window within the clip
            if self.train.batch_size < 2:
                raise ConfigError(
                    "train.mode_seeking pairs the fakes of a batch: train.batch_size must be >= 2"
                )
        if self.train.partial_change_match > 0:
            self.model.check_spectral_fft(4)
            frames, hops = (
                self.train.partial_change_frames,
                self.model.clip_samples // (self.model.d_spectral_fft // 4),
            )
            if 2 * frames > hops:
                raise ConfigError(
                    f"train.partial_change_frames: two segments must fit in a clip of {hops} long-window "
                    f"frames (model.d_spectral_fft={self.model.d_spectral_fft}), got {frames}"
                )

    def save(self, path: str | Path) -> None:
        """Write as JSON (or YAML for a .yaml/.yml path), atomically."""
        from mp3net.utils import atomic_write_text

        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Config:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from None
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                d = yaml.safe_load(text)
            else:
                d = json.loads(text)
        except Exception as e:  # noqa: BLE001 - any parse error is a bad config file
            raise ConfigError(f"cannot parse config {path}: {e}") from None
        return cls.from_dict(d)

    def override(self, items: list[str] | None) -> Config:
        """A copy with ``section.field=value`` overrides applied (values parsed as JSON where they can be)."""
        cfg = copy.deepcopy(self)
        for item in items or []:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form section.field=value")
            key, raw = item.split("=", 1)
            parts = key.strip().split(".")
            if len(parts) != 2 or parts[0] not in ("model", "train", "pretrain"):
                raise ConfigError(
                    f"override key {key!r} must be model.<field>, train.<field> or pretrain.<field>"
                )
            section = getattr(cfg, parts[0])
            names = {f.name: f for f in dataclasses.fields(section)}
            if parts[1] not in names:
                raise ConfigError(f"unknown config field {key!r}; known: {', '.join(sorted(names))}")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            current = getattr(section, parts[1])
            if parts[1].startswith("betas") and value is not None:
                if not isinstance(value, list) or len(value) != 2:
                    raise ConfigError(f"{key} expects [beta1, beta2], got {raw!r}")
                value = tuple(float(v) for v in value)
            elif parts[1] in ("change_lags", "ffts"):
                if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
                    raise ConfigError(f"{key} expects a list of whole numbers, e.g. [1, 2, 4], got {raw!r}")
                value = tuple(value)
            elif parts[1] == "band_rms":
                if not isinstance(value, list) or not all(isinstance(v, (int, float)) for v in value):
                    raise ConfigError(f"{key} expects a list of numbers (or []), got {raw!r}")
                value = tuple(float(v) for v in value)
            elif current is None or (parts[1] in ("lr_g", "lr_d") and value is None):
                if value is not None and not isinstance(value, (int, float)):
                    raise ConfigError(f"{key} expects a number or null, got {raw!r}")
                value = None if value is None else float(value)
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ConfigError(f"{key} expects true/false, got {raw!r}")
            elif isinstance(current, (int, float)) and not isinstance(value, (int, float)):
                raise ConfigError(f"{key} expects a number, got {raw!r}")
            elif isinstance(current, float):
                value = float(value)
            setattr(section, parts[1], value)
        cfg.validate()
        return cfg


def _preset_95s() -> Config:
    return Config(name="95s")


def _preset_5s() -> Config:
    # paper §4.2.2: 5 blocks, 128 channels in the shallowest layer, 1024 x 128 x 2 output, batch 64.
    # With base 128 the generic channel rule gives blocks 0-3 (512, 512) and block 4 (256, 128).
    return Config(
        name="5s",
        model=ModelConfig(n_blocks=5, start_frames=1, start_bands=4, base_channels=128),
        train=TrainConfig(batch_size=64),
    )


def _preset_tiny() -> Config:
    # CPU-sized member of the same family: 64 bands at 11008 Hz (86 Hz bands as in the paper, Nyquist above
    # the piano's fundamentals), 4 blocks, 512 frames x 64 bands = 2.97 s of stereo audio. Channels: base 4,
    # cap 64, floor 16 → blocks (in, mid, out) = (64,64,64) (64,64,64) (64,32,16) (16,16,16): the last block,
    # which draws the full 512 x 64 grid, has as many channels as the 95 s model's (16); it had 16 → 8 → 4.
    # The fast recipe of docs/training.md#recipes (benchmarks/README.md#learning has the ablation):
    # non-saturating loss + lazy R1, one D step per G step, Adam β1 = 0, resize-conv upsampling, an EMA
    # with a half-life in clips. Raw amplitudes (amplitude gain 1); the unit-scale variant (gain 64 with
    # γ = 100) and D's input compression, with which the GAN model shipped before was trained, are in
    # docs/networks.md#amplitude-gain and #input-compression.
    return Config(
        name="tiny",
        model=ModelConfig(
            sample_rate=11008,
            n_bands=64,
            latent_dim=64,
            n_blocks=4,
            start_frames=2,
            start_bands=4,
            base_channels=4,
            max_channels=64,
            min_channels=16,
            d_dense=64,
            n_bark=24,
            upsample="resize",
        ),
        train=TrainConfig(
            batch_size=8,
            loss="ns-r1",
            n_critic=1,
            lr=2e-4,
            betas=(0.0, 0.99),
            reg_every=8,
            r1_gamma=1.0,
            ema_half_life=2500,
            ema_rampup=0.05,
            ckpt_every=200,
            sample_every=200,
            eval_every=200,
            log_every=5,
            num_workers=0,
        ),
    )


PRESETS = {"95s": _preset_95s, "5s": _preset_5s, "tiny": _preset_tiny}


def preset(name: str) -> Config:
    """A fresh copy of the named preset (``95s``, ``5s`` or ``tiny``)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
