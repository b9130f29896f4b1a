"""Quality after a fixed number of steps, for tuning on a fast machine: train each config for its own
step count (what it reaches on the 2-core CPU in the budget), then FID + class shares on 10k samples.

    python benchmarks/sweep_steps.py CONFIG:STEPS [CONFIG:STEPS ...] [--set k=v ...] --json OUT
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from quality_mnist import real_reference  # noqa: E402

from gankit import load_config, load_generator, train  # noqa: E402
from gankit.metrics import evaluate_images  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", help="CONFIG:STEPS[:k=v,k=v]")
    parser.add_argument("--out-dir", default="/tmp/sweep")
    parser.add_argument("--json")
    args = parser.parse_args()
    ref, labels = real_reference()
    rows = []
    for spec in args.runs:
        parts = spec.split(":")
        config, steps = parts[0], int(parts[1])
        overrides = parts[2].split(",") if len(parts) > 2 and parts[2] else []
        cfg = load_config(config, overrides + [f"train.steps={steps}", "log.progress=false",
                                               "log.sample_every=0", "checkpoint.every=1000000"])
        name = Path(config).stem + ("_" + "_".join(o.replace("=", "") for o in overrides) if overrides else "")
        run_dir = Path(args.out_dir) / name
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
        train(cfg, run_dir)
        row = {"run": name, "steps": steps}
        for ema in (True, False):
            gen = load_generator(run_dir, ema=ema)
            res = evaluate_images(gen.to_uint8(gen.sample(10_000, seed=0)), ref, labels)
            row["fid_ema" if ema and gen.is_ema else "fid"] = round(res["fid"], 3)
            row["min_share"], row["max_share"] = round(res["min_share"], 3), round(res["max_share"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
