"""Reference data of an evaluation: a registered dataset's images (or 2D points) and labels by split,
and their features under one extractor, cached on disk so each reference is extracted only once.

Cache: one safetensors file per (dataset, split, extractor and its weights, N, channels x resolution)
under ``$GANKIT_CACHE/reference`` (default ``~/.cache/gankit/reference``), holding the features and
labels with a checksum. A file that fails any check is recomputed with a warning, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gankit.data.registry import dataset_facts, dataset_splits
from gankit.metrics.errors import EvalError
from gankit.metrics.extractor import FeatureExtractor
from gankit.metrics.store import cache_root
from gankit.registry import unknown_name_message

CACHE_FORMAT = "gankit-reference"
CACHE_VERSION = 1
TEST_SEED = 4321  # 2D mixtures: the `test` split is a fresh draw, disjoint in randomness from training's


class ReferenceCacheWarning(RuntimeWarning):
    """A reference cache file was unusable (and has been recomputed) or could not be written."""


def check_reference(dataset: str, split: str) -> None:
    """Unknown dataset names and splits raise EvalError with the closest valid name."""
    from gankit.data import DATASETS

    if dataset not in DATASETS:
        raise EvalError(unknown_name_message("dataset", dataset, DATASETS.names()))
    splits = dataset_splits(dataset)
    if split not in splits:
        raise EvalError(f"{dataset}: {unknown_name_message('split', split, list(splits))}")


def reference_images(dataset: str, split: str = "train", num: int | None = None, root: str = "data", *,
                     resolution: int | None = None, channels: int | None = None, download: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(uint8 images (N, C, H, W), labels or None) of a registered dataset; for 2D datasets (``ring``,
    ``grid``) float points (N, 2) and their mode indices. ``num`` keeps the first N (all when None);
    ``resolution`` / ``channels`` fit the images as training does (None keeps the dataset's own).

    mnist10k: ``train`` is all 10,000 digits in gankit's fixed shuffled order (so any prefix is
    class-balanced), ``holdout`` the last 1,000 of them (never seen by ``mnist-cnn``). torchvision
    datasets: ``train`` / ``test``. 2D mixtures: ``train`` is the training set, ``test`` a fresh draw.
    """
    from gankit.config import ConfigError, DataConfig
    from gankit.data import TensorSource, build_dataset, toy2d, vision
    from gankit.data.bundled import shuffled_mnist10k
    from gankit.data.source import fit_images, to_uint8

    check_reference(dataset, split)
    if num is not None and num < 1:
        raise EvalError(f"the number of reference samples must be >= 1, got {num}")
    cfg = DataConfig(name=dataset, root=root, download=download, resolution=resolution, channels=channels,
                     normalize="unit", limit=num)
    if dataset == "mnist10k":
        images, labels = shuffled_mnist10k()
        if split == "holdout":
            held = dataset_facts(dataset).holdout
            images, labels = images[-held:], labels[-held:]
        x = torch.from_numpy(np.ascontiguousarray(images[:num])).unsqueeze(1)
        return fit_images(x, resolution, channels), torch.from_numpy(labels[:num].astype(np.int64))
    if dataset in toy2d.MIXTURES:
        modes_fn, std = toy2d.MIXTURES[dataset]
        n = num or cfg.num_points
        seed = toy2d.TRAIN_SEED if split == "train" else TEST_SEED
        return toy2d.mixture_points(modes_fn(), std, n, seed)
    try:
        source = (vision.load_split(dataset, cfg, train=split == "train") if dataset in vision.NAMES
                  else build_dataset(cfg))
    except ConfigError as exc:
        raise EvalError(str(exc)) from None
    if isinstance(source, TensorSource):
        labels = None if source.labels is None else source.labels.long()
        return source.data, labels
    # decoded on the fly (large image folders): gather it, back in uint8
    ds = source.dataset
    count = len(ds) if num is None else min(num, len(ds))  # type: ignore[arg-type]
    items = [ds[i] for i in range(count)]
    xs = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
    return to_uint8(torch.stack(xs), source.normalize), None


