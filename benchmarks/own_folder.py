"""The user's path, measured as a user takes it: a folder of unlabelled images, `gankit train --data DIR`.

    python benchmarks/own_folder.py --seconds 300 --json benchmarks/results/own_folder_300s.json
    python benchmarks/own_folder.py --runs folder seed004 --seconds 60        # a subset, shorter

The bundled 10,000 digits are written as PNG files to a folder outside the repository (their labels
are not written: the folder is what a user with their own images has), and every run is a separate
`gankit train ... --max-seconds S` started from a scratch directory outside the checkout, with the
CPU threads left to gankit (train.threads auto), one run at a time. Then `gankit eval RUN --ref mnist10k
--metrics fid,pr,classes --num 10000`: FID, precision and recall in the features of gankit's digit
classifier (mnist-cnn), and the classifier's labels of the samples against the uniform digit shares
(class KL). The runs:

- ``folder``: `gankit train --data DIR` (the preset `--data` uses, unlabelled);
- ``unlabelled``: `gankit train mnist_dcgan --set model.conditional=false` (the default without labels);
- ``labelled``: `gankit train mnist_dcgan` (the default, with the digits' labels);
- ``seed004``: `gankit train seeds/seed004_dcgan_mnist` (the DCGAN tutorial as written), the baseline.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RUNS = {
    "folder": ["--data", "{digits}"],
    "unlabelled": [str(ROOT / "configs/mnist_dcgan.yaml"), "--set", "model.conditional=false"],
    "labelled": [str(ROOT / "configs/mnist_dcgan.yaml")],
    "seed004": [str(ROOT / "configs/seeds/seed004_dcgan_mnist.yaml")],
}


def write_digits(folder: Path, count: int | None = None) -> None:
    """The bundled digits as PNG files without labels; ``count``: a seeded random subset of that many."""
    from PIL import Image

    images = np.load(ROOT.parent / "shared" / "datasets" / "mnist10k.npz")["images"]
    if count is not None:  # the file is sorted by label: a prefix would hold few digit classes
        images = images[np.random.default_rng(0).permutation(len(images))[:count]]
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:05d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--num", type=int, default=10_000)
    parser.add_argument("--set", dest="extra", nargs="*", default=[], help="extra --set for every run")
    parser.add_argument("--keep", help="keep the runs in this folder (default: a temporary one, removed)")
    parser.add_argument("--json")
    args = parser.parse_args()

    scratch = Path(args.keep or tempfile.mkdtemp(prefix="gankit-own-folder-"))
    digits = scratch / "my_digits"
    if not digits.exists():
        write_digits(digits)
    gankit = [sys.executable, "-m", "gankit"]
    rows = []
    try:
        for name in args.runs:
            run_dir = scratch / name
            if run_dir.exists():
                shutil.rmtree(run_dir)
            argv = [a.format(digits=digits) for a in RUNS[name]]
            extra = ["--set", *args.extra] if args.extra else []
            cmd = [*gankit, "train", *argv, "--run-dir", str(run_dir), "--max-seconds", str(args.seconds), *extra]
            start = time.perf_counter()
            out = subprocess.run(cmd, cwd=scratch, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if out.returncode:
                raise SystemExit(f"{name}: {' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
            log = out.stdout + out.stderr
            (scratch / f"{name}.log").write_text(log)
            result_json = scratch / f"{name}.eval.json"
            subprocess.run([*gankit, "eval", str(run_dir), "--ref", "mnist10k", "--metrics", "fid,pr,classes",
                            "--num", str(args.num), "--json", str(result_json)], cwd=scratch, check=True,
                           stdout=subprocess.DEVNULL)
            result = json.loads(result_json.read_text())
            step = re.search(r"at step (\d+)", log)
            start_line = next((line for line in log.splitlines() if line.startswith("gankit: training on")), "")
            rows.append({"name": name, "command": "gankit train " + " ".join(argv), "budget_s": args.seconds,
                         "wall_s": round(wall, 1), "steps": int(step.group(1)) if step else None,
                         "start_line": start_line,
                         "data_line": next((l for l in log.splitlines() if l.startswith("gankit: data:")), ""),
                         **{k: result.get(k) for k in ("fid", "precision", "recall", "class_kl", "classes_present")}})
            r = rows[-1]
            print(f"{name:11} steps {r['steps']:>6}  wall {r['wall_s']:6.1f} s  FID {r['fid']:8.2f}  "
                  f"precision {r['precision']:.3f}  recall {r['recall']:.3f}  class KL {r['class_kl']:.4f}", flush=True)
            if args.json:
                write(args.json, rows, args)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    base = next((r for r in rows if r["name"] == "seed004"), None)
    if base:
        for r in rows:
            r["fid_ratio_to_seed004"] = r["fid"] / base["fid"]
            print(f"{r['name']:11} FID / seed004's FID = {r['fid_ratio_to_seed004']:.3f}")
    if args.json:
        write(args.json, rows, args)


def write(path: str, rows: list[dict], args: argparse.Namespace) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({
        "protocol": f"each run alone, `gankit train ... --max-seconds {args.seconds:g}` from a scratch directory outside "
                    "the checkout (train.threads auto), then `gankit eval RUN --ref mnist10k --metrics fid,pr,classes "
                    f"--num {args.num}` (mnist-cnn features; EMA generator)", "extra_set": args.extra, "runs": rows},
        indent=2))


if __name__ == "__main__":
    main()
