"""``gankit bench``: the quality benchmarks, each a preset trained for a fixed wall-clock budget and
measured with the protocol of its literature, printed next to the published numbers."""
from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gankit.checkpoint import atomic_write_bytes
from gankit.config import ConfigError, load
from gankit.runlock import RunDirBusy, RunLock

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Anchor:
    method: str
    values: dict[str, float]
    source: str


@dataclass(frozen=True)
class Benchmark:
    name: str
    config: str  # relative to the configs directory
    seconds: float
    metrics: tuple[str, ...]
    num: int
    columns: tuple[str, ...]  # result keys shown in the table
    anchors: tuple[Anchor, ...] = field(default_factory=tuple)


_PACGAN = "Lin et al. 2018 (PacGAN), Table 3"
_MODES2D = ("modes", "high_quality", "reverse_kl", "spread")
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("ring", "ring.yaml", 60, ("modes2d",), 2500, _MODES2D, (
        Anchor("PacGAN4", {"modes": 7.8, "high_quality": 0.959}, _PACGAN),
        Anchor("GDPP", {"modes": 8.0, "high_quality": 0.717}, "Elfeki et al. 2019"),
        Anchor("VEEGAN", {"modes": 8.0, "high_quality": 0.529}, "Srivastava et al. 2017"))),
    Benchmark("grid", "grid.yaml", 60, ("modes2d",), 2500, _MODES2D, (
        Anchor("PacGAN4", {"modes": 24.8, "high_quality": 0.936}, _PACGAN),
        Anchor("GDPP", {"modes": 24.8, "high_quality": 0.685}, "Elfeki et al. 2019"),
        Anchor("VEEGAN", {"modes": 24.6, "high_quality": 0.40}, "Srivastava et al. 2017"))),
    Benchmark("stacked-mnist", "stacked_mnist.yaml", 1800, ("stacked",), 26_000,
              ("modes", "kl", "digit_kl", "dependence"), (
        Anchor("R3GAN", {"modes": 1000, "kl": 0.029}, "Huang et al. 2024 (7 h on 8 L40 GPUs)"),
        Anchor("PacGAN4", {"modes": 1000, "kl": 0.07}, _PACGAN),
        Anchor("PresGAN", {"modes": 1000, "kl": 0.12}, "Dieng et al. 2019"),
        Anchor("DCGAN", {"modes": 99, "kl": 3.4}, _PACGAN))),
    Benchmark("mnist10k", "mnist_dcgan.yaml", 300, ("fid", "classes"), 10_000,
              ("fid", "classes_present", "min_share", "max_share")),
)}


def default_configs_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "configs"


@dataclass(frozen=True)
class DRSOptions:
    """Also measure the samples that discriminator rejection sampling keeps (gankit.rejection)."""

    percentile: float = 80.0
    calibrate: int = 0  # D steps against the sampled G first


def run_benchmark(bench: Benchmark, *, configs_dir: Path, out_dir: Path, seed: int, seconds: float,
                  overrides: list[str] | None = None, drs: DRSOptions | None = None,
                  density: float | None = None) -> dict[str, Any]:
    """Train ``bench``'s preset for ``seconds`` with ``seed`` in a fresh run directory, then measure it
    (and, with ``drs``, the samples rejection sampling keeps: the row's ``drs`` entry; with ``density``,
    a percentile, the samples the density filter keeps: ``density``)."""
    from gankit.metrics.api import calculate_metrics
    from gankit.train import train

    path = configs_dir / bench.config
    if not path.is_file():
        raise ConfigError(f"bench: preset {path} not found (pass --configs DIR pointing at gankit's configs/)")
    cfg = load(path, [f"train.seed={seed}", f"train.max_seconds={seconds}",
                      "log.progress=false", "log.plot=false", "log.sample_every=0", *(overrides or [])])
    run_dir = out_dir / f"{bench.name}-seed{seed}"
    remove_previous_run(run_dir)
    t0 = time.perf_counter()
    result = train(cfg, run_dir)
    wall = time.perf_counter() - t0
    metrics = calculate_metrics(str(run_dir), cfg.data.name, metrics=bench.metrics, num=bench.num, seed=seed)
    row = {"benchmark": bench.name, "config": str(path), "seed": seed, "budget_s": seconds,
           "wall_s": round(wall, 1), "steps": result.step, **_values(metrics), "info": metrics.get("info", {})}
    if drs is not None:
        row["drs"] = _drs_metrics(bench, run_dir, cfg.data.name, seed, drs)
    if density is not None:
        row["density"] = _density_metrics(bench, run_dir, cfg.data.name, seed, density)
    return row


