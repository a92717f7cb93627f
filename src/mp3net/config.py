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

# 2: the experiments that did not pay were retired (CHANGELOG.md); version-1 configs still load
CONFIG_VERSION = 2
READABLE_VERSIONS = (1, 2)
# the git tag whose checkout reads every retired field (docs/experiments.md)
RETIRED_TAG = "v0.1-lab"

UPSAMPLE_MODES = ("transposed", "resize")
OUTPUT_MODES = ("linear", "bank", "sines")
LOSSES = ("wgan-gp", "ns-r1")
LATENT_INITS = ("pca", "random")  # pretrain.latent_init
SAMPLERS = ("gaussian", "table")  # model.sampler, pretrain.sampler
LR_DECAY_FLOOR = 0.1  # pretrain.lr_decay_*: the rates end at this share of pretrain.lr and latent_lr


class ConfigError(ValueError):
    """A config that cannot be loaded or an override that does not apply."""


# Fields retired in config version 2 (docs/experiments.md), with the value at which each did nothing: a
# config that holds one at that value loads without it; any other value is a one-line error naming the
# tag whose checkout reads it. None: a setting of a retired switch, inert while the switch is off.
RETIRED_FIELDS: dict[str, dict[str, Any]] = {
    "model": {
        "amplitude_gain": 1.0,
        "d_compress": 1.0,
        "d_pooled_channels": 0,
        "d_pooled_frames": None,
        "d_spectral_channels": 0,
        "d_spectral_fft": None,
        "d_spectral_spread": False,
        "band_weights": False,
    },
    "train": {
        "change_match": 0.0,
        "change_lags": None,
        "contrast_match": 0.0,
        "contrast_width": None,
        "spectral_weight": None,
        "spectral_r1_gamma": None,
        "mode_seeking": 0.0,
        "partial_change_match": 0.0,
        "partial_change_frames": None,
        "grad_checkpoint": False,
    },
}
# the tag that reads a field retired after RETIRED_TAG
RETIRED_AT = {"model.band_weights": "v0.2-lab"}
# values of kept fields retired with them
RETIRED_VALUES = {
    "model.output": ("oscillator", "linear+oscillator", "linear+bank"),
    "model.upsample": ("kernel4",),
    "train.loss": ("rpgan-r1r2",),
}


def retired_message(key: str, value: Any) -> str:
    return (
        f"{key}={value} was retired in config version {CONFIG_VERSION}; "
        f"`git checkout {RETIRED_AT.get(key, RETIRED_TAG)}` of mp3net reads it (docs/experiments.md)"
    )


