"""Typed experiment configuration: dataclasses with defaults, YAML loading, dotted overrides.

Every field is documented once, in its ``help`` metadata; ``gankit config`` prints them.
Unknown keys and mistyped values raise :class:`ConfigError` naming the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gankit.games.registry import GAMES
from gankit.registry import Registry, unknown_name_message


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the offending key."""


MAX_SEED = 2**32 - 1  # seeds derived from it (seed + offsets, seed x 1,000,003 + epoch) stay within int64


def opt(default: Any, help: str, *, gt: float | None = None, ge: float | None = None, le: float | None = None,
        choices: tuple[Any, ...] | Registry | None = None, resumable: bool = False) -> Any:
    """A config field with its documentation and range check.

    ``resumable`` fields may differ between a checkpoint's config and the config that resumes it.
    """
    meta = {"help": help, "gt": gt, "ge": ge, "le": le, "choices": choices, "resumable": resumable}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: json.loads(json.dumps(default)), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    name: str = opt("mnist10k", "dataset: mnist10k (bundled), mnist, fashion-mnist, cifar10, folder, ring, grid, "
                    "stacked-mnist; 2D: gaussians, line, moons, points (data.points)")
    root: str = opt("data", "directory holding torchvision datasets or, for `folder`, the images",
                    resumable=True)
    download: bool = opt(False, "let torchvision download missing files (needs network)", resumable=True)
    resolution: int | None = opt(None, "image side in pixels, 4 to 2048; null keeps the dataset's own",
                                 ge=4, le=2048)
    channels: int | None = opt(None, "1 (grayscale) or 3 (RGB); null keeps the dataset's own", ge=1)
    normalize: str = opt("symmetric", "pixel range: symmetric = [-1, 1] (tanh output), unit = [0, 1]",
                         choices=("symmetric", "unit"))
    limit: int | None = opt(None, "use only the first N samples", ge=1)
    num_points: int = opt(100_000, "2D mixtures: size of the fixed training set", ge=1)
    points: list = opt([], "data.name points: the 2D points [[x, y], ...] the training set is drawn from, each "
                       "jittered by N(0, 0.02^2) (the points drawn in `gankit playground`)")
    stacked_size: int = opt(60_000, "stacked-mnist: number of 3-digit images in the fixed training set",
                            ge=1)
    stacked_digits: str = opt("mnist10k", "stacked-mnist: digits stacked into R, G, B: mnist10k (bundled) "
                              "or mnist (torchvision's 60,000, from data.root)", choices=("mnist10k", "mnist"))
    num_workers: int = opt(0, "DataLoader workers for datasets decoded on the fly (folder)", ge=0,
                           resumable=True)


@dataclass
class ModelConfig:
    latent_dim: int = opt(100, "size of the latent vector z", ge=1)
    generator: dict = opt({"name": "dcgan"}, "generator: {name: <model>, <architecture args>}")
    discriminator: dict = opt({"name": "dcgan"}, "discriminator: {name: <model>, <architecture args>}")
    encoder: dict = opt({"name": "dcgan"}, "bigan: the encoder E(x) -> z, {name: <model>, <architecture args>} "
                        "(other games have none)")
    init: str = opt("dcgan", "weight init: dcgan = N(0, 0.02) convs/linears and N(1, 0.02) norms, "
                    "xavier, or default (PyTorch's)", choices=("dcgan", "xavier", "default"))
    conditional: bool | str = opt(False, "class-conditional G and D on the dataset's labels (their number comes "
                                  "from the data; fakes take the labels of the real batch they are judged with); "
                                  "auto = conditional when the dataset has labels, else unconditional",
                                  choices=(True, False, "auto"))
    self_condition: int = opt(0, "self-conditioned GAN (Liu et al. 2020): G and D condition on this many k-means "
                              "clusters of D's features of the training images instead of labels, and samples "
                              "draw each cluster as often as the data holds it (0 = off). With conditional auto: "
                              "only on data without labels held in memory, at most one cluster per 20 images",
                              ge=0)
    recluster_every: int = opt(0, "self_condition: recompute the clusters with the current D every N steps "
                               "while at least N steps of train.steps remain, so G has time to learn the last "
                               "clusters (0 = only once, at the start, from the initial D)", ge=0)
    pack: int = opt(1, "PacGAN packing: D judges this many samples at once, stacked along channels (counters "
                    "mode collapse; train.batch_size must be a multiple; 1 = off)", ge=1)


