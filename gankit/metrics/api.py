"""``calculate_metrics``: generated samples against a named reference dataset, in one feature space.

Samples come as a tensor, an ``.npz`` written by ``gankit sample``, a directory of images, or a run
directory / checkpoint to sample from. Metrics are a registry; each reads what it needs from one
:class:`MetricInputs`, so features are extracted once however many metrics use them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from gankit.data.registry import default_extractor, is_points_dataset
from gankit.metrics.classes import class_agreement, class_stats
from gankit.metrics.errors import EvalError
from gankit.metrics.extractor import FeatureExtractor
from gankit.metrics.features import fit_to, get_extractor
from gankit.metrics.fid import fid
from gankit.metrics.kid import kid
from gankit.metrics.modes import pacgan_modes, stacked_mnist_modes
from gankit.metrics.prdc import prdc
from gankit.metrics.reference import check_reference, reference_features
from gankit.registry import Registry

KNN_K = 3
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


@dataclass
class MetricInputs:
    """What a metric may read: the samples, their features (float64) and logits, the reference's."""

    samples: torch.Tensor
    dataset: str
    seed: int = 0
    features: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    ref_features: torch.Tensor | None = None
    ref_labels: torch.Tensor | None = None
    num_classes: int | None = None
    labels: torch.Tensor | None = None  # the class each sample was generated for (conditional G)
    _knn: dict[str, float] | None = field(default=None, repr=False)

    def pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.features is None or self.ref_features is None:
            raise EvalError("this metric needs features of the samples and of the reference")
        return self.features, self.ref_features

    def knn(self) -> dict[str, float]:
        """Precision, recall, density and coverage, computed once for `pr` and `dc` together."""
        if self._knn is None:
            feats, ref = self.pair()
            # equally large sets: the k-NN radii, and so all four numbers, depend on the set sizes
            self._knn = prdc(ref[:len(feats)], feats, k=KNN_K)
        return self._knn


@dataclass(frozen=True)
class Metric:
    """``needs``: "samples" (raw samples only), "features", or "logits" (features and class logits)."""

    compute: Callable[[MetricInputs], dict[str, Any]]
    needs: str
    summary: str
    spread: tuple[tuple[str, str], ...] = ()  # (value key, key of its standard deviation)
    reference: bool = True  # False: reads only the samples' own features / logits, no reference data


METRICS: Registry[Metric] = Registry("metric")


def _fid(x: MetricInputs) -> dict[str, Any]:
    return {"fid": fid(*x.pair())}


def _kid(x: MetricInputs) -> dict[str, Any]:
    mean, std = kid(*x.pair(), subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, seed=x.seed)
    return {"kid": mean, "kid_std": std}


def _pr(x: MetricInputs) -> dict[str, Any]:
    knn = x.knn()
    return {"precision": knn["precision"], "recall": knn["recall"]}


def _dc(x: MetricInputs) -> dict[str, Any]:
    knn = x.knn()
    return {"density": knn["density"], "coverage": knn["coverage"]}


def _classes(x: MetricInputs) -> dict[str, Any]:
    if x.logits is None or x.num_classes is None:
        raise EvalError("metric 'classes' needs an extractor with class logits (mnist-cnn or classifier:PATH)")
    k = x.num_classes
    if x.ref_labels is not None and len(x.ref_labels):
        if int(x.ref_labels.max()) >= k:
            raise EvalError(f"the reference {x.dataset} has {int(x.ref_labels.max()) + 1} classes but the "
                            f"extractor's classifier knows {k}; use a classifier trained on {x.dataset}")
        target = np.bincount(x.ref_labels.numpy(), minlength=k) / len(x.ref_labels)
    else:
        target = np.full(k, 1.0 / k)
    return class_stats(x.logits, k, target)


def _class_agreement(x: MetricInputs) -> dict[str, Any]:
    if x.logits is None or x.num_classes is None:
        raise EvalError("metric 'class_agreement' needs an extractor with class logits (mnist-cnn or classifier:PATH)")
    if x.labels is None:
        raise EvalError("metric 'class_agreement' needs the class each sample was generated for: a conditional "
                        "run or checkpoint, or an .npz with `labels` (gankit sample of a conditional run)")
    if len(x.labels) != len(x.logits) or int(x.labels.max()) >= x.num_classes or int(x.labels.min()) < 0:
        raise EvalError(f"metric 'class_agreement': {len(x.labels)} labels in {int(x.labels.min())}.."
                        f"{int(x.labels.max())} for "
                        f"{len(x.logits)} samples and a {x.num_classes}-class classifier")
    return class_agreement(x.logits, x.labels)


