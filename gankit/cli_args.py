"""Argument types and shared options of the command line: one place for what several commands take."""
from __future__ import annotations

import argparse


def _bounded(kind: type, low: float, strict: bool = False):
    """An argparse type: ``kind`` (int or float) >= ``low`` (> ``low`` when ``strict``); NaN is refused."""
    def parse(text: str) -> float:
        value = kind(text)
        if not (value > low if strict else value >= low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value" messages
    return parse


_positive_float = _bounded(float, 0, strict=True)
_non_negative_float = _bounded(float, 0)
_non_negative_int = _bounded(int, 0)
_positive_int = _bounded(int, 1)
_at_least_two = _bounded(int, 2)


def _percentile(text: str) -> float:
    value = _non_negative_float(text)
    if value >= 100:
        raise argparse.ArgumentTypeError(f"must be < 100, got {text}")
    return value


MAX_SEED = 2**63 - 1  # the largest seed torch's and numpy's generators both take
MAX_SEEDS = 100_000  # seeds one option may list: more than any walk or grid can show


def _seed_list(text: str) -> list[range]:
    """``3``, ``1,5,9`` or ``0-4`` (inclusive) -> ranges of seeds, not expanded: the command checks their
    count and bounds first (``0-1000000000000`` was a MemoryError inside argparse)."""
    ranges: list[range] = []
    try:
        for part in filter(None, text.split(",")):
            lo, sep, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
            ranges.append(range(int(lo), int(hi) + 1) if sep else range(int(lo), int(lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds look like 3, 1,5,9 or 0-4; got {text!r}") from None
    if not any(ranges):
        raise argparse.ArgumentTypeError(f"no seeds in {text!r}")
    return ranges


def _seed_ranges(groups: list[list[range]], option: str) -> tuple[list[range], int]:
    """(the ranges of ``option``, how many seeds they hold), each seed checked to be one the generators take."""
    ranges = [r for group in groups for r in group if r]
    for r in ranges:
        if r.start < 0 or r.stop - 1 > MAX_SEED:
            raise ValueError(f"{option}: seeds are 0..{MAX_SEED} (2**63 - 1), got {r.start}"
                             + (f"-{r.stop - 1}" if len(r) > 1 else ""))
    return ranges, sum(r.stop - r.start for r in ranges)


def _expand(ranges: list[range], count: int, option: str) -> list[int]:
    """The seeds of ``ranges``, once their ``count`` is known to be small enough to list."""
    if count > MAX_SEEDS:
        raise ValueError(f"{option} names {count:,} seeds, more than {MAX_SEEDS:,}; name fewer")
    return [s for r in ranges for s in r]


DEVICE_HELP = "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps (default auto)"
TRUNCATION_HELP = ("truncation trick: StyleGAN: w = w_avg + PSI (w - w_avg), 0 <= PSI <= 1 (0 = the mean "
                   "image); other models: z from a normal truncated to |z_i| < PSI (0: z = 0); default: off")


def _rejection_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--drs", type=_percentile, nargs="?", const=80.0, metavar="PCT",
                   help="discriminator rejection sampling: keep each sample with a probability set by the "
                        "run's D (Azadi et al. 2019); PCT in [0, 100) sets the threshold gamma as that "
                        "percentile of a burn-in set's scores: higher rejects more (default 80)")
    p.add_argument("--drs-calibrate", type=_non_negative_int, default=0, metavar="STEPS",
                   help="with --drs: first train a copy of D for STEPS more steps on the run's data against "
                        "this generator's samples (logistic loss, G fixed), so its logit estimates the "
                        "density ratio of the G being sampled (default 0: D as saved)")


    p.add_argument("--density-filter", type=_percentile, nargs="?", const=5.0, metavar="PCT",
                   help="drop the samples where G's own density (change of variables through its Jacobian) "
                        "is below its PCT-th percentile: the bridges a continuous G draws between separate "
                        "modes; for small latents and deterministic G, e.g. the 2D mixtures (default 5)")


def _check_rejection(args: argparse.Namespace) -> None:
    if args.drs_calibrate and args.drs is None:
        raise ValueError("--drs-calibrate calibrates D for rejection sampling; add --drs")
    if args.drs is not None and args.density_filter is not None:
        raise ValueError("--drs and --density-filter are two ways to drop samples; choose one")


def _scale_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=_positive_int, metavar="N", help="nearest-neighbour upscaling of every image "
                   "(default: about 128 px per image, e.g. 4 for 28-32 px data, 1 from 128 px)")


def _scale(args: argparse.Namespace, gen: object) -> int:
    from gankit.sampling import default_scale

    return args.scale or (default_scale(gen.data_shape[-1]) if gen.is_image else 1)


def _latent_tool_arguments(p: argparse.ArgumentParser) -> None:
    _scale_argument(p)
    p.add_argument("--truncation", type=_non_negative_float, metavar="PSI", help=TRUNCATION_HELP)
    p.add_argument("--class", dest="class_index", type=_non_negative_int, metavar="K",
                   help="conditional runs: the class of every image (default 0)")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator, not its EMA")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def _json_value(obj: object) -> object:
    """numpy scalars (from metric code) as plain numbers."""
    item = getattr(obj, "item", None)
    return item() if callable(item) else str(obj)