@dataclass
class ObjectiveConfig:
    name: str = opt("ns", "loss: ns (non-saturating), minimax (the saturating log(1 - D(G(z)))), "
                    "wgan (critic, weight clipping), wgan-gp (critic, gradient penalty), lsgan (least "
                    "squares), hinge, rals (relativistic average, logistic), rpgan (relativistic pairing, R3GAN)")
    label_smoothing: float = opt(0.0, "one-sided label smoothing: real targets become 1 - this",
                                 ge=0.0)
    instance_noise: float = opt(0.0, "std of Gaussian noise added to D's inputs, annealed to 0",
                                ge=0.0)
    instance_noise_steps: int = opt(0, "steps over which instance noise anneals to 0 (0 = the whole run)",
                                    ge=0)
    clip: float = opt(0.01, "wgan: D's weights are clipped to [-clip, clip] after every D step", gt=0.0)
    gp_weight: float = opt(10.0, "wgan-gp: weight (lambda) of the penalty (|grad D(x)| - 1)^2 on random "
                           "interpolates of real and fake", ge=0.0)
    r1_gamma: float = opt(0.0, "R1 penalty gamma / 2 * |grad D(x)|^2 on real data, added to D's loss of "
                          "any objective (0 = off; e.g. 10 with ns or hinge)", ge=0.0)
    r2_gamma: float = opt(0.0, "R2 penalty gamma / 2 * |grad D(G(z))|^2 on generated data, the fake-side twin "
                          "of R1 (R3GAN regularises both; 0 = off)", ge=0.0)
    r1_every: int = opt(1, "lazy R1 / R2: compute them on every N-th D step only, scaled by N", ge=1)
    gamma_final: float = opt(1.0, "R1 / R2: gamma at the last step as a fraction of r1_gamma / r2_gamma, reached "
                             "along half a cosine (1 = constant; R3GAN decays to 0.1; needs train.steps)",
                             ge=0.0)
    aux_weight: float = opt(1.0, "ACGAN (a D with conditioning acgan): weight of the auxiliary classifier's "
                            "cross-entropy, on real and fake images in D's loss and on fakes in G's", ge=0.0)


@dataclass
class OptimConfig:
    name: str = opt("adam", "optimizer of both networks: adam, rmsprop or sgd",
                    choices=("adam", "rmsprop", "sgd"))
    lr_g: float = opt(2e-4, "learning rate of G", gt=0.0)
    lr_d: float = opt(2e-4, "learning rate of D", gt=0.0)
    betas_g: list = opt([0.5, 0.999], "Adam betas of G")
    betas_d: list = opt([0.5, 0.999], "Adam betas of D")
    eps: float = opt(1e-8, "epsilon of Adam and RMSprop", gt=0.0)
    alpha: float = opt(0.99, "RMSprop smoothing constant of the squared-gradient average", gt=0.0)
    momentum: float = opt(0.0, "momentum of RMSprop and SGD", ge=0.0)
    weight_decay: float = opt(0.0, "L2 weight decay of both optimizers", ge=0.0)
    schedule: str = opt("constant", "learning-rate schedule: constant, linear decay to lr_final at the last step, "
                        "hold-linear (constant for the first half, then linear, as CycleGAN), or cosine (half a "
                        "cosine, as R3GAN); the decaying ones need train.steps or train.epochs",
                        choices=("constant", "linear", "hold-linear", "cosine"))
    lr_final: float = opt(0.0, "a decaying schedule's learning rate at the last step, as a fraction of lr_g / lr_d",
                          ge=0.0, le=1.0)
    beta2_final: float | None = opt(None, "Adam: beta2 of both optimizers follows half a cosine from betas_g[1] / "
                                    "betas_d[1] to this at the last step (R3GAN raises it; null = constant; needs "
                                    "train.steps)", ge=0.0)


