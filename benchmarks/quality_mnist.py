"""Quality benchmark on mnist10k: train each config for a fixed wall-clock budget through the CLI, then
measure FID (features of gankit's digit classifier, mnist-cnn) and class shares on 10,000 samples.

    python benchmarks/quality_mnist.py --configs configs/mnist_dcgan.yaml configs/seeds/seed004_dcgan_mnist.yaml \
        --seconds 300 --json benchmarks/out/quality.json

Runs are sequential so each has the machine to itself. The real-data floor (FID of two disjoint halves
of mnist10k) is printed alongside.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from gankit.data.bundled import load_mnist10k_arrays
from gankit.metrics import evaluate_images, fid, get_extractor
from gankit.sampling import load_generator


def real_reference() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_mnist10k_arrays()
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype("int64"))


def real_floor(images: torch.Tensor) -> float:
    feats, _ = get_extractor("mnist-cnn").extract(images)
    return fid(feats[0::2], feats[1::2])


def run_one(config: str, seconds: float, out_dir: Path, num: int, extra: list[str]) -> dict:
    run_dir = out_dir / Path(config).stem
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "gankit", "train", config, "--run-dir", str(run_dir), "--max-seconds",
           str(seconds), "--set", "log.progress=false", *extra]
    t0 = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - t0
    gen = load_generator(run_dir)
    images = gen.to_uint8(gen.sample(num, seed=0))
    ref, labels = real_reference()
    result = evaluate_images(images, ref, labels)
    # Collapse shows as near-zero spread across samples: the per-pixel std over the 10k images (real ~ 80).
    spread = images.float().std(dim=0).mean().item()
    alarms: dict[str, int] = {}
    events = run_dir / "events.jsonl"
    if events.exists():
        for line in events.read_text().splitlines():
            kind = json.loads(line).get("alarm", "?")
            alarms[kind] = alarms.get(kind, 0) + 1
    return {"config": config, "budget_s": seconds, "wall_s": round(wall, 1), "steps": gen.step,
            "ema": gen.is_ema, "pixel_spread": spread, "alarms": alarms, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["configs/mnist_dcgan.yaml",
                                                         "configs/seeds/seed004_dcgan_mnist.yaml"])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--num", type=int, default=10_000)
    parser.add_argument("--out-dir", default="benchmarks/out/quality")
    parser.add_argument("--set", dest="extra", nargs="*", default=[], help="extra --set overrides for every run")
    parser.add_argument("--json")
    args = parser.parse_args()
    out_dir = Path(args.out_dir)
    rows = [run_one(c, args.seconds, out_dir, args.num, args.extra) for c in args.configs]
    floor = real_floor(real_reference()[0])
    print(f"\nmnist10k, {args.num} samples, FID in mnist-cnn features; real-data floor (5k vs 5k) = {floor:.3f}")
    real_spread = real_reference()[0].float().std(dim=0).mean().item()
    print(f"{'config':44} {'steps':>6} {'FID':>8} {'classes':>7} {'min share':>9} {'max share':>9} "
          f"{'spread':>7}  alarms   (real spread {real_spread:.1f})")
    for r in rows:
        alarms = ",".join(f"{k}x{v}" for k, v in r["alarms"].items()) or "-"
        print(f"{r['config']:44} {r['steps']:6d} {r['fid']:8.3f} {r['classes_present']:7d} "
              f"{r['min_share']:9.3f} {r['max_share']:9.3f} {r['pixel_spread']:7.2f}  {alarms}")
    for other in rows[1:]:
        print(f"FID ratio {rows[0]['config']} / {other['config']} = {rows[0]['fid'] / other['fid']:.3f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"real_floor_fid": floor, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
