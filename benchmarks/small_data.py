"""A small folder of one's own images: what adaptive augmentation (ADA) buys, at a fixed wall-clock budget.

    python benchmarks/small_data.py --images 1000 --seconds 300 --json benchmarks/results/ada_1000_300s.json

The first N bundled digits are written as PNG files (no labels) to a scratch folder outside the checkout.
Each variant is `gankit train --data DIR --max-seconds S` (the folder preset, unlabelled), the variants
side by side, each pinned to its own core with one thread (`taskset`, `train.threads=1`), so they train
in the same conditions. Then `gankit eval RUN --ref mnist10k --metrics fid,pr,classes --num 10000`: the
samples against all 10,000 digits, so a G that memorised its N images scores worse than one that
generalised. The variants: ``plain`` (the preset), ``ada`` (`train.augment=translation,color,cutout
train.ada_target=0.6`), and ``always`` (the same transforms on every image, DiffAugment without ADA).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from own_folder import write_digits  # noqa: E402

VARIANTS = {
    "plain": [],
    "ada": ["train.augment=translation,color,cutout", "train.ada_target=0.6"],
    "always": ["train.augment=translation,color,cutout"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--variants", nargs="+", default=["plain", "ada"], choices=list(VARIANTS))
    parser.add_argument("--keep", help="keep the runs in this folder (default: a temporary one)")
    parser.add_argument("--json")
    args = parser.parse_args()

    scratch = Path(args.keep or tempfile.mkdtemp(prefix="gankit-small-data-"))
    digits = scratch / f"digits_{args.images}"
    if not digits.exists():
        write_digits(digits, args.images)
    cores = sorted(os.sched_getaffinity(0))
    gankit = [sys.executable, "-m", "gankit"]
    procs = {}
    for i, name in enumerate(args.variants):
        run_dir = scratch / name
        shutil.rmtree(run_dir, ignore_errors=True)
        cmd = ["taskset", "-c", str(cores[i % len(cores)]), *gankit, "train", "--data", str(digits), "--run-dir",
               str(run_dir), "--max-seconds", str(args.seconds), "--set", "train.threads=1", "log.progress=false",
               *VARIANTS[name]]
        procs[name] = subprocess.Popen(cmd, cwd=scratch, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rows = []
    logs = {name: proc.communicate()[0] for name, proc in procs.items()}
    for name in args.variants:
        if procs[name].returncode:
            raise SystemExit(f"{name} failed:\n{logs[name][-2000:]}")
        out = scratch / f"{name}.eval.json"
        subprocess.run([*gankit, "eval", str(scratch / name), "--ref", "mnist10k", "--metrics", "fid,pr,classes",
                        "--num", "10000", "--json", str(out)], check=True, stdout=subprocess.DEVNULL)
        result = json.loads(out.read_text())
        step = re.search(r"gankit: training \D+ at step (\d+)", logs[name])  # the end line, not an alarm's
        ada_p = None
        metrics = (scratch / name / "metrics.jsonl").read_text().splitlines()
        if metrics and "ada_p" in metrics[-1]:
            ada_p = json.loads(metrics[-1])["ada_p"]
        rows.append({"variant": name, "set": VARIANTS[name], "steps": int(step.group(1)) if step else None,
                     "final_ada_p": ada_p,
                     **{k: result.get(k) for k in ("fid", "precision", "recall", "class_kl")}})
        r = rows[-1]
        print(f"{name:7} steps {r['steps']:>6}  FID {r['fid']:8.2f}  precision {r['precision']:.3f}  "
              f"recall {r['recall']:.3f}  class KL {r['class_kl']:.4f}" + (f"  final p {ada_p:.2f}" if ada_p is not None else ""))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "protocol": f"{args.images} unlabelled digits as PNGs, `gankit train --data DIR --max-seconds {args.seconds:g}`, "
                        "variants side by side, one pinned core and one thread each; `gankit eval RUN --ref mnist10k "
                        "--metrics fid,pr,classes --num 10000` (mnist-cnn features, EMA G) against all 10,000 digits",
            "runs": rows}, indent=2))
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