@dataclass
class TrainConfig:
    seed: int = opt(0, "seed of every random stream (init, data order, latents, noise), 0 to 2^32 - 1",
                    ge=0, le=MAX_SEED)
    device: str = opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps", resumable=True)
    batch_size: int = opt(64, "images per D and per G update, over all processes of a multi-process run "
                            "(each of N takes batch_size / N)", ge=1)
    steps: int | None = opt(10_000, "total generator updates of the run (resume counts from its step)",
                            ge=0, resumable=True)
    epochs: float | None = opt(None, "alternative stop: passes over the data (overrides steps)", gt=0.0,
                               resumable=True)
    max_seconds: float | None = opt(None, "wall-clock budget of this invocation; saves, then stops",
                                    gt=0.0, resumable=True)
    d_steps: int = opt(1, "discriminator updates per generator update (k)", ge=1)
    ema_decay: float = opt(0.0, "decay of the exponential moving average of G (0 = no EMA)", ge=0.0)
    ema_start: int = opt(0, "step from which the EMA averages (before: it copies G)", ge=0)
    ema_warmup: bool = opt(True, "ramp the EMA decay up as min(ema_decay, (1 + n) / (1 + n + 1 / ema_rampup)) over "
                           "its n-th update, so short runs do not sample mostly G's initial weights")
    ema_rampup: float = opt(1 / 9, "with ema_warmup: the EMA spans about this fraction of the steps averaged so far "
                            "(until ema_decay caps it); 1/9 gives (1 + n) / (10 + n)", gt=0.0, le=1.0)
    ema_decay_final: float | None = opt(None, "the EMA's length schedule (R3GAN's): the cap on the decay goes from "
                                        "ema_decay to this at the last step, its half-life along half a cosine "
                                        "(e.g. 0.999 -> 0.9999: a 10x longer average as the run settles); "
                                        "null = ema_decay throughout", gt=0.0)
    augment: str = opt("", "DiffAugment policy applied to every image D sees, real and fake: comma-separated "
                       "translation, cutout, color (empty = off)")
    ada_target: float = opt(0.0, "adaptive augmentation (ADA, Karras et al. 2020): apply each train.augment transform "
                            "to each image with a probability p that rises while D ranks real images above fakes "
                            "more surely than this, E[sign(D(real) - D(fake))] (ADA's 0.6), and falls below it; "
                            "0 = off (every transform always)", ge=0.0, le=1.0)
    ada_kimg: float = opt(100.0, "ADA: thousands of images over which p can move from 0 to 1 (ADA's 500 suits GPU "
                          "runs of millions of images; a CPU budget sees a few hundred thousand)", gt=0.0)
    threads: int | None = opt(None, "CPU threads for torch per process (null = auto: on the CPU the faster of "
                              "all cores or one, timed before the first step and kept on resume; set it for "
                              "bit-for-bit repeatable fresh CPU runs)", ge=1,
                              resumable=True)


TRACKERS = ("tensorboard", "wandb", "mlflow")  # the choices of log.trackers (gankit.trackers writes them)


@dataclass
class LogConfig:
    every: int = opt(50, "steps between metrics.jsonl / TensorBoard scalar records", ge=1, resumable=True)
    sample_every: int = opt(500, "steps between sample grids (samples/step_000500.png, ...); 0 = end only",
                            ge=0, resumable=True)
    grid: int = opt(8, "sample grids are grid x grid images from a fixed latent batch", ge=1,
                    resumable=True)
    progress: bool = opt(True, "show a progress bar", resumable=True)
    trackers: list[str] = opt(["tensorboard"], "experiment trackers that get metrics.jsonl's scalars, the config and "
                              "the sample grids: tensorboard (<run>/tensorboard, when installed), wandb (Weights & "
                              "Biases, offline, <run>/wandb; extra wandb), mlflow (a local file store, <run>/mlruns; "
                              "extra mlflow); a resumed run continues their runs (ids in <run>/trackers.json)",
                              resumable=True)
    tensorboard: bool = opt(True, "false turns TensorBoard off even where log.trackers lists it (the older switch, "
                            "kept: TensorBoard logs are written when both say so)", resumable=True)
    plot: bool = opt(True, "write loss_curves.png at the end", resumable=True)
    grad_norms: bool = opt(False, "also log grad_norm_d and grad_norm_g: the L2 norm of all of D's (G's) gradients "
                           "as its optimizer applies them (after fp16 unscaling, before the step), on its last "
                           "update of each step; off, training is bit-for-bit the same", resumable=True)


