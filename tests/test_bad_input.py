"""Bad input through the CLI: every case exits 2 with one `gankit: error:` line that names the problem, and
writes nothing (no run directory, no output file, the inputs untouched).

The table runs in-process through ``gankit.cli.main``; two cases also run as real processes, where a
traceback would show.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import TINY_YAML, png_claiming
from gankit.checkpoint import CheckpointDir, save_checkpoint
from gankit.cli import main
from gankit.train import train

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["train", "{w}/tiny.yaml", "--run-dir", "{o}/run"]
SAMPLE = ["--out", "{o}/x.png"]
EVAL = ["--ref", "mnist10k", "--num", "10", "--json", "{o}/eval.json"]

# (id, argv, substrings the error line must contain); {w}: the prepared inputs, {o}: an empty directory
CASES = [
    # config keys, types and ranges
    ("unknown-top-level-key", ["train", "{w}/top.yaml", "--run-dir", "{o}/run"],
     ["unknown key 'trian'", "did you mean 'train'"]),
    ("unknown-nested-key", TRAIN + ["--set", "optim.lr_gg=1e-4"], ["'optim.lr_gg'", "did you mean 'optim.lr_g'"]),
    ("unknown-model-argument", TRAIN + ["--set", "model.generator.widht=4"],
     ["'model.generator.widht'", "did you mean 'model.generator.width'"]),
    ("wrong-type", TRAIN + ["--set", "train.batch_size=abc"], ["train.batch_size must be int", "'abc'"]),
    ("negative-lr", TRAIN + ["--set", "optim.lr_d=-0.1"], ["optim.lr_d must be > 0"]),
    ("infinite-lr", TRAIN + ["--set", "optim.lr_g=.inf"], ["optim.lr_g must be a finite number"]),
    ("zero-batch-size", TRAIN + ["--set", "train.batch_size=0"], ["train.batch_size must be >= 1"]),
    ("batch-larger-than-data", TRAIN + ["--set", "train.batch_size=512"],
     ["train.batch_size", "256 samples, fewer than one batch of 512"]),
    ("unknown-device", TRAIN + ["--set", "train.device=tpu"], ["train.device", "'tpu'"]),
    ("unknown-model", TRAIN + ["--set", "model.generator.name=dcgann"],
     ["model.generator.name", "unknown generator 'dcgann'", "did you mean 'dcgan'"]),
    ("zero-width", TRAIN + ["--set", "model.generator.width=0"], ["model.generator (dcgan)", "no weights"]),
    ("negative-width", TRAIN + ["--set", "model.generator.width=-2"], ["model.generator (dcgan)", "negative"]),
    ("unknown-dataset", TRAIN + ["--set", "data.name=mnsit"], ["data.name", "unknown dataset 'mnsit'"]),
    ("unknown-objective", TRAIN + ["--set", "objective.name=wgann"],
     ["objective.name", "unknown objective 'wgann'"]),
    ("impossible-resolution", TRAIN + ["--set", "data.resolution=11"], ["model.generator (dcgan)", "resolution 11"]),
    ("points-for-a-conv-model", TRAIN + ["--set", "data.name=ring"], ["model.generator (dcgan)", "(2,)"]),
    ("two-channels", TRAIN + ["--set", "data.channels=2"], ["data.channels must be 1 or 3, got 2"]),
    # data files
    ("torchvision-files-missing-offline", TRAIN + ["--set", "data.name=cifar10", "data.root={w}/empty"],
     ["cifar10: dataset files not found", "{w}/empty", "data.download"]),
    ("empty-image-folder", TRAIN + ["--set", "data.name=folder", "data.root={w}/empty"],
     ["no images", "{w}/empty"]),
    ("corrupt-image-in-folder", TRAIN + ["--set", "data.name=folder", "data.root={w}/corrupt", "data.resolution=28"],
     ["cannot read image {w}/corrupt/bad.png"]),
    # resuming
    ("resume-with-another-model", ["train", "{w}/tiny.yaml", "--run-dir", "{w}/run", "--resume",
                                   "--set", "model.generator.width=16"],
     ["cannot resume {w}/run/checkpoints/step_00000001.safetensors", "model.generator"]),
    ("resume-with-other-channels", ["train", "{w}/tiny.yaml", "--run-dir", "{w}/run", "--resume",
                                    "--set", "data.channels=3"], ["cannot resume", "data.channels"]),
    ("resume-a-damaged-checkpoint", ["train", "{w}/tiny.yaml", "--run-dir", "{w}/damaged", "--resume"],
     ["{w}/damaged/checkpoints/step_00000001.safetensors", "checksum mismatch"]),
    ("existing-run-without-resume", ["train", "{w}/tiny.yaml", "--run-dir", "{w}/run"],
     ["already holds checkpoints", "--resume"]),
    ("run-dir-is-a-file", ["train", "{w}/tiny.yaml", "--run-dir", "{w}/a_file"], ["{w}/a_file is a file"]),
    # files given to `gankit sample`
    ("sample-corrupt-checkpoint", ["sample", "{w}/corrupt.safetensors"] + SAMPLE,
     ["corrupt.safetensors: checksum mismatch", "file damaged or partially written"]),
    ("sample-truncated-checkpoint", ["sample", "{w}/truncated.safetensors"] + SAMPLE, ["damaged", "truncated"]),
    ("sample-zero-byte-file", ["sample", "{w}/zero.safetensors"] + SAMPLE, ["zero.safetensors is empty"]),
    ("sample-pickle", ["sample", "{w}/model.pt"] + SAMPLE, ["model.pt looks like a pickle", "never unpickles"]),
    ("sample-foreign-safetensors", ["sample", "{w}/foreign.safetensors"] + SAMPLE, ["without gankit metadata"]),
    ("sample-no-checkpoint-in-dir", ["sample", "{w}/empty"] + SAMPLE, ["no checkpoint found in {w}/empty"]),
    # config files and overrides
    ("yaml-syntax-error", ["train", "{w}/syntax.yaml", "--run-dir", "{o}/run"],
     ["syntax.yaml is not valid YAML", "line 2"]),
    ("yaml-not-a-mapping", ["train", "{w}/list.yaml", "--run-dir", "{o}/run"], ["must hold a mapping", "list"]),
    ("yaml-binary", ["train", "{w}/model.pt", "--run-dir", "{o}/run"], ["cannot read {w}/model.pt"]),
    ("config-file-missing", ["train", "{w}/nope.yaml", "--run-dir", "{o}/run"], ["file not found: {w}/nope.yaml"]),
    ("set-without-value", TRAIN + ["--set", "optim.lr_g"], ["'optim.lr_g' must look like section.key=value"]),
    ("set-bad-key", TRAIN + ["--set", "trian.steps=3"], ["unknown key 'trian'", "did you mean 'train'"]),
    ("set-unparsable-value", TRAIN + ["--set", "optim.betas_g=[0.5"], ["cannot parse the value", "optim.betas_g"]),
    # evaluation
    ("eval-unknown-metric", ["eval", "{w}/images.npz", "--metrics", "fidd"] + EVAL,
     ["unknown metric 'fidd'", "did you mean 'fid'"]),
    ("eval-unknown-reference", ["eval", "{w}/images.npz", "--ref", "mnsit", "--metrics", "fid"],
     ["unknown dataset 'mnsit'"]),
    ("eval-two-channel-images", ["eval", "{w}/two_channels.npz", "--metrics", "fid"] + EVAL,
     ["two_channels.npz", "1 (grayscale) or 3 (RGB) channels, got 2"]),
    # issue 16: the fault campaign's cases
    # 1. diverged weights are never sampled
    ("sample-nan-generator", ["sample", "{w}/nan.safetensors", "--no-ema"] + SAMPLE,
     ["nan.safetensors", "generator's weights hold NaN or Inf"]),
    # 3. latest.json naming a file outside the run: ignored, so a fresh run cannot reuse the other's files
    ("sample-latest-json-outside-the-run", ["sample", "{w}/escape"] + SAMPLE, ["no checkpoint found in {w}/escape"]),
    # 6. the metadata is covered by the checksum
    ("sample-edited-step-in-header", ["sample", "{w}/edited_step.safetensors"] + SAMPLE,
     ["edited_step.safetensors: checksum mismatch", "tensors and metadata"]),
    # 7. YAML resource exhaustion
    ("yaml-alias-bomb", ["train", "{w}/bomb.yaml", "--run-dir", "{o}/run"],
     ["bomb.yaml", "values once its aliases are expanded"]),
    ("yaml-deep-nesting", ["train", "{w}/deep.yaml", "--run-dir", "{o}/run"], ["deep.yaml", "nested more than"]),
    ("yaml-recursive-alias", ["train", "{w}/recursive.yaml", "--run-dir", "{o}/run"],
     ["recursive.yaml", "alias refers to a value that contains it"]),
    # 8. tracebacks before
    ("yaml-date", ["train", "{w}/date.yaml", "--run-dir", "{o}/run"], ["date.yaml", "a date or time is not a config"]),
    ("yaml-binary-tag", ["train", "{w}/binary.yaml", "--run-dir", "{o}/run"], ["binary.yaml", "binary data"]),
    ("yaml-set-tag", ["train", "{w}/set.yaml", "--run-dir", "{o}/run"], ["set.yaml", "a set is not"]),
    ("set-date-value", TRAIN + ["--set", "train.augment=2024-01-01"], ["train.augment", "a date or time"]),
    ("png-claims-100000x100000-train", TRAIN + ["--set", "data.name=folder", "data.root={w}/bombpng",
                                                "data.resolution=28"],
     ["{w}/bombpng/huge.png", "decompression-bomb limit"]),
    ("png-claims-100000x100000-eval", ["eval", "{w}/bombpng", "--metrics", "fid"] + EVAL,
     ["{w}/bombpng/huge.png", "decompression-bomb limit"]),
    ("sample-deeply-nested-header", ["sample", "{w}/deep_header.safetensors"] + SAMPLE,
     ["deep_header.safetensors", "nested too deeply"]),
    ("sample-header-without-data-shape", ["sample", "{w}/no_shape.safetensors"] + SAMPLE,
     ["no_shape.safetensors", "without data_shape"]),
    ("eval-two-images", ["eval", "{w}/two_images.npz"] + EVAL, ["2 samples are too few", "at least 4"]),
    ("eval-one-image", ["eval", "{w}/two_images.npz", "--num", "1", "--metrics", "fid", "--ref", "mnist10k"],
     ["1 sample are too few for fid"]),
    ("eval-npy-renamed-npz", ["eval", "{w}/array.npz", "--metrics", "fid"] + EVAL,
     ["array.npz is a single .npy array"]),
    ("eval-string-labels", ["eval", "{w}/string_labels.npz", "--metrics", "fid"] + EVAL,
     ["labels must be class indices", "<U1"]),
    ("eval-negative-labels", ["eval", "{w}/negative_labels.npz", "--metrics", "class_agreement"] + EVAL,
     ["labels must be class indices", "-3"]),
    ("eval-nan-labels", ["eval", "{w}/nan_labels.npz", "--metrics", "class_agreement"] + EVAL,
     ["labels must be class indices", "float"]),
    # --no-ema: the fixture's 1-step EMA would add its (right) warning line before the error
    ("sample-100-million", ["sample", "{w}/run", "--num", "100000000", "--no-ema"] + SAMPLE,
     ["100,000,000 samples need", "GiB in memory"]),
    ("resolution-5000", TRAIN + ["--set", "data.resolution=5000"], ["data.resolution must be <= 2048"]),
    ("device-meta", TRAIN + ["--set", "train.device=meta"], ["train.device", "'meta'"]),
    # 9. an output path that is a file, found before the steps are spent
    ("checkpoints-path-is-a-file", ["train", "{w}/tiny.yaml", "--run-dir", "{w}/ckfile"],
     ["{w}/ckfile/checkpoints is a file"]),
    # 10. seeds out of range
    ("seed-overflow", TRAIN + ["--set", "train.seed=9223372036854775807"], ["train.seed must be <= 4294967295"]),
    ("negative-seed", TRAIN + ["--set", "train.seed=-1"], ["train.seed must be >= 0"]),
    # 12. decided: duplicated keys refused, out-of-range truncation and huge walks refused, a damaged
    # latest checkpoint names the intact previous one
    ("yaml-duplicated-key", ["train", "{w}/duplicate.yaml", "--run-dir", "{o}/run"],
     ["duplicate.yaml", "duplicated key 'train'"]),
    ("interpolate-100000-steps", ["interpolate", "{w}/run", "--steps", "100000", "--seeds", "0-50", "--out",
                                  "{o}/walk.gif"], ["4,999,951 frames", "more than 2,000"]),
    ("resume-truncated-latest", ["train", "{w}/tiny.yaml", "--run-dir", "{w}/two_ckpts", "--resume",
                                 "--set", "checkpoint.every=1"],
     ["step_00000002.safetensors is damaged", "previous checkpoint step_00000001.safetensors is intact"]),
    # issue 27: the playground's options
    ("playground-port-70000", ["playground", "--port", "70000"], ["--port must be from 0 to 65535", "got 70000"]),
    ("playground-port-negative", ["playground", "--port", "-1"], ["--port must be from 0 to 65535", "got -1"]),
    ("playground-host-not-here", ["playground", "--host", "192.0.2.1", "--port", "0"],
     ["192.0.2.1 is not an address of this machine", "--host"]),
    ("playground-allow-host-with-port", ["playground", "--allow-host", "mybox:8765"],
     ["--allow-host", "'mybox:8765' is not a host name"]),
    # issue 27: hf folders are checked as checkpoints are, and exports neither overwrite nor shadow
    ("sample-hf-export-inside-a-run", ["sample", "{w}/shadowed", "--no-ema"] + SAMPLE,
     ["{w}/shadowed holds both a training run's checkpoints and an hf export", "{w}/shadowed/checkpoints"]),
    ("sample-hf-int64-weights", ["sample", "{w}/hf_int64"] + SAMPLE,
     ["{w}/hf_int64/model.safetensors does not fit", "dtype mismatch", "file int64 vs model float32"]),
    ("sample-hf-float64-weights", ["sample", "{w}/hf_float64"] + SAMPLE, ["hf_float64/model.safetensors", "float64"]),
    ("sample-hf-missing-tensor", ["sample", "{w}/hf_missing"] + SAMPLE, ["hf_missing/model.safetensors", "missing"]),
    ("sample-hf-extra-tensor", ["sample", "{w}/hf_extra"] + SAMPLE, ["hf_extra/model.safetensors", "unexpected extra"]),
    ("sample-hf-config-wider-than-its-weights", ["sample", "{w}/hf_wide"] + SAMPLE,
     ["hf_wide/model.safetensors does not fit the generator config.json describes", "shape mismatch"]),
    ("sample-hf-step-1e300", ["sample", "{w}/hf_step_huge"] + SAMPLE,
     ["{w}/hf_step_huge/config.json: step must be a whole number", "1e+300"]),
    ("sample-hf-step-text", ["sample", "{w}/hf_step_text"] + SAMPLE, ["{w}/hf_step_text/config.json: step", "'abc'"]),
    ("sample-hf-prior-object", ["sample", "{w}/hf_prior_object"] + SAMPLE, ["hf_prior_object/config.json: prior"]),
    ("sample-hf-prior-text", ["sample", "{w}/hf_prior_text"] + SAMPLE, ["hf_prior_text/config.json: prior", "'0.5'"]),
    ("sample-hf-data-shape-text", ["sample", "{w}/hf_shape_text"] + SAMPLE,
     ["hf_shape_text/config.json: data_shape", "'1x28x28'"]),
    ("sample-hf-version-text", ["sample", "{w}/hf_version_text"] + SAMPLE,
     ["hf_version_text/config.json: invalid version '1'"]),
    ("export-hf-over-an-earlier-export", ["export", "{w}/hf", "--format", "hf", "--out", "{w}/hf"],
     ["{w}/hf/config.json exists", "pass --force"]),
    ("export-hf-into-its-run", ["export", "{w}/run", "--no-ema", "--format", "hf", "--out", "{w}/run", "--force"],
     ["--out {w}/run is a training run's directory"]),
    ("export-hf-into-checkpoints", ["export", "{w}/run", "--no-ema", "--format", "hf", "--out",
                                    "{w}/run/checkpoints"], ["--out {w}/run/checkpoints is a training run's"]),
    ("export-hf-overflowing-generator", ["export", "{w}/hf_overflow", "--format", "hf", "--out", "{o}/hf"],
     ["generator's outputs hold NaN or Inf", "nothing written"]),
    ("export-onnx-overflowing-generator", ["export", "{w}/hf_overflow", "--format", "onnx", "--out", "{o}/g.onnx"],
     ["generator's outputs hold NaN or Inf", "nothing written"]),
    ("export-onnx-into-proc", ["export", "{w}/hf", "--format", "onnx", "--out", "/proc/gankit.onnx"],
     ["error: /proc/gankit.onnx: "]),
    ("export-metrics-info-a-list", ["export", "{w}/hf", "--format", "hf", "--out", "{o}/hf", "--metrics",
                                    "{w}/info_list.json"], ["--metrics {w}/info_list.json: 'info' must be an object"]),
    ("export-metrics-deeply-nested", ["export", "{w}/hf", "--format", "hf", "--out", "{o}/hf", "--metrics",
                                      "{w}/deep.json"], ["--metrics {w}/deep.json", "nested too deeply"]),

    # issue 27
    # 13. .npz headers are checked against the archive before anything is allocated; no pickles
    ("eval-npz-claims-a-huge-shape", ["eval", "{w}/huge_claim.npz"] + EVAL,
     ["huge_claim.npz: `images`: the header claims uint8 10000000000 x 28 x 28 x 1", "holds 100 bytes"]),
    ("eval-npz-object-array", ["eval", "{w}/objects.npz"] + EVAL,
     ["objects.npz: `images` holds Python objects", "never unpickles"]),
    ("eval-npz-pickled-labels", ["eval", "{w}/object_labels.npz"] + EVAL, ["object_labels.npz: `labels` holds Python"]),
    # 24. complex points were read with a warning, their imaginary part dropped
    ("eval-complex-points", ["eval", "{w}/complex.npz", "--ref", "ring", "--metrics", "fid"],
     ["complex.npz: `points` must be real numbers", "complex64 100 x 2"]),
    # 21. tracebacks before: a resize to 0 x 0, kthvalue out of range
    ("eval-images-of-0x0-pixels", ["eval", "{w}/no_pixels.npz"] + EVAL,
     ["no_pixels.npz: the images are 0 x 0 pixels"]),
    ("eval-num-reference-2-for-pr", ["eval", "{w}/images.npz", "--metrics", "pr", "--num-reference", "2"] + EVAL,
     ["--num-reference 2: 2 reference items are too few for pr: at least 4", "k + 1"]),
    # 22. messages that did not name the cause ("Array must not contain infs or NaNs", a broadcast error)
    ("eval-nan-points", ["eval", "{w}/nan_points.npz", "--ref", "ring", "--metrics", "fid"],
     ["nan_points.npz: 1 of 100 points hold NaN or Inf"]),
    ("eval-num-reference-1", ["eval", "{w}/points.npz", "--ref", "ring", "--metrics", "fid", "--num-reference", "1"],
     ["--num-reference 1: 1 reference item is too few for fid: at least 2 are needed"]),
    ("eval-3d-points-vs-the-ring", ["eval", "{w}/points3d.npz", "--ref", "ring", "--metrics", "fid"],
     ["points3d.npz: the samples are 3-D points (100, 3) but ring holds 2-D points"]),
    # 21. numbers too large for what they size: tracebacks (an allocation, a GIF field, MemoryError in argparse)
    ("sample-scale-1e9", ["sample", "{w}/run", "--scale", "1000000000", "--no-ema"] + SAMPLE,
     ["--scale 1000000000: upscaled, an image of", "would need"]),
    ("interpolate-scale-1e9", ["interpolate", "{w}/run", "--scale", "1000000000", "--no-ema", "--out", "{o}/w.png"],
     ["--scale 1000000000: upscaled, 16 images of 28,000,000,000 x 28,000,000,000 pixels would need"]),
    ("interpolate-frame-ms-1e8", ["interpolate", "{w}/run", "--frame-ms", "100000000", "--out", "{o}/w.gif"],
     ["--frame-ms 100000000: a GIF frame lasts 1 to 655350 ms"]),
    ("interpolate-seeds-0-1e12", ["interpolate", "{w}/run", "--seeds", "0-1000000000000", "--out", "{o}/w.gif"],
     ["a walk through 1000000000001 seeds with --steps 16 has 15,000,000,000,001 frames"]),
    ("interpolate-seed-beyond-2-63", ["interpolate", "{w}/run", "--seeds", "0", "9223372036854775808", "--out",
                                      "{o}/w.gif"], ["--seeds: seeds are 0..9223372036854775807"]),
    ("style-mix-rows-0-1e12", ["style-mix", "{w}/run", "--rows", "0-1000000000000", "--cols", "1", "--out",
                               "{o}/m.png"],
     ["--rows names 1,000,000,000,001 seeds, more than 100,000"]),
    # 22. torch's "Overflow when unpacking long long"
    ("sample-seed-2-70", ["sample", "{w}/run", "--seed", str(2**70), "--no-ema"] + SAMPLE,
     [f"--seed {2**70}: seeds are 0..9223372036854775807"]),
    ("eval-negative-seed", ["eval", "{w}/images.npz", "--seed", "-1"] + EVAL, ["--seed -1: seeds are 0.."]),
    ("sample-zoo-with-drs", ["sample", "zoo:mnist", "--drs"] + SAMPLE,
     ["--drs scores samples with the run's discriminator, and zoo:mnist is a zoo model"]),
]
SUBPROCESS_CASES = ["yaml-syntax-error", "sample-pickle", "yaml-alias-bomb", "sample-deeply-nested-header",
                    "playground-port-70000", "sample-hf-prior-object", "eval-npz-claims-a-huge-shape"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every broken input of the table, prepared once; the cases must leave it exactly as it is."""
    w = tmp_path_factory.mktemp("inputs")
    (w / "tiny.yaml").write_text(TINY_YAML)
    (w / "top.yaml").write_text(TINY_YAML + "trian: {steps: 3}\n")
    (w / "syntax.yaml").write_text("data: {name: mnist10k\nmodel: {}\n")
    (w / "list.yaml").write_text("- data\n- model\n")
    (w / "empty").mkdir()
    (w / "corrupt").mkdir()
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(w / "corrupt" / f"{i}.png")
    (w / "corrupt" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    torch.save({"w": torch.ones(2)}, w / "model.pt")
    (w / "zero.safetensors").write_bytes(b"")
    (w / "a_file").write_text("not a directory")
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(w / "foreign.safetensors"))
    good = save_checkpoint(w / "good.safetensors", {"w": torch.randn(64)}, {"step": 1})
    raw = good.read_bytes()
    (w / "truncated.safetensors").write_bytes(raw[:-40])
    (w / "corrupt.safetensors").write_bytes(_flip_tensor_byte(raw))
    np.savez(w / "images.npz", images=np.zeros((10, 28, 28, 1), np.uint8))
    np.savez(w / "two_channels.npz", images=np.zeros((10, 28, 28, 2), np.uint8))
    assert main(["train", str(w / "tiny.yaml"), "--run-dir", str(w / "run"), "--steps", "1"]) == 0
    shutil.copytree(w / "run", w / "damaged")
    latest = CheckpointDir(w / "damaged" / "checkpoints").latest()
    latest.write_bytes(_flip_tensor_byte(latest.read_bytes()))
    _issue_16_inputs(w)
    _issue_27_inputs(w)
    return w