def _modes2d(x: MetricInputs) -> dict[str, Any]:
    if x.samples.dim() != 2 or x.samples.shape[1] != 2:
        raise EvalError(f"metric 'modes2d' needs 2D points (a ring or grid run), got shape "
                        f"{tuple(x.samples.shape)}")
    return dict(pacgan_modes(x.samples, x.dataset))


def _stacked(x: MetricInputs) -> dict[str, Any]:
    if x.samples.dim() != 4 or x.samples.shape[1] != 3:
        raise EvalError(f"metric 'stacked' needs uint8 stacked-MNIST images (N, 3, H, W), got "
                        f"{tuple(x.samples.shape)}")
    samples = x.samples
    if tuple(samples.shape[2:]) != (28, 28):
        # a run at data.resolution 32 (StyleGAN's power of two): back to the classifier's 28 px, with
        # the same antialiased resize that made the 32 px training digits
        samples = fit_to(samples, 28, 3).mul(255).round().clamp(0, 255).to(torch.uint8)
    return dict(stacked_mnist_modes(samples))


for _name, _metric in {
    "fid": Metric(_fid, "features", "Fréchet distance between Gaussians fitted to the two feature sets (lower is better)"),
    "kid": Metric(_kid, "features", "kernel distance (unbiased MMD^2, cubic kernel), mean ± std over subsets",
                  (("kid", "kid_std"),)),
    "pr": Metric(_pr, "features", "precision (samples on the real manifold) and recall (real data covered), k = 3"),
    "dc": Metric(_dc, "features", "density (precision counting neighbourhoods) and coverage (real points with a "
                 "sample nearby), k = 3"),
    "classes": Metric(_classes, "logits", "class shares of the samples, classes present (>= 1 %), KL to the "
                      "reference's class distribution"),
    "class_agreement": Metric(_class_agreement, "logits", "conditional G: share of samples the classifier puts in "
                              "the class they were generated for (and the worst class's share)",
                              reference=False),
    "modes2d": Metric(_modes2d, "samples", "2D mixtures: modes captured, high-quality share, reverse KL (PacGAN)"),
    "stacked": Metric(_stacked, "samples", "stacked MNIST: modes captured out of 1000 and KL to uniform"),
}.items():
    METRICS.register(_name)(_metric)


def _as_samples(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.dim() == 4 and x.dtype == torch.uint8 and 0 in x.shape[2:]:
        raise EvalError(f"{what}: the images are {x.shape[2]} x {x.shape[3]} pixels: nothing to measure")
    if x.dim() == 2 and x.is_floating_point() and x.numel() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(1).sum())
        raise EvalError(f"{what}: {bad} of {len(x)} points hold NaN or Inf (a diverged generator, or a broken "
                        "file); no metric is defined for them")
    if x.dim() == 4 and x.dtype == torch.uint8:
        # a fresh NCHW copy: a permuted NHWC view with C = 1 passes is_contiguous() but convolves through
        # another kernel, so the same images would give features differing in the last bits
        return torch.empty(x.shape, dtype=x.dtype).copy_(x)
    if x.dim() == 2 and x.is_floating_point():
        return x.float()
    raise EvalError(f"{what}: samples must be uint8 images (N, C, H, W) or float points (N, D), got "
                    f"{x.dtype} {tuple(x.shape)}")