@dataclass
class CheckpointConfig:
    every: int = opt(1000, "steps between checkpoints (one is also written at the end)", ge=1,
                     resumable=True)
    keep: int = opt(3, "number of most recent checkpoints kept", ge=1, resumable=True)


@dataclass
class EvalConfig:
    every: int = opt(0, "steps between in-training evaluations (0 = off)", ge=0, resumable=True)
    metrics: list = opt(["fid", "classes"], "metrics computed during training (names as in `gankit eval`)",
                        resumable=True)
    num: int = opt(2000, "samples per in-training evaluation (the final report uses 10,000)", ge=2,
                   resumable=True)
    reference: str | None = opt(None, "reference dataset of the evaluation (null = data.name)", resumable=True)
    extractor: str | None = opt(None, "feature extractor (null = the reference dataset's default)",
                                resumable=True)
    keep_best: bool = opt(True, "keep checkpoints/best.safetensors, the evaluated checkpoint with the lowest FID",
                          resumable=True)


@dataclass
class HealthConfig:
    alarms: bool = opt(True, "watch for a winning D, collapse and divergence; print a suggested action",
                       resumable=True)
    patience: int = opt(10, "log intervals a condition must last before its alarm fires", ge=1, resumable=True)
    d_wins_below: float = opt(0.02, "`d wins` alarm: mean D(G(z)) below this (logistic losses: ns, minimax, "
                                    "rals, rpgan)",
                              ge=0.0, resumable=True)
    diversity_below: float = opt(0.25, "`collapse` alarm: per-feature std of G's samples over that of the real "
                                 "data below this", ge=0.0, resumable=True)
    coverage_below: float = opt(0.8, "`collapse` alarm: share of classes present in evaluation samples below "
                                "this (needs eval.metrics to include classes)", ge=0.0, resumable=True)
    rollbacks: int = opt(3, "non-finite loss: roll back to the last good checkpoint at most this many times, "
                         "then stop", ge=0, resumable=True)
    rollback_lr_factor: float = opt(0.5, "learning rates are multiplied by this at each rollback", gt=0.0,
                                    resumable=True)


@dataclass
class PerfConfig:
    amp: str = opt("auto", "mixed precision of G's and D's forward passes (losses stay float32): auto = bf16 on "
                   "CUDA GPUs with native bfloat16, fp16 on older ones, bf16 for conv models on CPUs with native "
                   "bfloat16 (AVX512-BF16 or AMX), fp32 (off) otherwise; fp32, bf16, "
                   "or fp16 (with a gradient scaler, checkpointed)", choices=("auto", "fp32", "bf16", "fp16"),
                   resumable=True)
    channels_last: bool | None = opt(None, "NHWC layout of conv weights and image batches (tensor cores); "
                                     "null = auto: on for CUDA with mixed precision and conv models",
                                     resumable=True)
    compile: bool = opt(False, "torch.compile the training forwards of G and D (D stays eager under gradient "
                        "penalties: no double backward); pays off on long GPU runs", resumable=True)
    sync_batchnorm: bool = opt(False, "multi-process CUDA runs: BatchNorm statistics over the global batch "
                               "(SyncBatchNorm) instead of each process's slice", resumable=True)


