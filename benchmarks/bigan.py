"""BiGAN on the bundled digits: configs/mnist_bigan.yaml trained by `gankit train` for a wall-clock budget, then
(a) reconstruction class agreement: the shipped digit classifier reads each of the 1,000 held-out digits x and
its reconstruction G(E(x)), and the share of equal readings is reported (with the classifier's accuracy on
both against the labels), and (b) FID of G's samples against mnist10k by `gankit eval` (mnist-cnn features,
the default for mnist10k). Prints a table and writes one JSON.

    taskset -c 1 python benchmarks/bigan.py --seconds 300 --json benchmarks/results/bigan_300s.json
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def agreement(run_dir: Path) -> dict:
    """The classifier's readings of the held-out digits and of their reconstructions G(E(x))."""
    from gankit.data import to_model_range, to_uint8
    from gankit.data.bundled import shuffled_mnist10k
    from gankit.games.bigan import load_bigan, reconstruct
    from gankit.metrics.classifier import HOLDOUT
    from gankit.metrics.features import get_extractor

    run = load_bigan(run_dir, torch.device("cpu"))
    images, labels = shuffled_mnist10k()
    x = torch.from_numpy(images[-HOLDOUT:]).unsqueeze(1)
    y = torch.from_numpy(labels[-HOLDOUT:]).long()
    rec = to_uint8(reconstruct(run.g, run.e, to_model_range(x, run.cfg.data.normalize)), run.cfg.data.normalize)
    classifier = get_extractor("mnist-cnn")
    read_x, read_rec = (classifier.extract(im)[1].argmax(1) for im in (x, rec))
    per_class = {str(c): round(float((read_rec[y == c] == read_x[y == c]).float().mean()), 4) for c in range(10)}
    return {"agreement": round(float((read_rec == read_x).float().mean()), 4),
            "accuracy_x": round(float((read_x == y).float().mean()), 4),
            "accuracy_reconstruction": round(float((read_rec == y).float().mean()), 4),
            "pixel_l1": round(float((rec.float() - x.float()).abs().mean() / 255), 4),
            "agreement_per_class": per_class, "held_out": HOLDOUT, "step": run.step}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--run-dir", default="runs/bigan_bench")
    p.add_argument("--json", required=True)
    p.add_argument("--num", type=int, default=10_000, help="samples of the FID (default 10000)")
    p.add_argument("--skip-train", action="store_true", help="measure --run-dir as it is")
    p.add_argument("--set", dest="overrides", nargs="*", default=[])
    args = p.parse_args()
    run_dir = Path(args.run_dir)
    gankit = [sys.executable, "-m", "gankit"]
    train_s = None
    if not args.skip_train:
        t0 = time.perf_counter()
        train = subprocess.run([*gankit, "train", str(REPO / "configs" / "mnist_bigan.yaml"), "--run-dir", str(run_dir),
                                "--max-seconds", str(args.seconds), "--set", "train.threads=1", "log.progress=false",
                                *args.overrides], capture_output=True, text=True)
        if train.returncode != 0:
            raise SystemExit(f"training failed: {train.stderr.strip()}")
        train_s = round(time.perf_counter() - t0, 1)
    fid_json = run_dir / "fid.json"
    ev = subprocess.run([*gankit, "eval", str(run_dir), "--ref", "mnist10k", "--metrics", "fid", "--num",
                         str(args.num), "--json", str(fid_json)], capture_output=True, text=True)
    if ev.returncode != 0:
        raise SystemExit(f"eval failed: {ev.stderr.strip()}")
    fid = json.loads(fid_json.read_text())
    result = {"seconds": args.seconds, "train_seconds": train_s, "run_dir": str(run_dir), "overrides": args.overrides,
              "reconstruction": agreement(run_dir),
              "fid": round(float(fid["fid"] if "fid" in fid else fid["results"]["fid"]), 2),
              "fid_info": fid.get("info", {}), "cpu_threads": 1}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    result["steps"] = result["reconstruction"]["step"]
    result["img_per_s"] = round(rows[-1]["kimg"] * 1000 / rows[-1]["seconds"], 1) if rows else None
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    r = result["reconstruction"]
    print(f"{'steps':>7}{'agreement':>11}{'acc x':>8}{'acc G(E(x))':>13}{'L1':>7}{'FID':>8}")
    print(f"{result['steps']:7d}{r['agreement']:11.3f}{r['accuracy_x']:8.3f}{r['accuracy_reconstruction']:13.3f}"
          f"{r['pixel_l1']:7.3f}{result['fid']:8.2f}")
    print(re.sub(r"\s+", " ", f"per-class agreement: {r['agreement_per_class']}"))


if __name__ == "__main__":
    main()
