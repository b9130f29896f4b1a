"""Image-to-image tasks on the bundled digits: each preset trained by `gankit train` for a wall-clock budget,
then measured by `gankit eval RUN` on the 1,000 held-out digits; prints a table and writes one JSON.

    nice -n 19 python benchmarks/translation.py --seconds 300 --json benchmarks/results/translation_300s.json

Runs one after the other with train.threads=1 (the machine is shared); the eval of each run follows its
training. The done-means of issue 17 are checked and printed beside each row.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRESETS = ["mnist_superres4", "mnist_inpaint", "mnist_edges", "mnist_cyclegan"]


def run(preset: str, seconds: float, out_dir: Path, extra: list[str]) -> dict:
    run_dir = out_dir / preset
    t0 = time.perf_counter()
    train = subprocess.run([sys.executable, "-m", "gankit", "train", str(REPO / "configs" / f"{preset}.yaml"),
                            "--run-dir", str(run_dir), "--max-seconds", str(seconds), "--set", "train.threads=1",
                            "log.progress=false", *extra], capture_output=True, text=True)
    if train.returncode != 0:
        raise SystemExit(f"{preset}: training failed: {train.stderr.strip().splitlines()[-1]}")
    train_s = time.perf_counter() - t0
    result_json = out_dir / f"{preset}.json"
    ev = subprocess.run([sys.executable, "-m", "gankit", "eval", str(run_dir), "--json", str(result_json)],
                        capture_output=True, text=True)
    if ev.returncode != 0:
        raise SystemExit(f"{preset}: eval failed: {ev.stderr.strip()}")
    print(ev.stdout, flush=True)
    result = json.loads(result_json.read_text())
    result["train_seconds"] = round(train_s, 1)
    result["run_dir"] = str(run_dir)
    return result


def checks(preset: str, result: dict) -> dict[str, bool]:
    """The measured done-means of issue 17."""
    r = result["results"]
    if preset == "mnist_superres4":
        out, base = r["AtoB"]["output"], r["AtoB"]["baseline"]
        return {"accuracy >= 0.90": out["accuracy"] >= 0.90, "psnr >= bicubic + 2 dB": out["psnr"] >= base["psnr"] + 2}
    if preset == "mnist_inpaint":
        return {"accuracy >= 0.90": r["AtoB"]["output"]["accuracy"] >= 0.90}
    if preset == "mnist_cyclegan":
        return {f"{d} accuracy >= 0.90": r[d]["output"]["accuracy"] >= 0.90 for d in ("AtoB", "BtoA")}
    return {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--presets", nargs="+", default=PRESETS)
    p.add_argument("--out-dir", default="runs/translation")
    p.add_argument("--json", required=True)
    p.add_argument("--set", dest="overrides", nargs="*", default=[])
    args = p.parse_args()
    rows = {}
    for preset in args.presets:
        result = run(preset, args.seconds, Path(args.out_dir), args.overrides)
        result["checks"] = checks(preset, result)
        rows[preset] = result
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"seconds": args.seconds, "runs": rows}, indent=2))
    print(f"{'preset':18}{'dir':>6}{'steps':>7}{'acc':>7}{'base acc':>9}{'psnr':>7}{'base':>7}{'ssim':>7}"
          f"{'box psnr':>9}  checks")
    for preset, result in rows.items():
        for d, res in result["results"].items():
            o, b = res["output"], res["baseline"]
            box = f"{o['psnr_box']:9.2f}" if "psnr_box" in o else f"{'':9}"
            ok = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in result["checks"].items() if d in k or
                           not k.startswith(("AtoB", "BtoA")))
            print(f"{preset:18}{d:>6}{result['info']['step']:7d}{o['accuracy']:7.3f}{b['accuracy']:9.3f}"
                  f"{o['psnr']:7.2f}{b['psnr']:7.2f}{o['ssim']:7.3f}{box}  {ok}")


if __name__ == "__main__":
    main()