# What a training run writes into its directory (gankit.train, gankit.logs, gankit.checkpoint), and the
# temporaries of killed atomic writes: the only files a new bench run may delete
_RUN_FOLDERS = ("checkpoints", "samples", "tensorboard")
_RUN_OUTPUT = re.compile(r"config\.yaml|metrics\.jsonl|events\.jsonl|loss_curves\.png"
                         r"|checkpoints/(step_\d{8,}\.safetensors|best\.safetensors|latest\.json)"
                         r"|samples/step_\d{6,}\.png|tensorboard/events\.out\.tfevents\.[^/]+"
                         r"|([a-z]+/)?\.[^/]+\.[a-z0-9_]{8}\.tmp")


def remove_previous_run(run_dir: Path) -> None:
    """Delete an earlier run in ``run_dir`` so the benchmark starts fresh, holding its run lock meanwhile.

    Refused, with nothing deleted, while another process holds the directory or when it holds anything
    a gankit run does not write (the user's files, a symlink)."""
    from gankit.train import TrainError

    if not run_dir.exists() and not run_dir.is_symlink():
        return
    if run_dir.is_symlink() or not run_dir.is_dir():
        raise TrainError(f"bench: {run_dir} is not the folder of an earlier benchmark run; move it away or "
                         "choose another --out-dir")
    try:
        with RunLock(run_dir):
            foreign = _foreign_entry(run_dir)
            if foreign is not None:
                raise TrainError(f"bench: {foreign} was not written by a gankit run, and bench replaces {run_dir} "
                                 "with a fresh run; move it away or choose another --out-dir")
            shutil.rmtree(run_dir)
    except RunDirBusy:
        raise TrainError(f"bench: the run directory {run_dir} is in use by another gankit process; wait until it "
                         "ends, or choose another --out-dir") from None


def _foreign_entry(run_dir: Path) -> Path | None:
    """The first entry of ``run_dir`` that a training run does not write (None: it holds a run's files only)."""
    for top in sorted(run_dir.iterdir()):
        if top.is_dir() and not top.is_symlink() and top.name in _RUN_FOLDERS:
            for path in sorted(top.iterdir()):
                if path.is_symlink() or not path.is_file() or not _RUN_OUTPUT.fullmatch(f"{top.name}/{path.name}"):
                    return path
        elif top.is_symlink() or not top.is_file() or not _RUN_OUTPUT.fullmatch(top.name):
            return top
    return None


def _kept_metrics(bench: Benchmark, gen: Any, ref: str, seed: int,
                  draw: Callable[[torch.Tensor | None], tuple[torch.Tensor, Any]]) -> dict[str, Any]:
    """The benchmark's metrics of the samples a rejection sampler ``draw`` keeps, and its acceptance."""
    from gankit.metrics.api import calculate_metrics

    labels = gen.labels(bench.num)
    x, stats = draw(labels)
    x = gen.to_uint8(x) if gen.is_image else x
    metrics = calculate_metrics(x, ref, metrics=bench.metrics, num=bench.num, seed=seed, labels=labels)
    return {**_values(metrics), "acceptance": stats.acceptance}


def _drs_metrics(bench: Benchmark, run_dir: Path, ref: str, seed: int, drs: DRSOptions) -> dict[str, Any]:
    from gankit.rejection import calibrate, load_discriminator, rejection_sample
    from gankit.sampling import load_generator

    gen = load_generator(run_dir)
    d = load_discriminator(run_dir, gen)
    if drs.calibrate:
        calibrate(d, gen, drs.calibrate, seed=seed)
    values = _kept_metrics(bench, gen, ref, seed, lambda labels: rejection_sample(
        gen, d, bench.num, seed, labels=labels, percentile=drs.percentile))
    return {**values, "percentile": drs.percentile, "calibrate": drs.calibrate}


