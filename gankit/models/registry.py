"""Generator and discriminator registries; G and D are chosen independently, so hybrids work."""
from __future__ import annotations

import contextlib
import difflib
import inspect
import typing
import warnings
from collections.abc import Iterator

import torch.nn as nn

from gankit.config import ConfigError, ModelConfig, coerce_value
from gankit.models.arguments import meaning
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


def build_generator(spec: dict, latent_dim: int, out_shape: tuple[int, ...],
                    num_classes: int | None = None) -> nn.Module:
    """Instantiate G from ``model.generator`` (class-conditional when ``num_classes`` is given);
    architecture errors become ConfigErrors."""
    cls = _lookup(GENERATORS, spec, "model.generator")
    # (latent_dim, out_shape, num_classes) come from the data, never from the spec
    kwargs = _arch_kwargs(cls, spec, "model.generator", positional=3)
    try:
        with _zero_size_quiet():
            net = cls(latent_dim, tuple(out_shape), num_classes, **kwargs)
    except (ValueError, RuntimeError) as exc:  # RuntimeError: torch refusing a layer size (width: -3)
        raise ConfigError(f"config: model.generator ({spec['name']}): {exc}") from None
    return _non_empty(net, spec, "model.generator")


def build_discriminator(spec: dict, in_shape: tuple[int, ...], num_classes: int | None = None) -> nn.Module:
    """Instantiate D from ``model.discriminator`` (class-conditional when ``num_classes`` is given);
    architecture errors become ConfigErrors."""
    cls = _lookup(DISCRIMINATORS, spec, "model.discriminator")
    kwargs = _arch_kwargs(cls, spec, "model.discriminator", positional=2)
    try:
        with _zero_size_quiet():
            net = cls(tuple(in_shape), num_classes, **kwargs)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"config: model.discriminator ({spec['name']}): {exc}") from None
    return _non_empty(net, spec, "model.discriminator")


@contextlib.contextmanager
def _zero_size_quiet() -> Iterator[None]:
    """torch warns when initialising a zero-size layer; :func:`_non_empty` reports it as one clear error."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        yield


def _non_empty(net: nn.Module, spec: dict, key: str) -> nn.Module:
    """A layer without weights (a width of 0) builds, then fails in the first forward pass: refuse it here."""
    empty = next((name for name, p in net.named_parameters() if p.numel() == 0), None)
    if empty is not None:
        raise ConfigError(f"config: {key} ({spec['name']}): layer {empty} has no weights (a width or size of 0?)")
    return net


def _roles(game: str = "gan") -> list[tuple[str, Registry, int]]:
    """(role, registry, positional arguments) of a game's networks: noise -> image models take the data's
    sizes, bigan's encoder and joint D (gankit.models.bigan) the image shape and latent size, image-to-image
    ones (gankit.models.translation) channels."""
    if game == "gan":
        return [("generator", GENERATORS, 3), ("discriminator", DISCRIMINATORS, 2)]
    if game == "bigan":
        from gankit.models.bigan import ENCODERS, JOINT_DISCRIMINATORS

        return [("generator", GENERATORS, 3), ("discriminator", JOINT_DISCRIMINATORS, 2), ("encoder", ENCODERS, 2)]
    from gankit.models.translation import PATCH_DISCRIMINATORS, TRANSLATORS

    return [("generator", TRANSLATORS, 2), ("discriminator", PATCH_DISCRIMINATORS, 1)]


def check_model_specs(cfg: ModelConfig, game: str = "gan") -> None:
    """Refuse unknown model names and architecture arguments without building anything (``gankit config``)."""
    for key, registry, positional in _roles(game):
        spec = getattr(cfg, key)
        _arch_kwargs(_lookup(registry, spec, f"model.{key}"), spec, f"model.{key}", positional)


def describe_model(name: str) -> list[tuple[str, list[tuple[str, object, str, str]]]]:
    """For ``gankit config --model NAME``: per role (generator, discriminator, encoder) the (argument, default,
    type, meaning) rows of the constructor's architecture arguments, for the noise -> image, bigan and
    image-to-image models."""
    bigan = [(f"{role} (bigan)", registry, positional) for role, registry, positional in _roles("bigan")[1:]]
    every = _roles("gan") + bigan + _roles("translation")
    roles = [(role, registry, positional) for role, registry, positional in every if name in registry.names()]
    if not roles:
        known = sorted({n for _, registry, _ in every for n in registry.names()})
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"config: no model named {name!r}{hint} (models: {', '.join(known)})")
    out = []
    for role, registry, positional in roles:
        cls = registry.get(name)
        hints = typing.get_type_hints(cls.__init__)
        params = list(inspect.signature(cls.__init__).parameters.values())[1 + positional:]
        rows = [(p.name, p.default, _type_name(hints.get(p.name)), meaning(name, p.name)) for p in params]
        out.append((role, rows))
    return out


def _type_name(hint: object) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "") if hint is not None else ""
