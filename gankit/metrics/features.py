"""Feature extractors (a registry): map samples to feature vectors, and to class logits when the
extractor is a classifier.

An extractor is named by a spec string ``NAME`` or ``NAME:ARG``: ``mnist-cnn`` (the shipped digit
classifier), ``mnist-cnn-stacked`` (its features of each channel of stacked-MNIST images),
``classifier:PATH`` (one trained by ``gankit classifier``), ``inception`` /
``inception:PATH`` (Inception-v3 with the FID weights) and ``points`` (2D data as its own features).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from gankit.data.registry import default_extractor  # noqa: F401  (re-exported: playground/session.py reads it here)
from gankit.metrics.classifier import classifier_from_bytes
from gankit.metrics.errors import EvalError
from gankit.metrics.extractor import FeatureExtractor
from gankit.metrics.store import digest
from gankit.registry import Registry


def fit_to(images: torch.Tensor, resolution: int, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float [0, 1] at ``channels`` x ``resolution`` (antialiased resize)."""
    x = images.float().div(255)
    if x.shape[1] != channels:
        x = x.mean(1, keepdim=True) if channels == 1 else x.expand(-1, channels, -1, -1)
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return x


def _classifier_extractor(name: str, raw: bytes, where: str) -> FeatureExtractor:
    net, info = classifier_from_bytes(raw, where)
    version = int(info.get("version", 1))
    res, ch = net.resolution, net.channels

    def prepare(images: torch.Tensor) -> torch.Tensor:
        _check_images(images, name)
        return fit_to(images, res, ch)

    return FeatureExtractor(name, version, f"{name.split(':')[0]}-v{version}-{digest(raw)}", net, prepare,
                            net.num_classes, {**info, "source": where})


def _check_images(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4 or x.dtype != torch.uint8:
        raise EvalError(f"the {name} extractor takes uint8 images (N, C, H, W), got {x.dtype} {tuple(x.shape)}")


class _Points(nn.Module):
    """2D samples are their own features: distances between points are what matters."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def _no_arg(name: str, arg: str | None) -> None:
    if arg is not None:
        raise EvalError(f"the {name} extractor takes no argument (got {name}:{arg})")


Factory = Callable[[str | None, bool], FeatureExtractor]
FEATURES: Registry[Factory] = Registry("feature extractor")


@FEATURES.register("mnist-cnn")
def mnist_cnn(arg: str | None = None, download: bool = False) -> FeatureExtractor:
    """The shipped digit classifier (gankit/assets/mnist_cnn.safetensors), 128-d features, 10 logits."""
    _no_arg("mnist-cnn", arg)
    raw = resources.files("gankit.assets").joinpath("mnist_cnn.safetensors").read_bytes()
    return _classifier_extractor("mnist-cnn", raw, "gankit/assets/mnist_cnn.safetensors")


class _PerChannel(nn.Module):
    """Stacked digits: a digit classifier's features of each channel, concatenated."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.net.features(x[:, c:c + 1]) for c in range(x.shape[1])], 1)


@FEATURES.register("mnist-cnn-stacked")
def mnist_cnn_stacked(arg: str | None = None, download: bool = False) -> FeatureExtractor:
    """stacked-mnist: mnist-cnn's 128-d features of the R, G and B digit, concatenated (384-d, no logits:
    the 1000 modes are counted by the `stacked` metric)."""
    _no_arg("mnist-cnn-stacked", arg)
    base = mnist_cnn()
    name = "mnist-cnn-stacked"

    def prepare(images: torch.Tensor) -> torch.Tensor:
        _check_images(images, name)
        if images.shape[1] != 3:
            raise EvalError(f"the {name} extractor takes 3-channel stacked digits, got {images.shape[1]} channel(s)")
        return fit_to(images, base.net.resolution, 3)

    return FeatureExtractor(name, base.version, f"{name}-{base.key}", _PerChannel(base.net), prepare, None,
                            dict(base.info))


@FEATURES.register("classifier")
def classifier(arg: str | None = None, download: bool = False) -> FeatureExtractor:
    """A classifier trained by ``gankit classifier --data NAME --out PATH``: ``classifier:PATH``."""
    if not arg:
        raise EvalError("the classifier extractor needs a path: classifier:PATH "
                        "(train one with `gankit classifier --data NAME --out PATH`)")
    path = Path(arg).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EvalError(f"classifier weights {path} not found or unreadable ({exc.strerror or exc}); "
                        "train them with `gankit classifier --data NAME --out PATH`") from None
    return _classifier_extractor(f"classifier:{path}", raw, str(path))


@FEATURES.register("inception")
def inception(arg: str | None = None, download: bool = False) -> FeatureExtractor:
    """Inception-v3 with the FID weights (2048-d pool features), as in pytorch-fid / the TF original."""
    from gankit.metrics.inception import load_fid_inception

    return load_fid_inception(arg, download=download)


@FEATURES.register("points")
def points(arg: str | None = None, download: bool = False) -> FeatureExtractor:
    """2D data: the coordinates themselves."""
    _no_arg("points", arg)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.is_floating_point() is False:
            raise EvalError(f"the points extractor takes float points (N, D), got {x.dtype} {tuple(x.shape)}")
        return x.double()

    return FeatureExtractor("points", 1, "points-v1", _Points(), prepare)


def get_extractor(spec: str, *, download: bool = False) -> FeatureExtractor:
    """Build the extractor named by ``spec`` (``NAME`` or ``NAME:ARG``); unknown names suggest the closest."""
    name, _, arg = spec.partition(":")
    try:
        factory = FEATURES.get(name)
    except KeyError as exc:
        raise EvalError(exc.args[0]) from None
    return factory(arg or None, download)
