"""What a lesson measures of each run, and how a figure is shown: from the run directory alone (its
metrics.jsonl, events.jsonl and checkpoint), through gankit's public metrics API."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gankit.logs import read_metrics


@dataclass(frozen=True)
class Measure:
    """``better``: lower, higher, or None for a figure that describes a run without ranking it.
    ``label`` may name ``{early}`` (the lesson's early_steps) and ``{samples}``."""

    label: str
    better: str | None
    integer: bool = False


MEASURES: dict[str, Measure] = {
    "fid": Measure("FID ({samples} samples, mnist-cnn features)", "lower"),
    "classes_present": Measure("digit classes drawn (of 10, at least 1 % each)", "higher", integer=True),
    "class_kl": Measure("class KL to even shares", "lower"),
    "modes": Measure("ring modes kept (of 8)", "higher", integer=True),
    "high_quality": Measure("high-quality share (within 3 std of a mode)", "higher"),
    "reverse_kl": Measure("reverse KL of the modes' shares", "lower"),
    "steps": Measure("G steps done in the budget", None, integer=True),
    "loss_d_final": Measure("D's loss at the end", None),
    "loss_g_final": Measure("G's loss at the end", None),
    "grad_norm_g_early": Measure("G's gradient norm, mean of the first {early} steps", None),
    "grad_norm_d_early": Measure("D's gradient norm, mean of the first {early} steps", None),
    "grad_norm_g": Measure("G's gradient norm, mean of the run", None),
    "grad_norm_d": Measure("D's gradient norm, mean of the run", None),
    "d_fake_early": Measure("D(G(z)), mean of the first {early} steps", None),
    "rollbacks": Measure("divergence rollbacks", "lower", integer=True),
}
# metrics.jsonl keys of the measures read from the training log: (key, window)
LOGGED = {"loss_d_final": ("loss_d", "last"), "loss_g_final": ("loss_g", "last"),
          "grad_norm_g_early": ("grad_norm_g", "early"), "grad_norm_d_early": ("grad_norm_d", "early"),
          "grad_norm_g": ("grad_norm_g", "all"), "grad_norm_d": ("grad_norm_d", "all"),
          "d_fake_early": ("d_fake", "early")}
QUALITY = {"digits": ("fid", "classes_present", "class_kl"), "ring": ("modes", "high_quality", "reverse_kl")}


def label(name: str, early: int, samples: int) -> str:
    return MEASURES[name].label.format(early=early, samples=f"{samples:,}")


def from_log(run_dir: Path, early: int) -> dict[str, Any]:
    """steps, rollbacks and the LOGGED measures of one run (None where the log lacks the key)."""
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss_d" in r]
    out: dict[str, Any] = {"steps": int(rows[-1]["step"]) if rows else 0, "rollbacks": _rollbacks(run_dir)}
    for name, (key, window) in LOGGED.items():
        chosen = [r for r in rows if key in r]
        if window == "early":
            chosen = [r for r in chosen if r["step"] <= early]
        elif window == "last":
            chosen = chosen[-1:]
        values = [float(r[key]) for r in chosen if math.isfinite(float(r[key]))]
        out[name] = statistics.fmean(values) if values else None
    return out


def _rollbacks(run_dir: Path) -> int:
    import json

    path = run_dir / "events.jsonl"
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("alarm") == "diverged")


def quality(run_dir: Path, data: str, samples: int) -> dict[str, Any]:
    """FID and class shares against the bundled digits, or the PacGAN modes of the ring."""
    from gankit.metrics.api import calculate_metrics

    if data == "ring":
        result = calculate_metrics(run_dir, "ring", metrics=["modes2d"], num=samples, seed=0, device="cpu")
    else:
        result = calculate_metrics(run_dir, "mnist10k", metrics=["fid", "classes"], num=samples, seed=0,
                                   device="cpu")
    return {k: result[k] for k in QUALITY[data]}


def aggregate(values: list[Any]) -> dict[str, Any]:
    """mean, std over seeds (sample std; None for one value), n and the values; None values (a seed that
    diverged) are left out of the mean and counted in ``missing``."""
    known = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return {"mean": statistics.fmean(known) if known else None,
            "std": statistics.stdev(known) if len(known) >= 2 else None,
            "n": len(known), "missing": len(values) - len(known), "values": values}


def decimals(value: float) -> int:
    """Decimals that show ``value`` to 4 significant digits, at least 1 and at most 6."""
    if value == 0 or not math.isfinite(value):
        return 1
    return min(6, max(1, 3 - math.floor(math.log10(abs(value)))))


def fmt(value: float | None, integer: bool = False) -> str:
    """A figure as the report shows it: an integer measure (counts) as an integer, or its mean over seeds
    with one decimal; others to 4 significant digits (at least one decimal)."""
    if value is None:
        return "n/a"
    if integer:
        return f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"
    return f"{value:,.{decimals(value)}f}"