def _read_npz(path: Path, num: int, with_labels: bool) -> tuple[torch.Tensor, np.ndarray | None]:
    """The first ``num`` samples of an ``.npz`` (``images`` N x H x W [x C] uint8, or ``points`` N x D) and,
    when asked, its first ``num`` ``labels``; each array's header is checked before it is read."""
    from gankit.data.npz import NpzFile
    from gankit.data.source import DataError

    try:
        with NpzFile(path) as npz:
            if "images" in npz:
                info = npz.info("images")
                shape = info.shape
                if info.dtype != np.uint8 or len(shape) not in (3, 4):
                    raise EvalError(f"{path}: `images` must be uint8 (N, H, W, C), got {info.describe()}")
                if len(shape) == 4 and shape[3] not in (1, 3):
                    raise EvalError(f"{path}: `images` must have 1 (grayscale) or 3 (RGB) channels, got "
                                    f"{shape[3]} (shape N, H, W, C = {shape})")
                x = torch.from_numpy(npz.read("images", num))
                x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
            elif "points" in npz:
                info = npz.info("points")
                if info.dtype.kind not in "fiu":  # complex points lost their imaginary part with a warning
                    raise EvalError(f"{path}: `points` must be real numbers (N, D), got {info.describe()}")
                x = torch.from_numpy(npz.read("points", num).astype(np.float32))
            else:
                keys = ", ".join(npz.keys) or "none"
                raise EvalError(f"{path} holds neither `images` nor `points` (it has: {keys})")
            labels = npz.read("labels", num) if with_labels and "labels" in npz else None
    except DataError as exc:
        raise EvalError(str(exc)) from None
    return x, labels


def _read_image_dir(path: Path, num: int) -> torch.Tensor:
    from gankit.data.folder import image_header, list_images, read_image

    files = list_images(path)[:num]
    mode, (w, h) = image_header(files[0])
    channels = 1 if mode in ("1", "L", "I", "I;16", "F") or mode.startswith("I;16") else 3
    return torch.stack([read_image(p, min(w, h), channels) for p in files])


def load_samples(samples: torch.Tensor | np.ndarray | str | Path, num: int, *, seed: int = 0,
                 device: str | torch.device = "cpu", batch_size: int = 256) -> tuple[torch.Tensor, str]:
    """(uint8 images (N, C, H, W) or float points (N, D), a description): at most ``num`` samples of a
    tensor / array, an ``.npz`` (``images`` N x H x W x C or ``points``), a directory of images, or
    ``num`` fresh samples (latent seed ``seed``) of the generator in a run directory or checkpoint."""
    x, _, described = load_labelled_samples(samples, num, seed=seed, device=device, batch_size=batch_size)
    return x, described


def load_labelled_samples(samples: torch.Tensor | np.ndarray | str | Path, num: int, *, seed: int = 0,
                          device: str | torch.device = "cpu", batch_size: int = 256,
                          labels: torch.Tensor | np.ndarray | None = None, ema: bool = True
                          ) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """:func:`load_samples` plus the class each sample was generated for, when known (else None):
    ``labels`` given with a tensor or array, an ``.npz``'s ``labels``, or the labels a conditional
    generator is sampled with here (sample i is class i % num_classes). ``ema``: a run's EMA generator
    when it has one, else the raw G."""
    from gankit.checkpoint import CheckpointError, resolve

    if num < 1:
        raise EvalError(f"the number of samples must be >= 1, got {num}")
    if isinstance(samples, np.ndarray):
        samples = torch.from_numpy(samples)
    if isinstance(samples, torch.Tensor):
        return _as_samples(samples[:num].cpu(), "tensor"), _as_labels(labels, num), "tensor"
    path = Path(samples).expanduser()
    if path.suffix.lower() == ".npz":
        x, file_labels = _read_npz(path, num, labels is None)
        where = f"{path}: `labels`: " if labels is None else ""
        y = _as_labels(file_labels if labels is None else labels, num, where)
        return _as_samples(x, str(path)), y, str(path)
    if path.is_dir():
        try:
            resolve(path)
        except CheckpointError:  # no checkpoint here: a directory of images (`gankit sample --out DIR/`)
            return _read_image_dir(path, num), _as_labels(labels, num), f"{path} (images)"
    from gankit.sampling import load_generator

    gen = load_generator(path, ema=ema, device=device)
    y = gen.labels(num)
    x = gen.sample(num, seed=seed, batch_size=batch_size, labels=y)
    x = gen.to_uint8(x) if gen.is_image else x.float()
    y = None if gen.self_conditioned else y  # clusters, not classes: class_agreement has nothing to check
    which = "EMA generator" if gen.is_ema else "generator"
    return x, y, f"{path} ({which} at step {gen.step}, latent seed {seed})"