def _density_metrics(bench: Benchmark, run_dir: Path, ref: str, seed: int, percentile: float) -> dict[str, Any]:
    from gankit.rejection import density_sample
    from gankit.sampling import load_generator

    gen = load_generator(run_dir)
    values = _kept_metrics(bench, gen, ref, seed, lambda labels: density_sample(
        gen, bench.num, seed, labels=labels, percentile=percentile))
    return {**values, "percentile": percentile}


def _values(metrics: dict[str, Any]) -> dict[str, Any]:
    """calculate_metrics' values, one level, without its ``info``."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if k == "info":
            continue
        if isinstance(v, dict):
            out.update(v)
        else:
            out[k] = v
    return out


def summarise(rows: list[dict[str, Any]], bench: Benchmark) -> dict[str, Any]:
    """Mean over seeds of each shown column."""
    def mean(rs: list[dict[str, Any]]) -> dict[str, float]:
        return {c: sum(float(r[c]) for r in rs) / len(rs) for c in bench.columns if all(c in r for r in rs)}

    budget = rows[0]["budget_s"] if rows else bench.seconds
    summary = {"benchmark": bench.name, "seeds": len(rows), "budget_s": budget, **mean(rows)}
    for kept in ("drs", "density"):
        if rows and all(kept in r for r in rows):
            summary[kept] = mean([r[kept] for r in rows])
    return summary


def format_table(summaries: list[dict[str, Any]]) -> str:
    lines = []
    for s in summaries:
        bench = BENCHMARKS[s["benchmark"]]
        cols = bench.columns
        lines.append(f"{bench.name}  ({s.get('budget_s', bench.seconds):g} s budget per run, {bench.num} samples, "
                     f"mean of {s['seeds']} seed(s))")
        lines.append("  " + f"{'method':16}" + "".join(f"{c:>16}" for c in cols))
        lines.append("  " + f"{'gankit':16}" + "".join(f"{_fmt(s.get(c)):>16}" for c in cols))
        for kept, label in (("drs", "gankit + DRS"), ("density", "gankit + density")):
            if kept in s:
                lines.append("  " + f"{label:16}" + "".join(f"{_fmt(s[kept].get(c)):>16}" for c in cols))
        for a in bench.anchors:
            lines.append("  " + f"{a.method:16}" + "".join(f"{_fmt(a.values.get(c)):>16}" for c in cols))
        lines.append("")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def bench(names: list[str], *, seeds: int = 1, time_scale: float = 1.0, configs_dir: Path | None = None,
          out_dir: Path = Path("runs/bench"), json_out: Path | None = None,
          overrides: list[str] | None = None, drs: DRSOptions | None = None,
          density: float | None = None) -> list[dict[str, Any]]:
    """Run the named benchmarks; print and return one summary per benchmark (JSON has every run)."""
    for name in names:
        if name not in BENCHMARKS:
            from gankit.registry import unknown_name_message

            raise ConfigError(f"bench: {unknown_name_message('benchmark', name, list(BENCHMARKS))}")
    configs_dir = configs_dir or default_configs_dir()
    runs, summaries = [], []
    for name in names:
        b = BENCHMARKS[name]
        rows = [run_benchmark(b, configs_dir=configs_dir, out_dir=out_dir, seed=s, seconds=b.seconds * time_scale,
                              overrides=overrides, drs=drs, density=density) for s in range(seeds)]
        runs += rows
        summaries.append(summarise(rows, b))
    print(format_table(summaries))
    if json_out is not None:
        report = {"summaries": summaries, "runs": runs,
                  "anchors": {n: [a.__dict__ for a in BENCHMARKS[n].anchors] for n in names}}
        atomic_write_bytes(Path(json_out), json.dumps(report, indent=2, default=str).encode())
    return summaries
