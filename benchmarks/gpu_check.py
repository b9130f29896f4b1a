"""One short, prepared check of every CUDA path, for the few minutes a GPU is lent: writes one JSON.

    bash benchmarks/gpu_check.sh                          # on the GPU machine: JSON under $OUT (or benchmarks/out)
    python benchmarks/gpu_check.py --device cpu --quick   # the CPU dry run the test suite makes

Sections, each written to the JSON as soon as it ends (a run cut short by its time limit keeps what it did;
``--budget`` seconds are shared and a section that would not fit is recorded as skipped):

- ``perf``: every preset of ``benchmarks/roofline.py`` with perf settings fp32, amp (``perf.amp: auto``:
  bf16 where the GPU has it, fp16 with the gradient scaler otherwise), amp + channels-last, and amp +
  channels-last + ``torch.compile``: steps/s after a warm-up (the warm-up time holds the compilation),
  FLOPs per step (``torch.utils.flop_counter``) and the fraction of this device's measured fp32 / bf16
  matrix-multiply peaks, whether every loss stayed finite, and the peak memory;
- ``resume``: the default preset trained N steps straight and N/2 + N/2 with a resume between, on this
  device: are G, D, the EMA and both optimizers' states bit-identical;
- ``nproc``: `gankit train --nproc 2` (NCCL on CUDA) for a few steps, where the machine has 2+ GPUs;
- ``fid``: the default preset trained ``--fid-steps`` steps, FID of 10,000 samples (mnist-cnn features)
  against the bundled digits, beside the CPU's at the same step count when ``--cpu-fid JSON`` names an
  earlier run of this section on a CPU.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from roofline import EXTRA, PRESETS, matmul_peak  # noqa: E402
from throughput import load_preset, sync  # noqa: E402

from engine_step import run_of  # noqa: E402
from gankit.games.phases import train_step  # noqa: E402
from gankit.train import prepare  # noqa: E402

VARIANTS = {"fp32": ["perf.amp=fp32", "perf.channels_last=false", "perf.compile=false"],
            "amp": ["perf.amp=auto", "perf.channels_last=false", "perf.compile=false"],
            "amp+cl": ["perf.amp=auto", "perf.channels_last=true", "perf.compile=false"],
            "amp+cl+compile": ["perf.amp=auto", "perf.channels_last=true", "perf.compile=true"]}
SECTIONS = ("perf", "resume", "nproc", "fid")


class Report:
    """The JSON, rewritten after every section and every perf row."""

    def __init__(self, path: Path, args: argparse.Namespace) -> None:
        self.path, self.start, self.budget = path, time.perf_counter(), args.budget
        device = torch.device(args.device)
        try:
            name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        except (RuntimeError, AssertionError) as exc:  # no driver, no such GPU: every section will say so too
            name = f"unavailable: {exc}"[:300]
        self.data: dict[str, Any] = {
            "device": str(device), "name": name or platform.machine(), "gpus": torch.cuda.device_count(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "args": vars(args), "sections": {}}
        self.save()

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def save(self) -> None:
        self.data["elapsed_s"] = round(time.perf_counter() - self.start, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2, default=str))

    def run(self, name: str, needs: float, section: Callable[[], Any]) -> None:
        if self.left() < needs:
            self.data["sections"][name] = {"skipped": f"{self.left():.0f} s left of --budget, {needs:.0f} needed"}
        else:
            began = time.perf_counter()
            try:
                self.data["sections"][name] = section()
            except Exception as exc:  # a failing path is the finding: record it, go on with the others
                self.data["sections"][name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            self.data["sections"][name] = {**self.data["sections"][name],
                                           "seconds": round(time.perf_counter() - began, 1)}
        print(f"gpu_check: {name}: {json.dumps(self.data['sections'][name], default=str)[:400]}", flush=True)
        self.save()


def finite_losses(stats: dict[str, Any]) -> bool:
    return all(math.isfinite(float(v)) for k, v in stats.items() if k.startswith("loss"))


def perf_section(args: argparse.Namespace, report: Report) -> dict[str, Any]:
    device = torch.device(args.device)
    peaks = {"fp32": matmul_peak(torch.float32, device, args.peak_n),
             "bf16": matmul_peak(torch.bfloat16, device, args.peak_n)}
    rows: list[dict[str, Any]] = []
    out = {"peaks_gflops": peaks, "rows": rows}
    report.data["sections"]["perf"] = out
    for name in args.presets:
        for variant in args.variants:
            if report.left() < 20:
                rows.append({"preset": name, "variant": variant, "skipped": "out of --budget"})
                continue
            row: dict[str, Any] = {"preset": name, "variant": variant}
            try:
                cfg, note = load_preset(PRESETS[name], args.device, args.threads,
                                        extra=[*EXTRA.get(name, []), *VARIANTS[variant]])
                trainer = prepare(cfg)
                total = trainer.cfg.train.steps
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                began = time.perf_counter()
                finite = True
                for _ in range(args.warmup):
                    finite &= finite_losses(train_step(trainer, run_of(trainer, total)))
                sync(device)
                warmup_s = time.perf_counter() - began
                with FlopCounterMode(display=False) as counter:
                    finite &= finite_losses(train_step(trainer, run_of(trainer, total)))
                began = time.perf_counter()
                for _ in range(args.steps):
                    stats = train_step(trainer, run_of(trainer, total))
                sync(device)
                rate = args.steps / (time.perf_counter() - began)
                finite &= finite_losses(stats)
                gflops = counter.get_total_flops() * rate / 1e9
                row.update(perf=trainer.perf.describe(), warmup_s=round(warmup_s, 2), steps_per_s=rate,
                           gflop_per_step=counter.get_total_flops() / 1e9, gflops=gflops,
                           of_fp32_peak=gflops / peaks["fp32"], of_bf16_peak=gflops / peaks["bf16"],
                           finite=finite, note=note,
                           peak_memory_mib=torch.cuda.max_memory_allocated(device) / 2**20
                           if device.type == "cuda" else None)
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"[:1000]
            rows.append(row)
            print(f"gpu_check: perf {name:24} {variant:15} " + (
                f"{row['steps_per_s']:8.1f} steps/s  {row['of_fp32_peak']:.2f} of fp32 peak  finite {row['finite']}"
                if "steps_per_s" in row else row.get("error", "")), flush=True)
            report.save()
    return out


def resume_section(args: argparse.Namespace) -> dict[str, Any]:
    from gankit.checkpoint import load_checkpoint
    from gankit.config import load
    from gankit.train import train

    steps = args.resume_steps
    overrides = [f"train.device={args.device}", f"train.steps={steps}", "log.progress=false", "log.tensorboard=false",
                 f"checkpoint.every={steps // 2}", "log.sample_every=0", "eval.every=0", "train.max_seconds=null"]
    cfg = lambda *extra: load(ROOT / "configs/mnist_dcgan.yaml", [*overrides, *extra])  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        straight = train(cfg(), Path(tmp) / "straight")
        # the default preset's schedules are constant: a shorter target first, then the whole, is a cut run
        first = train(cfg(f"train.steps={steps // 2}"), Path(tmp) / "cut")
        resumed = train(cfg(), Path(tmp) / "cut", resume=True)
        (a, _), (b, _) = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
        differ = [key for key in ("g", "d", "g_ema", "opt_g", "opt_d") if not same(a.get(key), b.get(key))]
    return {"steps": steps, "cut_at": first.step, "bit_exact": not differ, "differ": differ}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def nproc_section(args: argparse.Namespace) -> dict[str, Any]:
    if torch.device(args.device).type == "cuda" and torch.cuda.device_count() < 2:
        return {"skipped": f"{torch.cuda.device_count()} GPU: --nproc needs 2"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "gankit", "train", str(ROOT / "configs/mnist_dcgan.yaml"), "--nproc", "2",
               "--device", args.device, "--steps", str(args.nproc_steps), "--run-dir", str(Path(tmp) / "run"),
               "--set", "log.progress=false", "log.tensorboard=false", "log.sample_every=0", "eval.every=0"]
        began = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=max(60.0, args.budget / 3),
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        return {"command": " ".join(cmd[1:]), "rc": out.returncode, "wall_s": round(time.perf_counter() - began, 1),
                "tail": (out.stdout + out.stderr)[-1500:]}


def fid_section(args: argparse.Namespace) -> dict[str, Any]:
    from gankit.config import load
    from gankit.metrics.api import calculate_metrics
    from gankit.train import train

    overrides = [f"train.device={args.device}", f"train.steps={args.fid_steps}", "log.progress=false",
                 "log.tensorboard=false", "log.sample_every=0", "eval.every=0", "train.max_seconds=null"]
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        result = train(load(ROOT / "configs/mnist_dcgan.yaml", overrides), Path(tmp) / "run")
        train_s = time.perf_counter() - began
        values = calculate_metrics(str(result.run_dir), ref="mnist10k", metrics=["fid"], num=args.fid_num,
                                   device=args.device)
    row = {"steps": result.step, "train_s": round(train_s, 1), "fid": values["fid"], "num": args.fid_num,
           "extractor": "mnist-cnn"}
    if args.cpu_fid:
        cpu = json.loads(Path(args.cpu_fid).read_text())["sections"]["fid"]
        row.update(cpu_fid=cpu["fid"], cpu_steps=cpu["steps"], fid_ratio_to_cpu=values["fid"] / cpu["fid"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=200, help="timed steps per preset and variant")
    parser.add_argument("--warmup", type=int, default=20, help="steps before timing (holds the compilation)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--peak-n", type=int, default=4096, help="side of the matmuls timed for the peaks")
    parser.add_argument("--resume-steps", type=int, default=40)
    parser.add_argument("--nproc-steps", type=int, default=50)
    parser.add_argument("--fid-steps", type=int, default=2000)
    parser.add_argument("--fid-num", type=int, default=10_000)
    parser.add_argument("--cpu-fid", help="an earlier gpu_check JSON from a CPU: its fid section is the comparison")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for everything (default 450)")
    parser.add_argument("--quick", action="store_true", help="the dry run: tiny step counts, 2 presets, no compile")
    parser.add_argument("--json", default=os.path.join(os.environ.get("OUT", "benchmarks/out"), "gpu_check.json"))
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.resume_steps, args.nproc_steps = 2, 1, 4, 2
        args.fid_steps, args.fid_num, args.peak_n = 2, 200, 256
        args.presets = [p for p in args.presets if p in ("mnist_dcgan", "mnist_cyclegan")]
        args.variants = [v for v in args.variants if "compile" not in v]
    if args.threads:
        torch.set_num_threads(args.threads)
    report = Report(Path(args.json), args)
    jobs = {"perf": (60, lambda: perf_section(args, report)), "resume": (20, lambda: resume_section(args)),
            "nproc": (30, lambda: nproc_section(args)), "fid": (60, lambda: fid_section(args))}
    for name in args.sections:
        needs, section = jobs[name]
        report.run(name, 0 if args.quick else needs, section)
    print(f"gpu_check: wrote {args.json} ({report.data['elapsed_s']} s)")


if __name__ == "__main__":
    main()