def _issue_16_inputs(w: Path) -> None:
    from safetensors.torch import save_file

    from gankit.checkpoint import load_checkpoint

    ckpt = CheckpointDir(w / "run" / "checkpoints").latest()
    state, meta = load_checkpoint(ckpt)
    for t in state["g"].values():
        if t.is_floating_point():
            t.fill_(float("nan"))
    save_checkpoint(w / "nan.safetensors", state, meta)  # what gankit before issue 16 could write
    raw = ckpt.read_bytes()
    assert raw.count(b'\\"step\\": 1,') == 1
    (w / "edited_step.safetensors").write_bytes(raw.replace(b'\\"step\\": 1,', b'\\"step\\": 7,'))
    state, meta = load_checkpoint(ckpt)
    save_checkpoint(w / "no_shape.safetensors", state, {k: v for k, v in meta.items() if k != "data_shape"})
    deep = '{"format": "gankit-checkpoint", "version": 2, "sha256": "0", "state": ' + "[" * 100_000 + \
        "]" * 100_000 + ', "meta": {}}'
    save_file({"w": torch.ones(2)}, str(w / "deep_header.safetensors"), metadata={"gankit": deep})
    shutil.copytree(w / "run", w / "escape")
    other = w / "escape" / "checkpoints" / "latest.json"
    other.write_text('{"file": "../../run/checkpoints/step_00000001.safetensors", "step": 1}')
    for p in (w / "escape" / "checkpoints").glob("step_*"):
        p.rename(p.with_name("renamed_" + p.name))  # only the escaping pointer could still find a checkpoint
    (w / "bomb.yaml").write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")))
    (w / "deep.yaml").write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    (w / "recursive.yaml").write_text("a: &a [1, *a]\n")
    (w / "date.yaml").write_text("train: {seed: 2024-01-01}\n")
    (w / "binary.yaml").write_text("train: {augment: !!binary aGVsbG8=}\n")
    (w / "set.yaml").write_text("train: !!set {a, b}\n")
    (w / "duplicate.yaml").write_text("train: {seed: 1}\ntrain: {seed: 2}\n")
    (w / "bombpng").mkdir()
    (w / "bombpng" / "huge.png").write_bytes(png_claiming(100_000, 100_000))
    np.savez(w / "two_images.npz", images=np.zeros((2, 28, 28, 1), np.uint8))
    np.save(w / "array.npy", np.zeros((10, 28, 28, 1), np.uint8))
    (w / "array.npy").rename(w / "array.npz")
    images = np.random.default_rng(0).integers(0, 255, (10, 28, 28, 1)).astype(np.uint8)
    np.savez(w / "string_labels.npz", images=images, labels=np.array(["a"] * 10))
    np.savez(w / "negative_labels.npz", images=images, labels=np.full(10, -3))
    np.savez(w / "nan_labels.npz", images=images, labels=np.full(10, np.nan))
    (w / "ckfile").mkdir()
    (w / "ckfile" / "checkpoints").write_text("not a folder")
    assert main(["train", str(w / "tiny.yaml"), "--run-dir", str(w / "two_ckpts"), "--steps", "2",
                 "--set", "checkpoint.every=1"]) == 0
    latest = CheckpointDir(w / "two_ckpts" / "checkpoints").latest()
    latest.write_bytes(latest.read_bytes()[:-100])


