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
- ``seed004``: `gankit train seeds/seed004_dcgan_mnist` (the DCGAN tutorial as written), the baseline;
- ``seed004_folder``: the same tutorial preset on the folder (`--data DIR`), the baseline of an RGB folder.

``--dataset stacked`` writes an RGB folder instead: 10,000 stacked-MNIST images (three independent
bundled digits as R, G and B, 28 px, 1000 equally likely modes) as PNG files, and measures with
`gankit eval RUN --ref stacked-mnist --metrics fid,stacked --num 26000` (mnist-cnn-stacked features:
the digit classifier's features of each channel; modes out of 1000 and KL to uniform, PacGAN's
protocol on 26,000 samples):

    python benchmarks/own_folder.py --dataset stacked --runs folder seed004_folder --json \
        benchmarks/results/own_folder_rgb_300s.json
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
    "seed004_folder": [str(ROOT / "configs/seeds/seed004_dcgan_mnist.yaml"), "--data", "{digits}"],
}
# what each dataset's runs are measured with: the reference, the metrics, the samples, the figures kept
EVAL = {"digits": ("mnist10k", "fid,pr,classes", 10_000, ("fid", "precision", "recall", "class_kl", "classes_present")),
        "stacked": ("stacked-mnist", "fid,stacked", 26_000, ("fid", "modes", "kl"))}


def write_digits(folder: Path, count: int | None = None) -> None:
    """The bundled digits as PNG files without labels; ``count``: a seeded random subset of that many."""
    from PIL import Image

    images = np.load(ROOT.parent / "shared" / "datasets" / "mnist10k.npz")["images"]
    if count is not None:  # the file is sorted by label: a prefix would hold few digit classes
        images = images[np.random.default_rng(0).permutation(len(images))[:count]]
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:05d}.png")


def write_stacked(folder: Path, count: int = 10_000) -> None:
    """``count`` stacked-MNIST images (R, G, B = three independent bundled digits) as RGB PNG files."""
    import torch
    from PIL import Image

    from gankit.data.stacked import stack_digits

    data = np.load(ROOT.parent / "shared" / "datasets" / "mnist10k.npz")
    images, _ = stack_digits(torch.from_numpy(data["images"]), torch.from_numpy(data["labels"].astype(np.int64)),
                             count, seed=1)
    folder.mkdir(parents=True)
    for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(image, "RGB").save(folder / f"{i:05d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--dataset", choices=list(EVAL), default="digits",
                        help="the folder: the bundled digits (gray) or stacked MNIST (RGB)")
    parser.add_argument("--num", type=int, help="samples to measure (default: 10,000 digits, 26,000 stacked)")
    parser.add_argument("--set", dest="extra", nargs="*", default=[], help="extra --set for every run")
    parser.add_argument("--keep", help="keep the runs in this folder (default: a temporary one, removed)")
    parser.add_argument("--json")
    args = parser.parse_args()

    scratch = Path(args.keep or tempfile.mkdtemp(prefix="gankit-own-folder-"))
    ref, metrics, num, keys = EVAL[args.dataset]
    args.num = args.num or num
    digits = scratch / ("my_digits" if args.dataset == "digits" else "my_stacked")
    if not digits.exists():
        (write_digits if args.dataset == "digits" else write_stacked)(digits)
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
            subprocess.run([*gankit, "eval", str(run_dir), "--ref", ref, "--metrics", metrics,
                            "--num", str(args.num), "--json", str(result_json)], cwd=scratch, check=True,
                           stdout=subprocess.DEVNULL)
            result = json.loads(result_json.read_text())
            step = re.search(r"gankit: training \D+ at step (\d+)", log)  # the end line, not an alarm's
            start_line = next((line for line in log.splitlines() if line.startswith("gankit: training on")), "")
            rows.append({"name": name, "command": "gankit train " + " ".join(argv), "budget_s": args.seconds,
                         "wall_s": round(wall, 1), "steps": int(step.group(1)) if step else None,
                         "start_line": start_line,
                         "data_line": next((l for l in log.splitlines() if l.startswith("gankit: data:")), ""),
                         **{k: result.get(k) for k in keys}})
            r = rows[-1]
            print(f"{name:14} steps {r['steps']:>6}  wall {r['wall_s']:6.1f} s  "
                  + "  ".join(f"{k} {r[k]:.4g}" for k in keys if r[k] is not None), flush=True)
            if args.json:
                write(args.json, rows, args)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    base = next((r for r in rows if r["name"] in ("seed004", "seed004_folder")), None)
    if base:
        for r in rows:
            r["fid_ratio_to_seed004"] = r["fid"] / base["fid"]
            print(f"{r['name']:14} FID / seed004's FID = {r['fid_ratio_to_seed004']:.3f}")
    if args.json:
        write(args.json, rows, args)


def write(path: str, rows: list[dict], args: argparse.Namespace) -> None:
    ref, metrics, _, _ = EVAL[args.dataset]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({
        "protocol": f"each run alone, `gankit train ... --max-seconds {args.seconds:g}` from a scratch directory outside "
                    f"the checkout (train.threads auto), then `gankit eval RUN --ref {ref} --metrics {metrics} "
                    f"--num {args.num}` ({'mnist-cnn' if ref == 'mnist10k' else 'mnist-cnn-stacked'} features; EMA "
                    "generator)", "dataset": args.dataset, "extra_set": args.extra, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
