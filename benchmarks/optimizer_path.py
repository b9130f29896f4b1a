"""G steps/s of a game with torch's multi-tensor (foreach) optimizer update, which gankit uses, against
the per-tensor loop torch picks by default on the CPU; both give the same weights bit for bit
(tests/test_optim.py). Rounds alternate between the two (this VM's speed drifts); medians and their ratio.

    taskset -c 0 python benchmarks/optimizer_path.py --json benchmarks/results/optimizer_path.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gankit import optim  # noqa: E402
from gankit.config import load  # noqa: E402
from gankit.playground.settings import Settings  # noqa: E402
from benchmarks.engine_step import run_of  # noqa: E402
from gankit.games.phases import train_step  # noqa: E402
from gankit.train import prepare  # noqa: E402

GAMES = {"playground 2D default (3 x 64 MLPs, batch 128)": lambda: Settings.for_2d().check({}),
         "default preset (configs/mnist_dcgan.yaml)": lambda: load(ROOT / "configs" / "mnist_dcgan.yaml",
                                                                     ["train.threads=1"])}


def rate(trainer: object, seconds: float) -> float:
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        train_step(trainer, run_of(trainer, None))
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per round and path (default 3)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {}
    for name, make in GAMES.items():
        trainers = {}
        for path, flag in (("foreach", True), ("per-tensor", False)):
            optim.FOREACH = flag
            trainers[path] = prepare(make())
            rate(trainers[path], 1.0)  # warm-up
        optim.FOREACH = True
        rates: dict[str, list[float]] = {"foreach": [], "per-tensor": []}
        for _ in range(args.rounds):
            for path, trainer in trainers.items():
                rates[path].append(rate(trainer, args.seconds))
        med = {k: statistics.median(v) for k, v in rates.items()}
        results[name] = {"rounds": rates, "median": med, "ratio": med["foreach"] / med["per-tensor"]}
        print(f"{name}: foreach {med['foreach']:.1f}, per-tensor {med['per-tensor']:.1f} G steps/s, "
              f"ratio {results[name]['ratio']:.2f}", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"threads": 1, "seconds_per_round": args.seconds,
                                               "games": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