def _as_labels(labels: torch.Tensor | np.ndarray | None, num: int, where: str = "") -> torch.Tensor | None:
    if labels is None:
        return None
    arr = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    arr = arr[:num] if arr.ndim else arr
    integral = arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and bool(np.all(np.isfinite(arr)))
                                          and bool(np.all(arr == np.round(arr))))
    if arr.ndim != 1 or not integral or (arr.size and int(arr.min()) < 0):
        raise EvalError(f"{where}labels must be class indices >= 0, one per sample; got {arr.dtype} {arr.shape}"
                        + (f" with values {arr.min()!r}..{arr.max()!r}" if arr.size and arr.dtype.kind in "iuf" else ""))
    return torch.as_tensor(arr.astype(np.int64), dtype=torch.long)


def _extractor(spec: str | FeatureExtractor | None, ref: str, download: bool) -> FeatureExtractor:
    if isinstance(spec, FeatureExtractor):
        return spec
    return get_extractor(spec or default_extractor(ref), download=download)


def default_metrics(extractor: FeatureExtractor | None, labelled: bool = False) -> tuple[str, ...]:
    """fid, kid, pr, dc, plus classes when the extractor classifies, and class_agreement when the
    samples also carry the classes they were generated for."""
    base = ("fid", "kid", "pr", "dc")
    if extractor is None or not extractor.has_logits:
        return base
    return base + ("classes", "class_agreement") if labelled else base + ("classes",)


def get_metric(name: str) -> Metric:
    try:
        return METRICS.get(name)
    except KeyError as exc:
        raise EvalError(exc.args[0]) from None


def run_metrics(names: Sequence[str], inputs: MetricInputs) -> dict[str, Any]:
    """Every named metric's values, in one flat dict (a key reported twice is an error)."""
    result: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for name in names:
        for key, value in get_metric(name).compute(inputs).items():
            if key in result:
                raise EvalError(f"metrics {owner[key]!r} and {name!r} both report {key!r}; evaluate them separately")
            result[key], owner[key] = value, name
    return result


def _check_kinds(x: torch.Tensor, ref: str, ext: FeatureExtractor) -> None:
    points_ref, points_ext = is_points_dataset(ref), ext.name == "points"
    if x.dim() == 2 and not points_ref:
        raise EvalError(f"the samples are 2D points but {ref} is an image dataset")
    if x.dim() == 4 and points_ref:
        raise EvalError(f"the samples are images but {ref} holds 2D points")
    if points_ext != (x.dim() == 2):
        raise EvalError(f"the {ext.name} extractor does not fit {'2D points' if x.dim() == 2 else 'images'} "
                        f"(use {'points' if x.dim() == 2 else 'mnist-cnn, inception or classifier:PATH'})")


def _needed(names: Sequence[str]) -> int:
    """Items each set needs for the metrics: a covariance needs 2, the k-NN radii k + 1."""
    return max([KNN_K + 1 if name in ("pr", "dc") else 2 for name in names] + [1])


def _check_reference_count(n: int, names: Sequence[str], what: str) -> None:
    """Enough reference items for the metrics that compare against the reference (``what`` names them)."""
    reference = [name for name in names if get_metric(name).reference and get_metric(name).needs != "samples"]
    need = _needed(reference)
    if reference and n < need:
        items = f"{n} reference item{'s are' if n != 1 else ' is'}"
        raise EvalError(f"{what}: {items} too few for {', '.join(reference)}: at least {need} are needed"
                        + (" (the k-NN radii need k + 1)" if need > 2 else ""))


def _check_count(n: int, names: Sequence[str]) -> None:
    """Enough samples for the metrics."""
    need = _needed(names)
    if n < need:
        raise EvalError(f"{n} sample{'s' * (n != 1)} are too few for {', '.join(names)}: at least {need} are needed")


