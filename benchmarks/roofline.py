"""How close each preset's training step comes to this machine's matrix-multiply peak.

    python benchmarks/roofline.py --json benchmarks/results/roofline_cpu.json
    python benchmarks/roofline.py --presets mnist_dcgan --variants fp32 bf16 bf16+cl   # settings side by side
    python benchmarks/roofline.py --device cuda --threads 16 --json gpu.json

For each preset, ``gankit.train.prepare(cfg)`` builds the Trainer that ``gankit train`` runs. One
``gankit.games.phases.train_step`` under ``torch.utils.flop_counter.FlopCounterMode`` counts the step's FLOPs
(matrix multiplies and convolutions, forward and backward, D and G; elementwise work is not counted,
as in every roofline of this kind), on a step without the lazy R1/R2 penalty. Then timed rounds of steps give steps/s (median of ``--rounds``),
and achieved GFLOP/s = FLOPs per step x steps/s. The peaks are measured in the same process: a
2048 x 2048 matrix multiply in float32 and in bfloat16 on the same threads (median of 5 x 10), so the
fraction of peak is a ratio of two measurements taken minutes apart on the same cores.

A variant changes perf settings: ``fp32`` (gankit's CPU default before issue 26), ``bf16`` (autocast to
bfloat16), ``cl`` (channels-last), ``compile`` (torch.compile), joined with ``+``; ``default`` is the
preset as shipped (``perf.amp: auto``). The translation presets count their own step (pix2pix, CycleGAN).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from throughput import load_preset, sync  # noqa: E402  (random CIFAR-shaped data when CIFAR-10 is absent)

from engine_step import run_of  # noqa: E402
from gankit.games.phases import train_step  # noqa: E402
from gankit.train import prepare  # noqa: E402

PRESETS = {
    "mnist_dcgan": "configs/mnist_dcgan.yaml",
    "mnist_dcgan_unlabelled": "configs/mnist_dcgan.yaml",
    "mnist_stylegan": "configs/mnist_stylegan.yaml",
    "mnist_biggan": "configs/mnist_biggan.yaml",
    "seed000": "configs/seeds/seed000_mlp_mnist.yaml",
    "seed001": "configs/seeds/seed001_vanilla_cifar10.yaml",
    "seed002": "configs/seeds/seed002_hybrid_mnist.yaml",
    "seed003": "configs/seeds/seed003_dcgan64.yaml",
    "seed004": "configs/seeds/seed004_dcgan_mnist.yaml",
    "mnist_superres4": "configs/mnist_superres4.yaml",
    "mnist_cyclegan": "configs/mnist_cyclegan.yaml",
}
EXTRA = {"mnist_dcgan_unlabelled": ["model.conditional=false"]}
VARIANT_PARTS = {"fp32": ["perf.amp=fp32"], "bf16": ["perf.amp=bf16"], "cl": ["perf.channels_last=true"],
                 "compile": ["perf.compile=true"], "default": []}


def variant_overrides(name: str) -> list[str]:
    parts = name.split("+")
    overrides = ["perf.channels_last=false", "perf.compile=false"] if name != "default" else []
    for part in parts:
        if part not in VARIANT_PARTS:
            raise SystemExit(f"roofline: unknown variant part {part!r} (of {', '.join(VARIANT_PARTS)})")
        overrides += VARIANT_PARTS[part]
    return overrides


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048) -> float:
    """GFLOP/s of an n x n x n matrix multiply: the best of 7 timings of 10 products (a peak is what the
    cores can do; a neighbour only ever lowers a timing)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(5):
        a @ b
    sync(device)
    rates = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(device)
        rates.append(10 * 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return max(rates)


def step_flops(trainer) -> int:
    """FLOPs of one step without the lazy R1/R2 penalty (the counter cannot follow its double backward;
    at every 16th D step it adds a few percent to the average step)."""
    train_step(trainer, run_of(trainer, trainer.cfg.train.steps))  # step 0 runs the lazy penalties
    with FlopCounterMode(display=False) as counter:
        train_step(trainer, run_of(trainer, trainer.cfg.train.steps))
    return counter.get_total_flops()


def steps_per_second(trainer, device: torch.device, seconds: float, rounds: int) -> float:
    for _ in range(5):  # warm-up: allocator, first-call costs, compilation
        train_step(trainer, run_of(trainer, trainer.cfg.train.steps))
    sync(device)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 1.0:
        train_step(trainer, run_of(trainer, trainer.cfg.train.steps))
        n += 1
    sync(device)
    per_round = max(3, int(n / (time.perf_counter() - start) * seconds))
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            train_step(trainer, run_of(trainer, trainer.cfg.train.steps))
        sync(device)
        rates.append(per_round / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--variants", nargs="+", default=["default"],
                        help="perf settings: fp32, bf16, cl, compile joined by + (e.g. bf16+cl), or default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peaks = {"fp32": matmul_peak(torch.float32, device), "bf16": matmul_peak(torch.bfloat16, device)}
    print(f"matmul peak on {args.threads} thread(s) of {device}: fp32 {peaks['fp32']:.1f} GFLOP/s, "
          f"bf16 {peaks['bf16']:.1f} GFLOP/s")
    rows = []
    print(f"{'preset':24} {'variant':14} {'GFLOP/step':>10} {'steps/s':>8} {'GFLOP/s':>8} {'of fp32':>8} "
          f"{'of bf16':>8}")
    for name in args.presets:
        for variant in args.variants:
            cfg, note = load_preset(PRESETS.get(name, name), args.device, args.threads,
                                    extra=[*EXTRA.get(name, []), *variant_overrides(variant)])
            trainer = prepare(cfg)
            torch.set_num_threads(args.threads)
            flops = step_flops(trainer)
            rate = steps_per_second(trainer, device, args.seconds, args.rounds)
            achieved = flops * rate / 1e9
            row = {"preset": name, "variant": variant, "perf": trainer.perf.describe(), "gflop_per_step": flops / 1e9,
                   "steps_per_s": rate, "gflops": achieved, "of_fp32_peak": achieved / peaks["fp32"],
                   "of_bf16_peak": achieved / peaks["bf16"], "batch_size": cfg.train.batch_size, "note": note}
            rows.append(row)
            print(f"{name:24} {variant:14} {flops / 1e9:10.3f} {rate:8.2f} {achieved:8.1f} "
                  f"{row['of_fp32_peak']:8.2f} {row['of_bf16_peak']:8.2f}", flush=True)
    again = {"fp32": matmul_peak(torch.float32, device), "bf16": matmul_peak(torch.bfloat16, device)}
    if any(again[k] > peaks[k] for k in peaks):  # the machine was slower at the start: recompute the fractions
        peaks = {k: max(peaks[k], again[k]) for k in peaks}
        print(f"peaks measured again after the presets: fp32 {again['fp32']:.1f}, bf16 {again['bf16']:.1f} GFLOP/s; "
              f"fractions below use fp32 {peaks['fp32']:.1f}, bf16 {peaks['bf16']:.1f}")
        for row in rows:
            row["of_fp32_peak"], row["of_bf16_peak"] = row["gflops"] / peaks["fp32"], row["gflops"] / peaks["bf16"]
            print(f"{row['preset']:24} {row['variant']:14} of fp32 {row['of_fp32_peak']:.2f}  of bf16 "
                  f"{row['of_bf16_peak']:.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "device": str(device), "threads": args.threads, "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(), "peaks_gflops": peaks,
            "protocol": f"median of {args.rounds} rounds of ~{args.seconds:g} s after 5 warm-up steps; FLOPs from "
                        "torch.utils.flop_counter over one train_step", "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
