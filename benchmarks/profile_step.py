"""Where a training step's CPU time goes: torch.profiler's table of the top operators, per perf setting.

    python benchmarks/profile_step.py --presets mnist_dcgan mnist_stylegan --variants fp32 default \\
        --json benchmarks/results/profile_step_cpu.json

For each preset and variant (``benchmarks/roofline.py``'s: fp32, bf16, cl, compile joined by +, or
default = as shipped), ``gankit.train.prepare`` builds the Trainer ``gankit train`` runs; after a warm-up,
``--steps`` calls of ``gankit.games.phases.train_step`` run under ``torch.profiler`` (CPU activities). The table lists
the operators with the most self CPU time, their share of the step, and the share of the step spent
outside any operator (Python, the optimiser's bookkeeping, the loop).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from roofline import EXTRA, PRESETS, variant_overrides  # noqa: E402
from throughput import load_preset  # noqa: E402

from engine_step import run_of  # noqa: E402
from gankit.games.phases import train_step  # noqa: E402
from gankit.train import prepare  # noqa: E402


def profile_steps(trainer, steps: int, rows: int) -> dict:
    total = trainer.cfg.train.steps
    for _ in range(3):
        train_step(trainer, run_of(trainer, total))
    began = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            train_step(trainer, run_of(trainer, total))
    wall = (time.perf_counter() - began) / steps
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    ops = sum(e.self_cpu_time_total for e in events) / steps / 1e6
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    return {"ms_per_step": wall * 1e3, "operators_ms_per_step": ops * 1e3,
            "top": [{"op": e.key, "self_ms_per_step": e.self_cpu_time_total / steps / 1e3,
                     "share": e.self_cpu_time_total / steps / 1e6 / wall, "calls_per_step": e.count / steps}
                    for e in top]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["mnist_dcgan", "mnist_stylegan"], choices=list(PRESETS))
    parser.add_argument("--variants", nargs="+", default=["fp32", "default"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for name in args.presets:
        for variant in args.variants:
            cfg, _ = load_preset(PRESETS[name], "cpu", args.threads,
                                 extra=[*EXTRA.get(name, []), *variant_overrides(variant)])
            trainer = prepare(cfg)
            torch.set_num_threads(args.threads)
            row = {"preset": name, "variant": variant, "perf": trainer.perf.describe(),
                   **profile_steps(trainer, args.steps, args.rows)}
            results.append(row)
            outside = 1 - row["operators_ms_per_step"] / row["ms_per_step"]
            print(f"\n{name} / {variant} ({row['perf']['amp']}, channels-last {row['perf']['channels_last']}): "
                  f"{row['ms_per_step']:.1f} ms per step, {outside:.0%} outside operators (profiled, {args.threads} "
                  "threads)")
            print(f"  {'operator':36} {'ms/step':>8} {'share':>6} {'calls':>6}")
            for op in row["top"]:
                print(f"  {op['op'][:36]:36} {op['self_ms_per_step']:8.2f} {op['share']:6.1%} "
                      f"{op['calls_per_step']:6.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "steps": args.steps,
                                               "torch": torch.__version__, "rows": results}, indent=2))


if __name__ == "__main__":
    main()