def _issue_27_inputs(w: Path) -> None:
    """Issue 27's inputs: an hf export of the run, copies of it each with one defect, the run with an export
    inside; npz files that claim more than they hold, object arrays, complex, empty and 3-D points."""
    import json

    from safetensors.torch import load_file, save_file

    from gankit.export import export
    from gankit.sampling import load_generator

    export(load_generator(w / "run", ema=False, device="cpu"), "hf", w / "hf")
    shutil.copytree(w / "run", w / "shadowed")
    for name in ("config.json", "model.safetensors"):  # what `gankit export RUN --format hf --out RUN` wrote
        shutil.copy(w / "hf" / name, w / "shadowed" / name)

    def edited(name: str, edit: Any) -> None:
        shutil.copytree(w / "hf", w / name)
        meta = json.loads((w / name / "config.json").read_text())
        edit(meta)
        (w / name / "config.json").write_text(json.dumps(meta))

    def reweighted(name: str, edit: Any) -> None:
        shutil.copytree(w / "hf", w / name)
        weights = load_file(w / name / "model.safetensors")
        edit(weights)
        save_file(weights, w / name / "model.safetensors", metadata={"format": "pt"})

    key = "net.stem.1.weight"
    edited("hf_step_huge", lambda m: m.update(step=1e300))
    edited("hf_step_text", lambda m: m.update(step="abc"))
    edited("hf_prior_object", lambda m: m.update(prior={"a": 1}))
    edited("hf_prior_text", lambda m: m.update(prior="0.5"))
    edited("hf_shape_text", lambda m: m.update(data_shape="1x28x28"))
    edited("hf_version_text", lambda m: m.update(version="1"))
    edited("hf_wide", lambda m: m["run_config"]["model"]["generator"].update(width=4096))
    reweighted("hf_int64", lambda t: t.update({key: (t[key] * 100).long()}))
    reweighted("hf_float64", lambda t: t.update({key: t[key].double()}))
    reweighted("hf_missing", lambda t: t.pop(key))
    reweighted("hf_extra", lambda t: t.update({"net.extra": torch.ones(2)}))
    # finite weights whose outputs overflow to Inf and NaN
    reweighted("hf_overflow", lambda t: t.update({k: v * 1e30 for k, v in t.items() if k.endswith("weight")}))
    (w / "info_list.json").write_text('{"fid": 12.5, "info": [1]}')
    (w / "deep.json").write_text('{"info": ' + "[" * 100_000 + "]" * 100_000 + "}")
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (10**10, 28, 28, 1)})
    with zipfile.ZipFile(w / "huge_claim.npz", "w") as zf:  # 1 KB claiming 7.8 TB
        zf.writestr("images.npy", header.getvalue() + b"\0" * 100)
    np.savez(w / "objects.npz", images=np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.savez(w / "object_labels.npz", images=np.zeros((10, 28, 28), np.uint8), labels=np.array([None] * 10),
             allow_pickle=True)
    points = np.random.default_rng(0).normal(size=(100, 2))
    np.savez(w / "complex.npz", points=(points + 1j).astype(np.complex64))
    np.savez(w / "no_pixels.npz", images=np.zeros((10, 0, 0), np.uint8))
    np.savez(w / "points.npz", points=points.astype(np.float32))
    np.savez(w / "nan_points.npz", points=np.where(np.arange(100)[:, None] == 3, np.nan, points).astype(np.float32))
    np.savez(w / "points3d.npz", points=np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32))


