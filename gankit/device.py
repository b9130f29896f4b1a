"""Device names -> torch devices; ``auto`` picks the best available. Errors name the option the user set."""
from __future__ import annotations

import torch

from gankit.config import ConfigError

DEVICES = "auto, cpu, cuda, cuda:N or mps"


def select_device(name: str | torch.device, option: str = "train.device") -> torch.device:
    """``auto`` = cuda, then mps, then cpu. ``option`` is how the user spelt the setting (``train.device``,
    ``--device``, ``device=``), so the error points at what they typed."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    prefix = f"config: {option}" if "." in option and not option.startswith("-") else option
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):  # meta, xla, ...: tensors without data
        raise ConfigError(f"{prefix}: unknown device {name!r} ({DEVICES})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{prefix} is {name} but no CUDA device is available (use auto or cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{prefix} is {name} but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                     and torch.backends.mps.is_available()):
        raise ConfigError(f"{prefix} is mps but no MPS device is available (use auto or cpu)")
    return device
