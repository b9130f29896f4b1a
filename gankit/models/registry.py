"""The model registries and the one builder every registry's models go through. Noise -> image G and D
are chosen independently, so hybrids work; image-to-image games have their own registries (their
constructors take channels, not latent sizes; the networks are in gankit.models.translation)."""
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
TRANSLATORS: Registry[type[nn.Module]] = Registry("image-to-image generator")
PATCH_DISCRIMINATORS: Registry[type[nn.Module]] = Registry("patch discriminator")

Role = tuple[str, Registry, int]  # (model.<key>, the registry its name is looked up in, positional sizes)
GAME_ROLES: dict[str, tuple[Role, ...]] = {}
"""Per game, the model specs its config holds: each game declares them beside its factory."""


def declare_roles(game: str, *roles: Role) -> None:
    """Say which registry each of ``game``'s ``model.<key>`` specs names a model of (``gankit config`` checks
    specs without building anything, ``gankit config --model`` lists arguments)."""
    GAME_ROLES[game] = roles


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


def build_model(registry: Registry, spec: dict, key: str, *sizes: object) -> nn.Module:
    """Instantiate the model ``spec`` names in ``registry``: ``sizes`` (what the data fixes: latent size, shapes,
    classes, channels) positionally, the spec's validated architecture arguments by keyword; unknown names,
    bad arguments and architecture errors become ConfigErrors that name ``key``."""
    cls = _lookup(registry, spec, key)
    kwargs = _arch_kwargs(cls, spec, key, positional=len(sizes))
    try:
        with _zero_size_quiet():
            net = cls(*sizes, **kwargs)
    except (ValueError, RuntimeError) as exc:  # RuntimeError: torch refusing a layer size (width: -3)
        raise ConfigError(f"config: {key} ({spec['name']}): {exc}") from None
    return _non_empty(net, spec, key)


def build_generator(spec: dict, latent_dim: int, out_shape: tuple[int, ...],
                    num_classes: int | None = None) -> nn.Module:
    """G from ``model.generator`` (class-conditional when ``num_classes`` is given)."""
    return build_model(GENERATORS, spec, "model.generator", latent_dim, tuple(out_shape), num_classes)


def build_discriminator(spec: dict, in_shape: tuple[int, ...], num_classes: int | None = None) -> nn.Module:
    """D from ``model.discriminator`` (class-conditional when ``num_classes`` is given)."""
    return build_model(DISCRIMINATORS, spec, "model.discriminator", tuple(in_shape), num_classes)


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


def _roles(game: str | None = None) -> list[Role]:
    """The roles ``game`` declared (every game's, without duplicates, when None)."""
    from gankit.games.registry import GAMES

    GAMES.names()  # gankit's games (and plug-ins') declare their roles when they are imported
    if game is not None:
        return list(GAME_ROLES.get(game, ()))
    every = [role for roles in GAME_ROLES.values() for role in roles]
    return [role for i, role in enumerate(every) if role not in every[:i]]


def check_model_specs(cfg: ModelConfig, game: str = "gan") -> None:
    """Refuse unknown model names and architecture arguments without building anything (``gankit config``)."""
    for key, registry, positional in _roles(game):
        spec = getattr(cfg, key)
        _arch_kwargs(_lookup(registry, spec, f"model.{key}"), spec, f"model.{key}", positional)


def describe_model(name: str) -> list[tuple[str, list[tuple[str, object, str, str]]]]:
    """For ``gankit config --model NAME``: per role (generator, discriminator, encoder) the (argument, default,
    type, meaning) rows of the constructor's architecture arguments, in every game's registries; a role two
    games fill with a model of this name from different registries is named with the later game."""
    every = _roles()
    roles: list[Role] = []
    for game in sorted(GAME_ROLES, key=lambda g: (g != "gan", g)):  # the noise -> image game's roles first
        for role, registry, positional in GAME_ROLES[game]:
            if name not in registry.names() or any(registry is r for _, r, _ in roles):
                continue
            clash = any(r.split(" (")[0] == role for r, _, _ in roles)
            roles.append((f"{role} ({game})" if clash else role, registry, positional))
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