@dataclass
class GameConfig:
    name: str = opt("gan", "what a training step computes, a registered game: gan (noise -> image, unconditional or "
                    "class-conditional), pix2pix (paired image-to-image: U-Net G, PatchGAN D on (input, output), "
                    "cGAN + L1), cyclegan (unpaired: two Gs, two Ds, cycle and identity losses), or a plug-in's",
                    choices=GAMES)
    task: str = opt("", "translation data: built-in digit tasks superres4 (7 -> 28), superres2 (14 -> 28), inpaint "
                    "(centre 14x14 box), inpaint-boxes, inpaint-strokes, edges (pix2pix), bold (cyclegan: digits "
                    "<-> bold coloured digits); or folders under data.root: aligned (A|B side by side), paired "
                    "(A/ and B/ with matching names), unpaired (trainA/, trainB/)")
    direction: str = opt("AtoB", "folder tasks: which side is the input", choices=("AtoB", "BtoA"))
    lambda_l1: float = opt(100.0, "pix2pix: weight of the L1 distance to the target beside the cGAN loss", ge=0.0)
    lambda_cycle: float = opt(10.0, "cyclegan: weight of the cycle-consistency L1 losses A->B->A and B->A->B",
                              ge=0.0)
    lambda_identity: float = opt(0.5, "cyclegan: weight of the identity loss |G_AB(b) - b|, as a fraction of "
                                 "lambda_cycle (0 = off)", ge=0.0)
    lambda_recon: float = opt(0.0, "bigan: weight of ALICE's cycle term |G(E(x)) - x| (L1, Li et al. 2017) in the "
                              "loss of G and E, beside the adversarial one (0 = plain BiGAN)", ge=0.0)
    pool_size: int = opt(50, "cyclegan: Ds judge fakes drawn from a history of this many generated images "
                         "(0 = the newest only)", ge=0)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
    game: GameConfig = field(default_factory=GameConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Parsing and validation


def coerce_value(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a field annotation, converting where YAML is ambiguous."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for alternative in inner[:-1]:  # bool | str: true/false, or a word such as auto
            try:
                return coerce_value(value, alternative, key)
            except ConfigError:
                pass
        return coerce_value(value, inner[-1], key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads `1e-4` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation is list or origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            (inner,) = typing.get_args(annotation)[:1] or (None,)
            if inner is None or inner is Ellipsis:
                return list(value)
            return [coerce_value(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    elif annotation is dict:
        if isinstance(value, dict):
            return dict(value)
    name = getattr(annotation, "__name__", str(annotation))
    raise ConfigError(f"config: {key} must be {name}, got {value!r}")


def check_range(value: Any, meta: typing.Mapping[str, Any], key: str) -> None:
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):  # YAML's .inf / .nan: never a setting
        raise ConfigError(f"config: {key} must be a finite number, got {value!r}")
    if meta.get("gt") is not None and not value > meta["gt"]:
        raise ConfigError(f"config: {key} must be > {meta['gt']}, got {value!r}")
    if meta.get("ge") is not None and not value >= meta["ge"]:
        raise ConfigError(f"config: {key} must be >= {meta['ge']}, got {value!r}")
    if meta.get("le") is not None and not value <= meta["le"]:
        raise ConfigError(f"config: {key} must be <= {meta['le']}, got {value!r}")
    if isinstance(meta.get("choices"), Registry):  # names that plug-ins extend
        if value not in meta["choices"]:
            known = meta["choices"]
            raise ConfigError(f"config: {key}: {unknown_name_message(known.kind, value, known.names(), plugins=True)}")
        return
    if meta.get("choices") and value not in meta["choices"]:
        words = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in meta["choices"])
        raise ConfigError(f"config: {key} must be one of {words}; got {value!r}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config: {prefix.rstrip('.') or 'the top level'} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            full = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(f"config: unknown key '{full}'{hint} (valid: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], raw.get(name), key + ".")
        elif name in raw:
            value = coerce_value(raw[name], hints[name], key)
            if isinstance(value, dict):  # `--set model.generator.width=16` keeps the default's name
                value = {**f.default_factory(), **value}
            check_range(value, f.metadata, key)
            kwargs[name] = value
    cfg = cls(**kwargs)
    return cfg


def scheduled_to_last_step(cfg: Config) -> list[str]:
    """The settings that count down to train.steps (a schedule's end, annealed noise): each needs that target."""
    keys = [("optim.schedule", cfg.optim.schedule != "constant"),
            ("optim.beta2_final", cfg.optim.beta2_final is not None),
            ("objective.gamma_final", cfg.objective.gamma_final != 1.0),
            ("train.ema_decay_final", cfg.train.ema_decay_final is not None),
            ("objective.instance_noise", cfg.objective.instance_noise > 0 and not cfg.objective.instance_noise_steps)]
    return [key for key, on in keys if on]


def _validate(cfg: Config) -> Config:
    for key in ("betas_g", "betas_d"):
        betas = getattr(cfg.optim, key)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ConfigError(f"config: optim.{key} must be two numbers in [0, 1), got {betas!r}")
        setattr(cfg.optim, key, [float(b) for b in betas])
    for key in ("generator", "discriminator", "encoder"):
        spec = getattr(cfg.model, key)
        if not isinstance(spec.get("name"), str):
            raise ConfigError(f"config: model.{key}.name must name a model, got {spec.get('name')!r}")
    if cfg.objective.label_smoothing >= 0.5:
        raise ConfigError("config: objective.label_smoothing must be < 0.5 "
                          f"(got {cfg.objective.label_smoothing})")
    if cfg.optim.schedule != "constant" and cfg.train.steps is None and cfg.train.epochs is None:
        raise ConfigError(f"config: optim.schedule {cfg.optim.schedule} decays to 0 at the last step: "
                          "set train.steps or train.epochs")
    for key in scheduled_to_last_step(cfg):
        # the schedule has its own message; annealed noise without a target is refused where it starts
        if key not in ("optim.schedule", "objective.instance_noise") and cfg.train.steps is None and cfg.train.epochs is None:
            raise ConfigError(f"config: {key} is reached at the last step: set train.steps or train.epochs")
    if cfg.train.ema_decay_final is not None:
        if cfg.train.ema_decay <= 0:
            raise ConfigError("config: train.ema_decay_final schedules the EMA's length: set train.ema_decay too")
        if cfg.train.ema_decay_final >= 1.0:
            raise ConfigError(f"config: train.ema_decay_final must be < 1, got {cfg.train.ema_decay_final}")
    if cfg.optim.beta2_final is not None:
        if cfg.optim.name != "adam":
            raise ConfigError(f"config: optim.beta2_final schedules Adam's beta2; optim.name is {cfg.optim.name}")
        if cfg.optim.beta2_final >= 1.0:
            raise ConfigError(f"config: optim.beta2_final must be < 1, got {cfg.optim.beta2_final}")
    for key in ("alpha", "momentum"):
        if getattr(cfg.optim, key) >= 1.0:
            raise ConfigError(f"config: optim.{key} must be < 1, got {getattr(cfg.optim, key)}")
    if cfg.train.ada_target > 0 and not cfg.train.augment.strip():
        raise ConfigError("config: train.ada_target adapts the probability of train.augment's transforms: set "
                          "train.augment too (e.g. translation,color,cutout)")
    if cfg.train.ema_decay >= 1.0:
        raise ConfigError(f"config: train.ema_decay must be < 1, got {cfg.train.ema_decay}")
    if cfg.health.rollback_lr_factor >= 1.0:
        raise ConfigError(f"config: health.rollback_lr_factor must be < 1, got {cfg.health.rollback_lr_factor}")
    for name in cfg.log.trackers:
        if name not in TRACKERS:
            from gankit.registry import unknown_name_message

            raise ConfigError(f"config: log.trackers: {unknown_name_message('tracker', name, list(TRACKERS))}")
    if len(set(cfg.log.trackers)) != len(cfg.log.trackers):
        raise ConfigError(f"config: log.trackers names a tracker twice: {cfg.log.trackers}")
    if cfg.data.channels not in (None, 1, 3):
        raise ConfigError(f"config: data.channels must be 1 or 3, got {cfg.data.channels}")
    return cfg


def from_dict(raw: dict[str, Any]) -> Config:
    """Build a validated :class:`Config` from a plain mapping (e.g. parsed YAML)."""
    return _validate(_build(Config, raw, ""))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr_g=1e-4"`` -> (["optim", "lr_g"], 1e-4); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"config: override {text!r} must look like section.key=value")
    key, value = text.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        raise ConfigError(f"config: override {text!r} has an empty key")
    try:
        parsed = safe_yaml(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: cannot parse the value of {text!r}: {_yaml_problem(exc)}") from None
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted ``key=value`` overrides applied."""
    raw = json.loads(json.dumps(raw))
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"config: cannot set {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return raw


MAX_YAML_DEPTH = 32  # a config nests 3-4 levels; deeper is a mistake or an attack
MAX_YAML_NODES = 20_000  # values after alias expansion: a config has a few hundred


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader for configs: plain JSON-like values only (no dates, binary or sets), no duplicated keys,
    bounded nesting and alias expansion (a few hundred bytes of nested aliases expand to gigabytes)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node, {}, set())
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, typing.Hashable):
                    continue  # SafeConstructor refuses it with its own message
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicated key {key!r} (YAML would "
                                                            "silently keep the last value)", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)

    def _refuse(self, node: Any) -> Any:
        what = {"timestamp": "a date or time", "binary": "binary data", "set": "a set", "omap": "an ordered map",
                "pairs": "a list of pairs"}.get(node.tag.rsplit(":", 1)[-1], node.tag)
        raise yaml.constructor.ConstructorError(None, None, f"{what} is not a config value (quote it to make "
                                                "it a string)", node.start_mark)


for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    ConfigLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", ConfigLoader._refuse)


def _expanded_size(node: Any, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Values under ``node`` with every alias expanded; raises beyond MAX_YAML_NODES or on a cycle."""
    if id(node) in sizes:
        size = sizes[id(node)]
    else:
        if id(node) in open_nodes:
            raise yaml.composer.ComposerError(None, None, "an alias refers to a value that contains it",
                                              node.start_mark)
        open_nodes.add(id(node))
        children = (node.value if isinstance(node, yaml.SequenceNode) else
                    [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
        size = 1 + sum(_expanded_size(child, sizes, open_nodes) for child in children)
        open_nodes.discard(id(node))
        sizes[id(node)] = size
    if size > MAX_YAML_NODES:
        raise yaml.composer.ComposerError(None, None, f"more than {MAX_YAML_NODES:,} values once its aliases "
                                          "are expanded", node.start_mark)
    return size


def safe_yaml(text: str) -> Any:
    """Parse config YAML with :class:`ConfigLoader`."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 (a SafeLoader subclass)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line report (with a caret drawing) as one line: the problem and where."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return " ".join(str(exc).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(exc, "context", None)
    return f"{problem}{where}" + (f" ({context})" if context else "")


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config: cannot read {path}: {exc}") from None
    try:
        raw = safe_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {path} is not valid YAML: {_yaml_problem(exc)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config: {path} must hold a mapping of sections, got {type(raw).__name__}")
    return raw


def load(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML config file, apply dotted overrides and validate."""
    return from_dict(apply_overrides(read_yaml(path), overrides or []))


def resume_conflicts(saved: dict[str, Any], current: Config) -> list[str]:
    """Keys whose values differ between a checkpoint's config and ``current``, resumable ones excepted."""
    conflicts = []
    now = current.to_dict()
    for section in dataclasses.fields(Config):
        sub = getattr(current, section.name)
        for f in dataclasses.fields(sub):
            if f.metadata.get("resumable"):
                continue
            # a key the checkpoint lacks predates that field: it ran with the field's default
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            old = saved.get(section.name, {}).get(f.name, default)
            new = now[section.name][f.name]
            if old != new:
                conflicts.append(f"{section.name}.{f.name}: checkpoint has {old!r}, config has {new!r}")
    return conflicts


def describe() -> list[tuple[str, Any, str]]:
    """(key, default, help) for every field, for documentation."""
    rows = []
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default_factory()):  # type: ignore[misc]
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"{section.name}.{f.name}", default, f.metadata["help"]))
    return rows
