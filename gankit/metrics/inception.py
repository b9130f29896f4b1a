"""Inception-v3 as the FID reference implementation has it, so FIDs compare with published numbers.

The FID weights (pytorch-fid's port of TensorFlow's 2015-12-05 graph) belong to a network that differs
from torchvision's Inception-v3 in its pooling: the average pools of the A, C and first E blocks ignore
zero padding (TensorFlow's behaviour), the last E block max-pools, and the classifier has 1008 outputs.
Built here on torchvision's blocks; input handling follows pytorch-fid: [0, 1] floats, bilinear resize to
299x299 without antialiasing, then [-1, 1].
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.inception import (BasicConv2d, Inception3, InceptionA, InceptionAux, InceptionB,
                                          InceptionC, InceptionD, InceptionE)

from gankit.checkpoint import state_mismatch
from gankit.metrics.errors import EvalError
from gankit.metrics.extractor import FeatureExtractor
from gankit.metrics.store import cache_root, digest

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
WEIGHTS_ENV = "GANKIT_INCEPTION_WEIGHTS"
FEATURE_DIM = 2048
INPUT_SIZE = 299
VERSION = 1

# torchvision's layer names, input to the 2048-d average pool, in order
_TRUNK = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
          "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
          "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pool that, like TensorFlow's, divides by the number of real (unpadded) inputs."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class _BlockA(InceptionA):
    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), b5, b3, self.branch_pool(_tf_avg_pool(x))]


class _BlockC(InceptionC):
    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return [self.branch1x1(x), b7, d, self.branch_pool(_tf_avg_pool(x))]


class _BlockE(InceptionE):
    """``max_pool``: the FID graph's last block pools with a max where the paper has an average."""

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__(in_channels)
        self.pool = _max_pool if max_pool else _tf_avg_pool

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        s = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(s), self.branch3x3_2b(s)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3dbl = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        return [self.branch1x1(x), b3, b3dbl, self.branch_pool(self.pool(x))]


class FIDInceptionV3(Inception3):
    """The FID Inception graph; its ``state_dict`` keys are those of the pytorch-fid weight file."""

    def __init__(self) -> None:
        # the 1280-channel E block is Mixed_7b (average pool), the 2048-channel one Mixed_7c (max pool)
        blocks = [BasicConv2d, _BlockA, InceptionB, _BlockC, InceptionD,
                  lambda c: _BlockE(c, max_pool=c == 2048), InceptionAux]
        super().__init__(num_classes=1008, aux_logits=False, inception_blocks=blocks, init_weights=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 299, 299) in [-1, 1] -> (N, 2048) pool features."""
        for name in _TRUNK:
            x = getattr(self, name)(x)
        return self.avgpool(x).flatten(1)


def fid_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1 or 3, H, W) -> float (N, 3, 299, 299) in [-1, 1], exactly as pytorch-fid prepares it."""
    if images.dim() != 4 or images.dtype != torch.uint8 or images.shape[1] not in (1, 3):
        raise EvalError(f"the inception extractor takes uint8 images (N, 1 or 3, H, W), got {images.dtype} "
                        f"{tuple(images.shape)}")
    x = images.float().div(255)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=False)
    return x.mul(2).sub(1)


def weight_candidates() -> list[Path]:
    """Where the weights are looked for, after an explicit path: $GANKIT_INCEPTION_WEIGHTS, gankit's cache,
    torch hub's checkpoint directory (where pytorch-fid downloads them)."""
    found = [Path(os.environ[WEIGHTS_ENV]).expanduser()] if os.environ.get(WEIGHTS_ENV) else []
    return found + [cache_root() / WEIGHTS_FILE, Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE]


def find_weights(path: str | Path | None = None, *, download: bool = False) -> Path:
    """The weight file to use; downloads it into gankit's cache only when ``download``."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise EvalError(f"inception weights {path} not found (the FID weights are {WEIGHTS_FILE}, "
                            f"from {WEIGHTS_URL})")
        return path
    candidates = weight_candidates()
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    target = cache_root() / WEIGHTS_FILE
    if download:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(WEIGHTS_URL, str(target), progress=True)
        except Exception as exc:  # urllib raises many types; the user needs the manual route either way
            raise EvalError(f"downloading {WEIGHTS_URL} failed ({exc}); download it by hand and put it "
                            f"at {target}") from None
        return target
    raise EvalError(f"Inception FID weights {WEIGHTS_FILE} not found (looked in "
                    f"{', '.join(str(c) for c in candidates)}); download {WEIGHTS_URL} and put it at {target} "
                    f"(or set {WEIGHTS_ENV} to its path), or allow the download (--download)")


def load_fid_inception(path: str | Path | None = None, *, download: bool = False) -> FeatureExtractor:
    """The ``inception`` extractor: weights from ``path`` or the standard places (see find_weights)."""
    where = find_weights(path, download=download)
    raw = where.read_bytes()
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "not a weight file"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EvalError(f"{where} is not a PyTorch weight file ({first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvalError(f"{where} does not hold a state dict of tensors")
    net = FIDInceptionV3()
    _check_state(net, state, where)
    net.load_state_dict(state, strict=False)  # files from old PyTorch lack BatchNorm's num_batches_tracked
    net.eval()
    info = {"weights": str(where), "url": WEIGHTS_URL}
    return FeatureExtractor("inception", VERSION, f"inception-v{VERSION}-{digest(raw)}", net, fid_input, None,
                            info)


def _check_state(net: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    details = state_mismatch(net.state_dict(), state, optional="num_batches_tracked")
    if details:
        raise EvalError(f"{where} is not the FID Inception weights ({WEIGHTS_FILE}): {details}")
