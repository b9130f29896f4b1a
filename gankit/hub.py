"""Generator folders as Hugging Face Hub models: ``GankitGenerator.from_pretrained(folder or repo id)``.

The same folder (gankit.generator_folder: ``config.json``, ``model.safetensors``, a model card) loads three
ways, all through the same checks: ``gankit.load_generator(folder)`` (gankit's sampling tools, no
huggingface_hub needed), ``GankitGenerator.from_pretrained`` (huggingface_hub's API) and ``gankit sample
folder``. The package's model zoo (``zoo:NAME``) is made of such folders.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from gankit.checkpoint import CheckpointError
from gankit.generator_folder import CONFIG_NAME, FORMAT, VERSION, WEIGHTS_NAME, folder_meta, is_generator_folder
# the zoo's names, re-exported: model cards and the zoo's READMEs show gankit.hub.zoo_path
from gankit.generator_folder import zoo_entry, zoo_names, zoo_path  # noqa: F401
from gankit.sampling import load_generator

try:  # an optional extra: the folder format itself needs only safetensors
    from huggingface_hub import PyTorchModelHubMixin

    _BASES: tuple[type, ...] = (nn.Module, PyTorchModelHubMixin)
    _HUB: dict[str, Any] = {"library_name": "gankit", "tags": ["gan", "gankit", "image-generation"]}
except ImportError:  # pragma: no cover - the tests install the extra
    _BASES, _HUB = (nn.Module,), {}


class GankitGenerator(*_BASES, **_HUB):  # type: ignore[misc]
    """A gankit generator as a Hub model: ``GankitGenerator.from_pretrained(folder_or_repo)`` rebuilds it
    from ``config.json`` (its arguments) and ``model.safetensors`` (its weights, under ``net.``).
    ``forward(z, y=None)`` returns images in the range ``run_config["data"]["normalize"]`` names."""

    def __init__(self, run_config: dict, data_shape: list, num_classes: int | None = None,
                 prior: list | None = None, step: int = 0, is_ema: bool = True,
                 format: str = FORMAT, version: int = VERSION) -> None:  # noqa: A002 (the JSON key)
        super().__init__()
        if format != FORMAT or not isinstance(version, int) or version > VERSION:
            raise CheckpointError(f"config.json describes {format!r} version {version!r}; this gankit reads "
                                  f"{FORMAT} up to version {VERSION}")
        from gankit.config import from_dict
        from gankit.models import build_generator

        self.run_config, self.data_shape = run_config, tuple(data_shape)
        self.num_classes, self.prior, self.step, self.is_ema = num_classes, prior, step, is_ema
        cfg = from_dict(run_config)
        self.net = build_generator(cfg.model.generator, cfg.model.latent_dim, self.data_shape, num_classes)
        self.net.eval()

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z, y)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, force_download: bool = False,
                        token: str | bool | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = False, revision: str | None = None,
                        map_location: str | torch.device = "cpu") -> GankitGenerator:
        """A generator folder or Hub repository, loaded by gankit's checked loader (huggingface_hub's own would
        load non-strictly, leaving missing tensors random, casting dtypes, and unpickle pytorch_model.bin):
        every config value, tensor name, shape and dtype is checked and non-finite weights are refused."""
        folder = Path(pretrained_model_name_or_path)
        if not folder.is_dir():
            import huggingface_hub

            folder = Path(huggingface_hub.snapshot_download(
                str(pretrained_model_name_or_path), allow_patterns=[CONFIG_NAME, WEIGHTS_NAME], revision=revision,
                cache_dir=cache_dir, force_download=force_download, token=token, local_files_only=local_files_only))
        if not is_generator_folder(folder):
            raise CheckpointError(f"{pretrained_model_name_or_path}: not a gankit generator folder (it needs "
                                  f"{CONFIG_NAME} and {WEIGHTS_NAME}; gankit never unpickles pytorch_model.bin)")
        gen = load_generator(folder, device=map_location)
        with torch.device("meta"):  # the checked generator replaces the one the constructor builds
            model = cls(**folder_meta(gen))
        model.net = gen.net
        return model.eval()