def reference_cache_dir(cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "reference"


def cache_key(dataset: str, split: str, extractor: FeatureExtractor, num: int | None, resolution: int | None,
              channels: int | None, root: str) -> dict[str, Any]:
    """Everything the cached features depend on (JSON-native values only)."""
    key: dict[str, Any] = {"dataset": dataset, "split": split, "extractor": extractor.key,
                           "num": num, "resolution": resolution, "channels": channels}
    if dataset == "folder":  # a folder's content is not fixed by its name: key it by its files too
        from gankit.data.folder import list_images

        folder = Path(root).expanduser().resolve()
        files = list_images(folder)
        listing = "\n".join(f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
        key["root"] = str(folder)
        key["files"] = hashlib.sha256(listing.encode()).hexdigest()[:16]
    return key


def cache_path(directory: Path, key: dict[str, Any]) -> Path:
    size = "x".join(str(key[k] or "native") for k in ("channels", "resolution"))
    slug = f"{key['dataset']}-{key['split']}-{key['extractor']}-n{key['num'] or 'all'}-{size}"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", slug)
    tag = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return directory / f"{slug}-{tag}.safetensors"


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def read_cache(path: Path, key: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(features float64, labels) from a cache file; ValueError says why a file is unusable."""
    from safetensors.torch import load

    from gankit.metrics.store import safetensors_metadata

    raw = path.read_bytes()
    try:
        header = json.loads(safetensors_metadata(raw, str(path))["gankit"])
        tensors = load(raw)
    except (EvalError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"unreadable ({exc})") from None
    except Exception as exc:  # safetensors raises its own error types for truncated data
        raise ValueError(f"damaged tensor data ({exc})") from None
    if header.get("format") != CACHE_FORMAT or header.get("version") != CACHE_VERSION:
        raise ValueError(f"not a gankit reference cache of version {CACHE_VERSION}")
    if header.get("key") != key:
        raise ValueError("written for another reference")
    if _checksum(tensors) != header.get("sha256"):
        raise ValueError("its tensors do not match the checksum in its header")
    feats = tensors.get("features")
    labels = tensors.get("labels")
    if feats is None or feats.dim() != 2 or (labels is not None and len(labels) != len(feats)):
        raise ValueError("malformed tensors")
    return feats.double(), labels


def write_cache(path: Path, key: dict[str, Any], features: torch.Tensor, labels: torch.Tensor | None) -> None:
    from safetensors.torch import save

    from gankit.checkpoint import atomic_write_bytes

    # extractors compute in float32, so float32 storage loses nothing and halves the file
    tensors = {"features": features.float().contiguous()}
    if labels is not None:
        tensors["labels"] = labels.long().contiguous()
    header = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": key, "sha256": _checksum(tensors)}
    atomic_write_bytes(path, save(tensors, metadata={"gankit": json.dumps(header)}))


def reference_features(dataset: str, extractor: FeatureExtractor, *, split: str = "train", num: int | None = None,
                       root: str = "data", resolution: int | None = None, channels: int | None = None,
                       download: bool = False, cache_dir: str | Path | None = None,
                       device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:
    """(features (N, D) float64, labels or None) of the reference, from the cache when it holds them.

    2D points are their own features and are never cached.
    """
    if extractor.key.startswith("points"):
        points, labels = reference_images(dataset, split, num, root, download=download)
        return extractor.extract(points, device=device)[0], labels
    key = cache_key(dataset, split, extractor, num, resolution, channels, root)
    path = cache_path(reference_cache_dir(cache_dir), key)
    if path.is_file():
        try:
            return read_cache(path, key)
        except (ValueError, OSError) as exc:
            warnings.warn(f"reference cache {path} ignored and recomputed: {exc}", ReferenceCacheWarning,
                          stacklevel=2)
    images, labels = reference_images(dataset, split, num, root, resolution=resolution, channels=channels,
                                      download=download)
    if images.dim() != 4:
        raise EvalError(f"{dataset} holds 2D points; measure them with the points extractor")
    feats, _ = extractor.extract(images, device=device)
    try:
        write_cache(path, key, feats, labels)
    except OSError as exc:
        warnings.warn(f"reference cache {path} not written ({exc.strerror or exc}); the features will be "
                      "recomputed next time", ReferenceCacheWarning, stacklevel=2)
    return feats, labels