def _flip_tensor_byte(raw: bytes) -> bytes:
    (n,) = struct.unpack("<Q", raw[:8])
    out = bytearray(raw)
    out[8 + n + 5] ^= 0x10
    return bytes(out)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def _fill(argv: list[str], w: Path, o: Path) -> list[str]:
    return [a.format(w=w, o=o) for a in argv]



@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_writes_nothing(world, tmp_path, monkeypatch, capsys,
                                                        argv, expected):
    monkeypatch.chdir(tmp_path)  # a default runs/<name> would appear here
    before = _snapshot(world)
    assert main(_fill(argv, world, tmp_path)) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gankit: error: "), err
    for part in expected:
        assert part.format(w=world) in lines[0]
    assert out == ""
    assert list(tmp_path.iterdir()) == [] and _snapshot(world) == before


def test_a_seed_range_is_counted_before_it_is_listed(world, tmp_path, capsys):
    """Issue 27, defect 21: --seeds 0-30000000 cost 2 GB before the walk limit refused it."""
    import tracemalloc

    tracemalloc.start()
    try:
        assert main(["interpolate", str(world / "run"), "--seeds", "0-30000000", "--out", str(tmp_path / "w.gif")]) == 2
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "a walk through 30000001 seeds" in capsys.readouterr().err and peak < 16 << 20, peak


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_input_in_a_real_process(world, tmp_path, case):
    _, argv, expected = next(c for c in CASES if c[0] == case)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    before = _snapshot(world)
    proc = subprocess.run([sys.executable, "-m", "gankit", *_fill(argv, world, tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gankit: error: "), proc.stderr
    assert all(part.format(w=world) in lines[0] for part in expected)
    assert list(tmp_path.iterdir()) == [] and _snapshot(world) == before