def drop_retired(section: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A section's fields without the retired ones, which must hold their neutral values."""
    kept = dict(fields)
    for name, neutral in RETIRED_FIELDS.get(section, {}).items():
        if name in kept:
            value = kept.pop(name)
            if neutral is not None and value != neutral:
                raise ConfigError(retired_message(f"{section}.{name}", value))
    return kept


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value in RETIRED_VALUES.get(key, ()):
        raise ConfigError(retired_message(key, value))
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")


def _pretrain_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The pretrain section of a saved config, with the values that fields added later had in effect."""
    pr = dict(fields)
    # written before these fields existed: random latents, the log distance alone, no decay, single clips
    if pr:
        pr.setdefault("latent_init", "random")
        pr.setdefault("envelope", 0.0)
        pr.setdefault("mid_side", False)
        pr.setdefault("calibrate", False)
        pr.setdefault("lr_decay_start", 0)
        pr.setdefault("lr_decay_steps", 0)
        pr.setdefault("run_clips", 1)
    for key in ("betas", "ffts"):
        if pr.get(key) is not None:
            pr[key] = tuple(pr[key])
    return pr


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
    # G's stride-2 upsampling: "transposed" (the paper's 3-tap transposed conv) or "resize" (nearest ×2,
    # then a 3×3 conv)
    upsample: str = "transposed"
    # G's output layer: "linear" (the paper: a 1×1 conv and tanh give the amplitudes), "bank" (bank_size
    # oscillators per band at fixed offsets, an amplitude each: a pitch is which amplitude is drawn, and a
    # held partial a held output; docs/networks.md#oscillator-bank) or "sines" (the same oscillators, each
    # written as a whole sinusoid into the bands beside its own too, so it sounds no images;
    # docs/networks.md#sine-bank)
    output: str = "linear"
    # oscillators per band of the "bank" and "sines" outputs: pitch resolution 1/bank_size band
    bank_size: int = 16
    # the bank's quiet gate ε: an oscillator's amplitude a becomes a³/(a² + ε²), so one drawn faintly in every
    # clip (a comb of weak held lines) falls silent while a drawn partial keeps its level; 0 = off
    # (docs/networks.md#the-quiet-gate)
    bank_gate: float = 0.0
    # per-band unit scale instead (docs/networks.md#band-normalisation): G's unit output in band k is an
    # amplitude of band_rms[k], D sees amplitudes / band_rms, so both start at the data's spectral envelope
    # and D weighs every band alike; band_rms is the data's rms per band, filled in when training starts
    band_norm: bool = False
    band_rms: tuple[float, ...] = ()
    # how z ~ N(0, I) becomes the latent the dense layer reads: "gaussian" (directly; a pretraining export
    # folds its table's Gaussian into the dense layer) or "table" (a latent near the pretrained table,
    # model/sampler.py; docs/training.md#the-sampler). A pretraining export sets it (pretrain.sampler).
    sampler: str = "gaussian"
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

    def with_unit_levels(self) -> ModelConfig:
        """This config with levels of 1 in every band where band normalisation has none measured yet: for
        what does not depend on them (shapes, parameters, FLOPs, speed, untrained networks)."""
        if not self.band_norm or self.band_rms:
            return self
        return dataclasses.replace(self, band_rms=(1.0,) * self.n_bands)

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
        if self.band_rms and (len(self.band_rms) != self.n_bands or min(self.band_rms) <= 0):
            raise ConfigError(
                f"model.band_rms must be {self.n_bands} positive levels (one per band) or empty"
            )
        check_choice("model.upsample", self.upsample, UPSAMPLE_MODES)
        check_choice("model.output", self.output, OUTPUT_MODES)
        check_choice("model.sampler", self.sampler, SAMPLERS)
        if self.bank_size < 1:
            raise ConfigError(f"model.bank_size must be ≥ 1, got {self.bank_size}")
        if not 0 <= self.bank_gate < 1:
            raise ConfigError(f"model.bank_gate must be in [0, 1), got {self.bank_gate}")
        if self.bank_gate and self.output == "linear":
            raise ConfigError("model.bank_gate gates an oscillator bank: it needs model.output=bank or sines")


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
    # the recipe (docs/training.md#recipes): "wgan-gp" (paper) or "ns-r1" (non-saturating + R1)
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
    # weight of the anchor term in G's loss (docs/training.md#anchored-gan): G keeps drawing the clips of the
    # pretraining run it started from (--init-from), each from its own latent; 0 = off
    anchor: float = 0.0

    def adam(self, net: str) -> tuple[float, tuple[float, float]]:
        """(learning rate, betas) of the generator (``net="G"``) or the discriminator (``"D"``)."""
        lr, betas = (self.lr_g, self.betas_g) if net == "G" else (self.lr_d, self.betas_d)
        return (self.lr if lr is None else lr), tuple(self.betas if betas is None else betas)  # type: ignore[return-value]

    def validate(self) -> None:
        check_choice("train.loss", self.loss, LOSSES)
        if self.reg_every < 1 or self.n_critic < 1 or self.batch_size < 1:
            raise ConfigError("train.reg_every, train.n_critic and train.batch_size must be at least 1")
        if not 0.0 <= self.augment <= 1.0:
            raise ConfigError(f"train.augment is a probability in [0, 1], got {self.augment}")
        if min(self.ema_half_life, self.ema_rampup, self.r1_gamma, self.warmup_steps, self.anchor) < 0:
            raise ConfigError(
                "train.ema_half_life, ema_rampup, r1_gamma, warmup_steps and anchor must be >= 0"
            )
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
    amp: str = (
        "auto"  # "auto" = bf16 autocast where the device runs it fast (ops.bf16_is_fast); "bf16"; "off"
    )
    num_workers: int = 2


@dataclass
class PretrainConfig:
    """`mp3net pretrain`: the generator learnt as the decoder of its latents, before any GAN
    (docs/training.md#autoencoder-pretraining). Each of ``clips`` fixed clips of the data owns a latent;
    G and the latents are fitted together to the clips' log spectrograms; then a Gaussian fitted to the
    latents is folded into G's head, so z ~ N(0, I) draws like them."""

    # the default recipe: one run, every term from the start, then the rates' decay (docs/training.md)
    steps: int = 8000
    clips: int = 256  # fixed clips, spread evenly over the dataset, each with its own latent
    # consecutive clips per run of the table (> 1: a run's latents trace its recording's path, which long
    # tracks walk; experimental, docs/long-tracks.md#the-table); 1 = single clips spread evenly
    run_clips: int = 1
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
    # the log distance's floor relative to each clip's level, dB (< 0; 0 = the absolute floor only): detail
    # further under the clip's mean frame power is not asked for, so G need not fill the reals' noise floor
    # with faint oscillators (experimental, docs/training.md#the-relative-floor)
    floor_db: float = 0.0
    # what the export draws from: "table" (latents near the table's, model/sampler.py) or "gaussian" (the
    # table's Gaussian folded into the dense layer); docs/training.md#the-sampler
    sampler: str = "table"
    # the export's output levels matched to the data's, band by band (docs/training.md#level-calibration)
    calibrate: bool = True
    # from step lr_decay_start on, both rates fall along half a cosine over lr_decay_steps to LR_DECAY_FLOOR
    # of themselves and stay there: the last steps settle what the noisy ones found; 0 steps: constant
    lr_decay_start: int = 6000
    lr_decay_steps: int = 2000
    ckpt_every: int = 250
    # at every checkpoint, `mp3net evaluate`'s metrics of this many fixed-seed clips of the export against as
    # many training clips, printed and logged as eval/* (0 = off; docs/training.md#metrics-during-training)
    eval_clips: int = 32

    def validate(self) -> None:
        if self.eval_clips < 0:
            raise ConfigError(f"pretrain.eval_clips must be >= 0, got {self.eval_clips}")
        if min(self.steps, self.clips, self.batch_size, self.ckpt_every, self.run_clips) < 1:
            raise ConfigError(
                "pretrain.steps, clips, run_clips, batch_size and ckpt_every must be at least 1"
            )
        if self.clips < 2:
            raise ConfigError("pretrain.clips must be at least 2 (a Gaussian is fitted to their latents)")
        if not self.lr > 0 or not self.latent_lr > 0:
            raise ConfigError("pretrain.lr and pretrain.latent_lr must be > 0")
        if min(self.lr_decay_start, self.lr_decay_steps) < 0:
            raise ConfigError("pretrain.lr_decay_start and pretrain.lr_decay_steps must be >= 0")
        if not self.envelope >= 0:
            raise ConfigError(f"pretrain.envelope must be >= 0, got {self.envelope}")
        if not -120 <= self.floor_db <= 0:
            raise ConfigError(f"pretrain.floor_db must be in [-120, 0] dB (0 = off), got {self.floor_db}")
        if not self.ffts or any(n < 16 or n & (n - 1) for n in self.ffts):
            raise ConfigError(f"pretrain.ffts must be powers of two >= 16, got {list(self.ffts)}")
        check_choice("pretrain.sampler", self.sampler, SAMPLERS)
        if self.latent_init not in LATENT_INITS:
            raise ConfigError(f"pretrain.latent_init must be one of {', '.join(LATENT_INITS)}")


@dataclass
class Config:
    name: str = "paper-95s"
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
        if version not in READABLE_VERSIONS:
            raise ConfigError(
                f"config version {version} is not supported (this mp3net reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))})"
            )
        try:
            md = drop_retired("model", d.get("model", {}))
            if md.get("band_rms") is not None:
                md["band_rms"] = tuple(float(v) for v in md["band_rms"])
            model = ModelConfig(**md)
            tr = drop_retired("train", d.get("train", {}))
            for key in ("betas", "betas_g", "betas_d"):
                if tr.get(key) is not None:
                    tr[key] = tuple(tr[key])
            train = TrainConfig(**tr)
            pretrain = PretrainConfig(**_pretrain_fields(d.get("pretrain", {})))
        except TypeError as e:
            raise ConfigError(f"unknown or invalid config field: {e}") from None
        name = d.get("name", "custom")
        cfg = cls(name=name, version=CONFIG_VERSION, model=model, train=train, pretrain=pretrain)
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
            if parts[1] in RETIRED_FIELDS.get(parts[0], {}):
                raise ConfigError(retired_message(key.strip(), raw))
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
            elif parts[1] == "ffts":
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


def _preset_paper_95s() -> Config:
    # paper §4.2.1: the 95 s model (the dataclass defaults), for GPUs
    return Config(name="paper-95s")


def _preset_paper_5s() -> Config:
    # paper §4.2.2: 5 blocks, 128 channels in the shallowest layer, 1024 x 128 x 2 output, batch 64.
    # With base 128 the generic channel rule gives blocks 0-3 (512, 512) and block 4 (256, 128).
    return Config(
        name="paper-5s",
        model=ModelConfig(n_blocks=5, start_frames=1, start_bands=4, base_channels=128),
        train=TrainConfig(batch_size=64),
    )


def _preset_laptop() -> Config:
    # The shipped model's network and the default recipe, sized for a laptop CPU: 64 bands at 11008 Hz (86 Hz
    # bands as in the paper, Nyquist above the piano's fundamentals), 4 blocks, 512 frames x 64 bands =
    # 2.97 s of stereo audio. Channels: base 4, cap 64, floor 32 → blocks (in, mid, out) = (64,64,64)
    # (64,64,64) (64,32,32) (32,32,32). The sine-bank output and band normalisation
    # (docs/networks.md). Pretraining: the PretrainConfig defaults (docs/training.md#the-default-recipe).
    # The GAN's section is the fast recipe of docs/training.md#recipes: non-saturating loss + lazy R1 with
    # γ for the band-normalised (unit-scale) input, one D step per G step, Adam β1 = 0, an EMA with a
    # half-life in clips.
    return Config(
        name="laptop",
        model=ModelConfig(
            sample_rate=11008,
            n_bands=64,
            latent_dim=64,
            n_blocks=4,
            start_frames=2,
            start_bands=4,
            base_channels=4,
            max_channels=64,
            min_channels=32,
            d_dense=64,
            n_bark=24,
            upsample="resize",
            output="sines",
            band_norm=True,
        ),
        train=TrainConfig(
            batch_size=8,
            loss="ns-r1",
            n_critic=1,
            lr=2e-4,
            betas=(0.0, 0.99),
            reg_every=8,
            r1_gamma=100.0,
            ema_half_life=2500,
            ema_rampup=0.05,
            ckpt_every=200,
            sample_every=200,
            eval_every=200,
            log_every=5,
            num_workers=0,
        ),
    )


PRESETS = {"laptop": _preset_laptop, "paper-5s": _preset_paper_5s, "paper-95s": _preset_paper_95s}
# the names the presets had before they said what they are for
PRESET_ALIASES = {"tiny": "laptop", "5s": "paper-5s", "95s": "paper-95s"}
PRESET_NAMES = (*PRESETS, *PRESET_ALIASES)
DEFAULT_PRESET = "laptop"


def preset(name: str) -> Config:
    """A fresh copy of the named preset (``laptop``, ``paper-5s``, ``paper-95s``, or an alias: ``tiny``,
    ``5s``, ``95s``)."""
    try:
        return PRESETS[PRESET_ALIASES.get(name, name)]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}") from None
