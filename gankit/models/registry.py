"""Generator and discriminator registries; G and D are chosen independently, so hybrids work."""
from __future__ import annotations

import difflib
import inspect
import typing

import torch.nn as nn

from gankit.config import ConfigError, coerce_value
from gankit.registry import Registry

GENERATORS: Registry[type[nn.Module]] = Registry("generator")
DISCRIMINATORS: Registry[type[nn.Module]] = Registry("discriminator")


def _arch_kwargs(cls: type, spec: dict, key: str, positional: int) -> dict:
    """Validate a ``{name, **args}`` spec against the constructor's keyword-only, typed arguments."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1 + positional:]
    hints = typing.get_type_hints(cls.__init__)
    allowed = {p.name: p for p in params}
    kwargs = {}
    for name, value in spec.items():
        if name == "name":
            continue
        if name not in allowed:
            close = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.5)
            hint = f"; did you mean '{key}.{close[0]}'?" if close else ""
            raise ConfigError(f"config: unknown key '{key}.{name}' for {spec['name']!r}{hint} "
                              f"(valid: {', '.join(allowed)})")
        kwargs[name] = coerce_value(value, hints.get(name, typing.Any), f"{key}.{name}") \
            if name in hints else value
    return kwargs


def _lookup(registry: Registry, spec: dict, key: str) -> type[nn.Module]:
    try:
        return registry.get(spec["name"])
    except KeyError as exc:
        raise ConfigError(f"config: {key}.name: {exc.args[0]}") from None


def build_generator(spec: dict, latent_dim: int, out_shape: tuple[int, ...]) -> nn.Module:
    """Instantiate G from ``model.generator``; architecture errors become ConfigErrors."""
    cls = _lookup(GENERATORS, spec, "model.generator")
    kwargs = _arch_kwargs(cls, spec, "model.generator", positional=2)
    try:
        return cls(latent_dim, tuple(out_shape), **kwargs)
    except ValueError as exc:
        raise ConfigError(f"config: model.generator ({spec['name']}): {exc}") from None


def build_discriminator(spec: dict, in_shape: tuple[int, ...]) -> nn.Module:
    """Instantiate D from ``model.discriminator``; architecture errors become ConfigErrors."""
    cls = _lookup(DISCRIMINATORS, spec, "model.discriminator")
    kwargs = _arch_kwargs(cls, spec, "model.discriminator", positional=1)
    try:
        return cls(tuple(in_shape), **kwargs)
    except ValueError as exc:
        raise ConfigError(f"config: model.discriminator ({spec['name']}): {exc}") from None