def calculate_metrics(samples: torch.Tensor | np.ndarray | str | Path, ref: str, *,
                      metrics: Sequence[str] | None = None, num: int = 10_000,
                      extractor: str | FeatureExtractor | None = None, split: str = "train", root: str = "data",
                      seed: int = 0, cache_dir: str | Path | None = None, device: str | torch.device = "cpu",
                      num_reference: int | None = None, download: bool = False,
                      labels: torch.Tensor | np.ndarray | None = None, ema: bool = True) -> dict[str, Any]:
    """Measure ``samples`` against the registered dataset ``ref`` (its ``split``, first ``num_reference``
    items, all when None). ``metrics`` default: fid, kid, pr, dc (+ classes for classifier extractors, and
    class_agreement when the samples' generated classes are known: a conditional run, an .npz with
    ``labels``, or ``labels`` given with a tensor; ``ema`` False samples a run's raw G); ``extractor`` default: mnist-cnn for MNIST, points
    for 2D mixtures, inception otherwise.

    Returns every metric value (flat: ``fid``, ``kid`` and ``kid_std``, ``precision``, ...) and ``info``
    (sample and reference counts, dataset, split, extractor name and version, seed, gankit version).
    """
    from gankit.version import __version__

    t0 = time.perf_counter()
    names = list(dict.fromkeys(metrics)) if metrics is not None else None
    if names == []:
        raise EvalError(f"no metrics requested (choose from {', '.join(METRICS.names())})")
    chosen = {n: get_metric(n) for n in names or ()}
    check_reference(ref, split)
    x, y, described = load_labelled_samples(samples, num, seed=seed, device=device, labels=labels, ema=ema)
    _check_count(len(x), names or list(default_metrics(None)))
    needs_features = names is None or any(m.needs != "samples" for m in chosen.values())
    ext = _extractor(extractor, ref, download) if needs_features else None
    if names is None:
        names = list(default_metrics(ext, labelled=y is not None))
        chosen = {n: get_metric(n) for n in names}
    if num_reference is not None:  # before any features: --num-reference 2 with pr was a kthvalue traceback
        _check_reference_count(num_reference, names, f"--num-reference {num_reference}")
    inputs = MetricInputs(x, ref, seed, labels=y)
    if ext is not None:
        _check_kinds(x, ref, ext)
        wants_logits = [n for n, m in chosen.items() if m.needs == "logits"]
        if wants_logits and not ext.has_logits:
            raise EvalError(f"metric {wants_logits[0]!r} needs an extractor with class logits (mnist-cnn or "
                            f"classifier:PATH); {ext.name} has none")
        square = x.dim() == 4 and x.shape[-1] == x.shape[-2]
        inputs.features, inputs.logits = ext.extract(x, device=device)
        if any(get_metric(n).reference for n in names):
            inputs.ref_features, inputs.ref_labels = reference_features(
                ref, ext, split=split, num=num_reference, root=root, resolution=x.shape[-1] if square else None,
                channels=x.shape[1] if x.dim() == 4 else None, download=download, cache_dir=cache_dir,
                device=device)
            _check_reference_count(len(inputs.ref_features), names, f"the reference {ref} ({split})")
            if inputs.ref_features.shape[1:] != inputs.features.shape[1:]:
                mine, theirs = tuple(inputs.features.shape), tuple(inputs.ref_features.shape)
                raise EvalError(f"{described}: the samples are {mine[1]}-D points {mine} but {ref} holds {theirs[1]}-D "
                                f"points {theirs}" if x.dim() == 2 else
                                f"{described}: the samples' features {mine} do not match {ref}'s {theirs}")
        inputs.num_classes = ext.num_classes
    result = run_metrics(names, inputs)
    info: dict[str, Any] = {
        "num": len(x), "samples": described, "reference": ref, "split": split,
        "num_reference": None if inputs.ref_features is None else len(inputs.ref_features),
        "extractor": None if ext is None else ext.name, "extractor_version": None if ext is None else ext.version,
        "extractor_key": None if ext is None else ext.key, "metrics": names, "seed": seed,
        "gankit_version": __version__, "seconds": round(time.perf_counter() - t0, 2)}
    if "pr" in names or "dc" in names:
        info["knn"] = {"k": KNN_K, "num_reference": min(len(x), info["num_reference"] or 0)}
    result["info"] = info
    return result


def format_table(result: dict[str, Any]) -> str:
    """An aligned table of the scalar values of a result (``±`` where a metric reports a spread)."""
    spreads = {v: s for name in result.get("info", {}).get("metrics", []) if name in METRICS
               for v, s in METRICS.get(name).spread}
    hidden = set(spreads.values())
    rows = []
    for key, value in result.items():
        if key == "info" or key in hidden or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        text = _fmt(value)
        if key in spreads and isinstance(result.get(spreads[key]), (int, float)):
            text += f" ± {_fmt(result[spreads[key]])}"
        rows.append((key, text))
    width = max([len("metric")] + [len(k) for k, _ in rows])
    return "\n".join([f"{'metric':{width}}  value"] + [f"{k:{width}}  {t}" for k, t in rows])


def _fmt(value: int | float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.5g}"
