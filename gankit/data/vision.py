"""Standard datasets through torchvision: downloaded when allowed, otherwise read from ``data.root``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gankit.config import DataConfig
from gankit.data.bundled import images_source
from gankit.data.registry import DATASETS, DatasetFacts, register_facts
from gankit.data.source import DataError, TensorSource

# (torchvision class name, folder under root, files torchvision needs there: it checks that the
# test split exists too, even when only the training split is read)
_MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte"]
_FILES = {
    "mnist": ("MNIST", "MNIST/raw", _MNIST_FILES),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw", _MNIST_FILES),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)]
                + ["test_batch", "batches.meta"]),
}
NAMES = frozenset(_FILES)
for _name in NAMES:  # MNIST's digits are measured by the shipped digit classifier, the others by Inception
    register_facts(_name, DatasetFacts(("train", "test"), extractor="mnist-cnn" if _name == "mnist" else "inception"))


def load_split(name: str, cfg: DataConfig, train: bool = True) -> TensorSource:
    """The training (or, with ``train=False``, the test) split of torchvision dataset ``name``."""
    import torchvision.datasets as tvd

    cls_name, folder, files = _FILES[name]
    root = Path(cfg.root).expanduser()
    try:
        ds = getattr(tvd, cls_name)(str(root), train=train, download=cfg.download)
    except (RuntimeError, OSError, ValueError, AssertionError) as exc:  # a malformed idx file asserts
        where = root / folder
        how = ("set data.download: true to fetch them" if not cfg.download
               else f"the download failed ({exc})")
        raise DataError(f"{name}: dataset files not found or unreadable in {where} "
                        f"(needs {', '.join(files)}; .gz archives are unpacked only with data.download: true); "
                        f"{how}") from None
    images = np.asarray(ds.data)
    labels = np.asarray(ds.targets)
    return images_source(images, labels, cfg)


@DATASETS.register("mnist")
def mnist(cfg: DataConfig) -> TensorSource:
    return load_split("mnist", cfg)


@DATASETS.register("fashion-mnist")
def fashion_mnist(cfg: DataConfig) -> TensorSource:
    return load_split("fashion-mnist", cfg)


@DATASETS.register("cifar10")
def cifar10(cfg: DataConfig) -> TensorSource:
    return load_split("cifar10", cfg)
