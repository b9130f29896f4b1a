"""Command line: parse arguments into a typed config and call the library. Nothing else lives here."""
from __future__ import annotations

import argparse
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from gankit.cli_args import (DEVICE_HELP, MAX_SEED, TRUNCATION_HELP, _at_least_two, _check_rejection, _expand, _json_value,
                             _latent_tool_arguments, _non_negative_float, _non_negative_int, _positive_float,
                             _positive_int, _rejection_arguments, _scale, _scale_argument, _seed_list, _seed_ranges)


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop finishes its step, checkpoints and returns. A second signal aborts
    the step in progress (one arriving during a save is held until the save is complete)."""

    def __init__(self) -> None:
        self.requested = False
        self.signum = 0
        self._previous: dict = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        """Put back the handlers ``install`` replaced (``main`` may be called from Python)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum
        print(f"\ngankit: {signal.Signals(signum).name} received; finishing the step and saving a "
              "checkpoint (send it again to abort without saving)", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    from gankit.version import __version__

    parser = argparse.ArgumentParser(prog="gankit", description="Train, sample and evaluate GANs.")
    parser.add_argument("--version", action="version", version=f"gankit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a GAN from a YAML config, a preset name, or on a folder of images")
    p.add_argument("config", nargs="?", help="YAML config file or preset name (`gankit init --list`); "
                   "default: folder_dcgan with --data")
    p.add_argument("--data", metavar="DIR", help="train on your own images: a folder of PNG/JPEG files (sets "
                   "data.name=folder data.root=DIR; size and channels inferred unless set; default: the config's data)")
    p.add_argument("--device", help="device, as train.device: " + DEVICE_HELP.replace("default auto",
                   "default: the config's, auto"))
    p.add_argument("--run-dir", help="output directory (default: runs/<timestamp>)")
    p.add_argument("--steps", type=_non_negative_int,
                   help="total generator updates of the run, counting resumed ones (sets train.steps; default: the "
                        "config's)")
    p.add_argument("--max-seconds", type=_positive_float,
                   help="wall-clock budget of this invocation in seconds (default: the config's train.max_seconds)")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override config values, e.g. --set optim.lr_g=1e-4 train.batch_size=128 (default: none)")
    p.add_argument("--resume", action="store_true", help="continue the latest checkpoint in --run-dir")
    p.add_argument("--nproc", type=_positive_int, default=1, metavar="N",
                   help="data-parallel processes, started by torchrun's launcher: one per GPU, or CPU processes "
                        "over gloo; train.batch_size is the global batch, split between them (default 1)")

    s = sub.add_parser("sample", help="write samples from a trained generator")
    s.add_argument("source", help="run directory, checkpoint file, exported hf folder or zoo:NAME "
                   "(see `gankit zoo`)")
    s.add_argument("--num", type=_positive_int, default=64, help="number of samples (default 64)")
    s.add_argument("--out", required=True, help="grid .png, array .npz, or a directory ending in /")
    s.add_argument("--seed", type=int, help="latent seed (default 0)")
    s.add_argument("--batch-size", type=_positive_int, help="generator batch size (default 256)")
    s.add_argument("--no-ema", action="store_true", help="use the raw generator, not its EMA")
    s.add_argument("--device", default="auto", help=DEVICE_HELP)
    s.add_argument("--class", dest="class_index", type=_non_negative_int, metavar="K",
                   help="conditional runs: every sample of class K (default: a .png grid shows class j in "
                        "column j, files cycle through the classes)")
    s.add_argument("--truncation", type=_non_negative_float, metavar="PSI", help=TRUNCATION_HELP)
    _scale_argument(s)
    _rejection_arguments(s)

    i = sub.add_parser("interpolate", help="a walk through latent space between seeds, as a GIF or a PNG strip")
    i.add_argument("source", help="run directory or checkpoint file")
    i.add_argument("--steps", type=_at_least_two, default=16, help="frames from one seed to the next (default 16)")
    i.add_argument("--out", required=True, help="animation .gif or strip .png")
    i.add_argument("--seeds", type=_seed_list, nargs="+", default=[[range(0, 1)], [range(1, 2)]], metavar="SEEDS",
                   help="seeds of the latents visited in order, e.g. 3 7 or 0-4 (default 0 1)")
    i.add_argument("--slerp", action="store_true", help="spherical instead of linear interpolation")
    i.add_argument("--frame-ms", type=_positive_int, default=80, help="GIF frame duration in ms (default 80)")
    _latent_tool_arguments(i)

    m = sub.add_parser("style-mix", help="StyleGAN style-mixing grid: coarse styles from rows, fine from columns")
    m.add_argument("source", help="run directory or checkpoint file of a stylegan generator")
    m.add_argument("--rows", type=_seed_list, nargs="+", required=True, metavar="SEEDS",
                   help="seeds of the rows (their coarse styles), e.g. 1 2 3 or 1-3 or 1,5")
    m.add_argument("--cols", type=_seed_list, nargs="+", required=True, metavar="SEEDS",
                   help="seeds of the columns (their finer styles)")
    m.add_argument("--out", required=True, help="grid .png")
    m.add_argument("--coarse", type=_non_negative_int,
                   help="number of styles taken from the rows (default 4: the 4x4 and 8x8 layers)")
    _latent_tool_arguments(m)

    e = sub.add_parser("eval", help="measure samples (a run, a checkpoint, an .npz) against a reference dataset, "
                       "or a pix2pix / cyclegan run on its task's held-out images")
    e.add_argument("source", help="run directory, checkpoint file, .npz (`images` or `points`) or image directory")
    e.add_argument("--ref", help="reference dataset name (mnist10k, mnist, cifar10, ring, ...); required except "
                   "for image-to-image runs, which are measured against their known targets (default: none)")
    e.add_argument("--metrics", help="comma-separated: fid,kid,pr,dc,classes,modes2d,stacked "
                   "(default: fid,kid,pr,dc, plus classes for classifier extractors)")
    e.add_argument("--num", type=_positive_int, help="number of samples (default 10000)")
    e.add_argument("--split", help="reference split: train, test or holdout (default train)")
    e.add_argument("--num-reference", type=_positive_int, help="use the first N reference items (default all)")
    e.add_argument("--extractor", help="mnist-cnn, inception, inception:PATH or classifier:PATH "
                   "(default: mnist-cnn for MNIST, points for 2D data, inception otherwise)")
    e.add_argument("--root", help="directory of the reference dataset's files (default data)")
    e.add_argument("--seed", type=int, help="latent seed of the samples and KID subsets (default 0)")
    e.add_argument("--json", help="write the result, with its info block, to this JSON file (default: print only)")
    e.add_argument("--device", default="auto", help="device for sampling and features: " + DEVICE_HELP)
    e.add_argument("--no-ema", action="store_true", help="runs and checkpoints: sample the raw generator, "
                   "not its EMA")
    e.add_argument("--cache-dir", help="reference feature cache (default $GANKIT_CACHE/reference or "
                   "~/.cache/gankit/reference)")
    e.add_argument("--download", action="store_true", help="let missing Inception weights / datasets download")

    t = sub.add_parser("translate", help="apply a trained pix2pix or cyclegan generator to images")
    t.add_argument("source", help="run directory or checkpoint file of an image-to-image run")
    t.add_argument("--input", required=True, help=".npz with `images` uint8 N x H x W [x C] at the task's input "
                   "size (and, for inpainting, optional `masks` uint8 N x H x W, 1 = missing), or a folder of images")
    t.add_argument("--out", required=True, help=".npz (`images` N x H x W x C) or a folder for PNGs")
    t.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB",
                   help="cyclegan: which generator (default AtoB)")
    t.add_argument("--device", default="auto", help="device to run the generator on: " + DEVICE_HELP)

    k = sub.add_parser("classifier", help="train a feature classifier for a labelled dataset "
                       "(the extractor classifier:PATH)")
    k.add_argument("--data", required=True, help="labelled dataset name (mnist10k, mnist, fashion-mnist, cifar10)")
    k.add_argument("--root", default="data", help="directory of the dataset's files (default data)")
    k.add_argument("--out", help="weights file (default classifiers/<data>.safetensors)")
    k.add_argument("--epochs", type=_positive_int, default=10, help="training epochs (default 10)")
    k.add_argument("--seed", type=int, default=0, help="seed of the initialisation and data order (default 0)")
    k.add_argument("--limit", type=_positive_int, help="train on the first N training images only (default: all)")
    k.add_argument("--download", action="store_true", help="let torchvision download missing dataset files")

    b = sub.add_parser("bench", help="run the quality benchmarks (fixed budgets) beside published results")
    b.add_argument("names", nargs="*", default=["ring", "grid", "mnist10k"],
                   help="benchmarks: ring, grid, stacked-mnist, mnist10k (default: ring grid mnist10k)")
    b.add_argument("--seeds", type=_positive_int, default=1, help="runs per benchmark, seeds 0..N-1 (default 1)")
    b.add_argument("--time-scale", type=_positive_float, default=1.0,
                   help="multiply every budget (e.g. 0.1 for a quick check; results are then not comparable; "
                        "default 1)")
    b.add_argument("--configs", help="directory of gankit's preset configs (default: the checkout's configs/)")
    b.add_argument("--out-dir", default="runs/bench", help="where the benchmark runs go (default runs/bench)")
    b.add_argument("--json", help="write every run and the summaries to this JSON file (default: print only)")
    b.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override config values of every run (e.g. train.device=cuda; default: none)")
    _rejection_arguments(b)  # adds a "gankit + DRS" / "gankit + density" row per benchmark

    g = sub.add_parser("playground", help="a local web page that trains a GAN live (2D and image modes)")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; "
                   "0.0.0.0: every interface, reached by IP address, localhost or this machine's name)")
    g.add_argument("--allow-host", dest="allow_hosts", action="append", default=[], metavar="NAME",
                   help="also answer to the host name NAME (the page refuses other names against DNS rebinding; "
                        "repeatable; default: none)")
    # the range is checked with the bind, so a bad port is one `gankit: error:` line like a busy one
    g.add_argument("--port", type=int, default=8765, help="port, 0 to 65535 (default 8765; 0 = any free one)")
    g.add_argument("--open", action="store_true", help="open the page in the default browser")
    g.add_argument("--configs", help="directory of the image mode's preset configs (default: the checkout's configs/)")

    c = sub.add_parser("config", help="print a resolved config, or every field with its default and help")
    c.add_argument("config", nargs="?", help="YAML config file or preset name; omit to list all fields")
    c.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override config values before printing (default: none)")
    c.add_argument("--model", metavar="NAME", help="list the architecture arguments of model NAME (its "
                   "generator and discriminator) with their defaults")

    from gankit.cli_tools import add_parsers

    add_parsers(sub)
    for command in sub.choices.values():  # every command can build what the user's own code registers
        command.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                             help="import MODULE (a module on the current directory or PYTHONPATH, or a .py file) "
                                  "first: models, objectives or datasets it registers become usable (repeatable; "
                                  "installed packages register through the 'gankit.plugins' entry point; default: none)")
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from gankit import distributed
    from gankit.config import load
    from gankit.device import select_device
    from gankit.presets import resolve_config
    from gankit.train import train

    overrides = list(args.overrides)
    if args.config is None and args.data is None:
        raise ValueError("train needs a config (file or preset name) or --data DIR")
    args.config_arg = args.config  # what the user typed: repeated in "continue with:", not the preset's file
    args.config = resolve_config(args.config or "folder_dcgan")
    if args.data is not None:
        overrides = ["data.name=folder", f"data.root={args.data}", *overrides]
    if args.device is not None:
        select_device(args.device, "--device")
        overrides.append(f"train.device={args.device}")
    if args.steps is not None:
        overrides += [f"train.steps={args.steps}", "train.epochs=null"]
    if args.max_seconds is not None:
        overrides.append(f"train.max_seconds={args.max_seconds}")
    cfg = load(args.config, overrides)
    if _budget_lifts_step_target(args, cfg):  # the user's budget is the run's length, not the preset's steps
        target = f"train.steps {cfg.train.steps}" if cfg.train.epochs is None else f"train.epochs {cfg.train.epochs:g}"
        overrides += ["train.steps=null", "train.epochs=null"]
        cfg = load(args.config, overrides)
        if distributed.env_rank() == 0:
            print(f"gankit: --max-seconds {args.max_seconds:g} without --steps: training for the whole budget "
                  f"(the config's {target} does not stop it)")
    if cfg.data.name == "folder" and distributed.env_rank() == 0:  # what an unset size becomes is visible
        from gankit.data.folder import describe_folder

        print(f"gankit: {describe_folder(cfg.data)}")
    run_dir = args.run_dir or _default_run_dir(args.config)
    if args.nproc > 1 and not distributed.launched():  # this process only launches the N that train
        distributed.check_split(cfg.train.batch_size, args.nproc)
        return distributed.launch(args.nproc, _train_argv(args, run_dir, args.resume))
    again = _resume_command(args, run_dir)
    stop = StopFlag()
    stop.install()
    try:
        result = train(cfg, run_dir, resume=args.resume, stop=stop)
    except KeyboardInterrupt:  # a second signal: the step in progress is lost, the last checkpoint stands
        from gankit.checkpoint import CheckpointDir

        latest = CheckpointDir(Path(run_dir) / "checkpoints").latest()
        where = f"the last checkpoint is {latest}; continue with: {again}" if latest else "no checkpoint written"
        print(f"gankit: aborted; {where}", file=sys.stderr)
        return 130
    finally:
        stop.restore()
    distributed.teardown()  # after a normal end only: a failed process may have left a collective unmatched
    if distributed.env_rank() != 0:  # rank 0 reports for every process of a multi-process run
        return 128 + stop.signum if result.stopped_by == "interrupt" else 0
    how = {"steps": "reached its step target", "max_seconds": "used its time budget",
           "interrupt": "was interrupted"}[result.stopped_by]
    if result.stopped_by == "steps" and cfg.train.steps is not None and result.step > cfg.train.steps:
        how = f"was already past its step target ({cfg.train.steps}; nothing trained)"
    print(f"gankit: training {how} at step {result.step}; checkpoint {result.checkpoint}")
    if result.stopped_by != "steps":
        print(f"gankit: continue with: {again}")
    print(f"gankit: samples in {Path(result.run_dir) / 'samples'}")
    return 128 + stop.signum if result.stopped_by == "interrupt" else 0  # 130 for SIGINT, 143 for SIGTERM


def _budget_lifts_step_target(args: argparse.Namespace, cfg: Any) -> bool:
    """Whether ``--max-seconds`` alone (no ``--steps``, no train.steps/epochs in ``--set``) lifts the config's
    step target: yes, unless something in the config counts down to that step (a learning-rate decay,
    instance noise annealed over the run), which then keeps it."""
    from gankit.config import scheduled_to_last_step

    if args.max_seconds is None or args.steps is not None:
        return False
    if any(o.split("=", 1)[0].strip() in ("train.steps", "train.epochs") for o in args.overrides):
        return False
    return not scheduled_to_last_step(cfg)


def _resume_command(args: argparse.Namespace, run_dir: str) -> str:
    """The command line that continues this run: the same arguments, with the run directory made explicit."""
    import os
    import shlex

    nproc = int(os.environ.get("WORLD_SIZE", args.nproc))
    return shlex.join(["gankit", *_train_argv(args, run_dir, True), *(["--nproc", str(nproc)] if nproc > 1 else [])])


def _train_argv(args: argparse.Namespace, run_dir: str, resume: bool) -> list[str]:
    """``train`` arguments that repeat this command with an explicit run directory (and no --nproc)."""
    config = getattr(args, "config_arg", args.config)
    argv = ["train", *([config] if config is not None else []), "--run-dir", str(run_dir),
            *(["--resume"] if resume else [])]
    if args.data is not None:
        argv += ["--data", args.data]
    if args.device is not None:
        argv += ["--device", args.device]
    if args.steps is not None:
        argv += ["--steps", str(args.steps)]
    if args.max_seconds is not None:
        argv += ["--max-seconds", str(args.max_seconds)]
    if args.overrides:
        argv += ["--set", *args.overrides]
    return argv


def _default_run_dir(config: str) -> str:
    from datetime import datetime

    return str(Path("runs") / f"{Path(config).stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")


def cmd_sample(args: argparse.Namespace) -> int:
    from gankit.sampling import class_columns, load_generator, write_samples
    from gankit.device import select_device

    _check_rejection(args)
    game = _translation_game(args.source)
    if game:
        from gankit.translation.evaluate import load_translator, write_grid

        _refuse_for_translation(args, game, SAMPLE_GAN_OPTIONS, "its samples are input | output | target rows of "
                                "its task's held-out images")
        out, shown = write_grid(load_translator(args.source, select_device(args.device, "--device")), args.num,
                                args.out, args.scale)
        every = f" (all there are; --num asked for {args.num})" if shown < args.num else ""
        print(f"gankit: wrote input | output | target rows of {shown} held-out images{every} to {out}")
        return 0
    args.seed = 0 if args.seed is None else args.seed
    args.batch_size = args.batch_size or 256
    gen = load_generator(args.source, ema=not args.no_ema, device=select_device(args.device, "--device"))
    rejection = None
    if args.drs is not None:
        from gankit.rejection import Rejection, calibrate, load_discriminator

        d = load_discriminator(args.source, gen)
        if args.drs_calibrate:
            losses = calibrate(d, gen, args.drs_calibrate, seed=args.seed)
            print(f"gankit: calibrated D for {len(losses)} steps, logistic loss {losses[0]:.3f} -> "
                  f"{sum(losses[-50:]) / len(losses[-50:]):.3f} (mean of the last 50)")
        rejection = Rejection(d, percentile=args.drs)
    elif args.density_filter is not None:
        from gankit.rejection import DensityFilter

        rejection = DensityFilter(percentile=args.density_filter)
    out = write_samples(gen, args.num, args.out, seed=args.seed, batch_size=args.batch_size,
                        class_index=args.class_index, truncation=args.truncation, rejection=rejection,
                        scale=_scale(args, gen))
    which = "EMA generator" if gen.is_ema else "generator"
    of_class = f" of class {args.class_index}" if args.class_index is not None else ""
    drawn = ""
    if gen.num_classes is not None and args.class_index is None:
        drawn = (f": {gen.num_classes} clusters of D's features, one per row (not the data's classes)"
                 if gen.prior is not None else f": its {gen.num_classes} classes in turn ("
                 + ("column j is class j; " if class_columns(gen.num_classes, args.num) and out.suffix.lower() == ".png"
                    else "") + "--class N draws one)")
    print(f"gankit: wrote {args.num} samples{of_class} of the {which} at step {gen.step} to {out}{drawn}")
    st = rejection.stats if rejection is not None else None
    if st is not None:
        how = (f"gamma {st.gamma:.3f} (percentile {args.drs:g})" if args.drs is not None else
               f"log density >= {st.threshold:.3f} (percentile {args.density_filter:g})")
        print(f"gankit: rejection sampling kept {st.accepted} of {st.proposed} proposals "
              f"({100 * st.acceptance:.1f}%), {how}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from gankit.device import select_device
    from gankit.sampling import check_frame_ms, load_generator, walk_frames, write_interpolation

    ranges, count = _seed_ranges(args.seeds, "--seeds")
    if count < 2:
        raise ValueError(f"--seeds needs at least two seeds to walk between, got {[s for r in ranges for s in r]}")
    frames = walk_frames(count, args.steps)  # before loading or expanding: a typo is refused before any work
    seeds = _expand(ranges, count, "--seeds")
    check_frame_ms(args.frame_ms)
    gen = load_generator(args.source, ema=not args.no_ema, device=select_device(args.device, "--device"))
    out = write_interpolation(gen, seeds, args.steps, args.out, spherical=args.slerp, truncation=args.truncation,
                              class_index=args.class_index, frame_ms=args.frame_ms, scale=_scale(args, gen))
    print(f"gankit: wrote a {frames}-frame walk through seeds {' '.join(map(str, seeds))} to {out}")
    return 0


def cmd_style_mix(args: argparse.Namespace) -> int:
    from gankit.sampling import load_generator, write_style_mix
    from gankit.device import select_device

    rows, cols = (_expand(*_seed_ranges(groups, option), option) for groups, option in ((args.rows, "--rows"),
                                                                                         (args.cols, "--cols")))
    gen = load_generator(args.source, ema=not args.no_ema, device=select_device(args.device, "--device"))
    out = write_style_mix(gen, rows, cols, args.out, coarse=args.coarse, truncation=args.truncation,
                          class_index=args.class_index, scale=_scale(args, gen))
    print(f"gankit: wrote a {len(rows)} x {len(cols)} style-mixing grid to {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json
    import warnings

    from gankit.checkpoint import atomic_write_bytes
    from gankit.metrics.api import calculate_metrics, format_table
    from gankit.device import select_device

    game = _translation_game(args.source)
    if game:
        _refuse_for_translation(args, game, EVAL_GAN_OPTIONS, "it is measured against its task's known targets "
                                "on the held-out images")
        return _eval_translation(args)
    if args.ref is None:
        raise ValueError("eval: --ref names the reference dataset the samples are measured against")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning  # one "gankit: warning:" line, not Python's two-line format
        result = calculate_metrics(args.source, args.ref, metrics=metrics, num=args.num or 10_000,
                                   extractor=args.extractor, split=args.split or "train", root=args.root or "data",
                                   seed=args.seed or 0, cache_dir=args.cache_dir,
                                   device=select_device(args.device, "--device"), num_reference=args.num_reference,
                                   download=args.download, ema=not args.no_ema)
    info = result["info"]
    against = f"{info['reference']} ({info['split']}, {info['num_reference']} items)" if info["num_reference"] \
        else info["reference"]
    features = f", features {info['extractor']} v{info['extractor_version']}" if info["extractor"] else ""
    print(f"gankit: {info['num']} samples of {info['samples']} vs {against}{features}")
    print(format_table(result))
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(result, indent=2, default=_json_value).encode())
        print(f"gankit: wrote {args.json}")
    return 0


def _translation_game(source: str) -> str | None:
    """The game of ``source`` when it is a run directory or checkpoint of an image-to-image game, else None
    (a noise -> image run: gan, bigan)."""
    from gankit.checkpoint import read_meta, resolve
    from gankit.sampling import draws_from_noise

    path = Path(source)
    if not (path.is_dir() and (path / "checkpoints").is_dir()) and path.suffix != ".safetensors":
        return None
    try:
        meta = read_meta(resolve(path))
    except Exception:  # not a checkpoint: the sample-metrics path reports what is wrong with it
        return None
    return None if not isinstance(meta, dict) or draws_from_noise(meta) else str(meta["game"])


# options of noise -> image runs that a translation run has no use for: (attribute, option, its default)
SAMPLE_GAN_OPTIONS = (("seed", "--seed", None), ("batch_size", "--batch-size", None), ("no_ema", "--no-ema", False),
                      ("class_index", "--class", None), ("truncation", "--truncation", None), ("drs", "--drs", None),
                      ("drs_calibrate", "--drs-calibrate", 0), ("density_filter", "--density-filter", None))
EVAL_GAN_OPTIONS = (("ref", "--ref", None), ("metrics", "--metrics", None), ("num", "--num", None),
                    ("split", "--split", None), ("num_reference", "--num-reference", None),
                    ("extractor", "--extractor", None), ("root", "--root", None), ("seed", "--seed", None),
                    ("no_ema", "--no-ema", False), ("cache_dir", "--cache-dir", None),
                    ("download", "--download", False))


def _refuse_for_translation(args: argparse.Namespace, game: str, options: tuple[tuple[str, str, Any], ...],
                            why: str) -> None:
    """A noise -> image option given for a translation run would be silently ignored: refuse it by name."""
    given = [flag for attr, flag, default in options
             if getattr(args, attr) != default or type(getattr(args, attr)) is not type(default)]  # --class 0 too
    if given:
        raise ValueError(f"{given[0]} does not apply to {args.source}, a {game} run: {why}")


def _eval_translation(args: argparse.Namespace) -> int:
    import json

    from gankit.checkpoint import atomic_write_bytes
    from gankit.device import select_device
    from gankit.translation.evaluate import evaluate, format_table, load_translator

    translator = load_translator(args.source, select_device(args.device, "--device"))
    result = evaluate(translator)
    info = result["info"]
    print(f"gankit: {translator.game} {info['task']} run at step {info['step']} on {info['num']} held-out digits, "
          "features mnist-cnn")
    print(format_table(result))
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(result, indent=2).encode())
        print(f"gankit: wrote {args.json}")
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from gankit.device import select_device
    from gankit.translation.evaluate import load_translator
    from gankit.translation.files import check_output, read_inputs, write_outputs

    check_output(args.out)  # before the run is loaded: a wrong --out costs nothing
    device = select_device(args.device, "--device")
    translator = load_translator(args.source, device)
    images, masks, names = read_inputs(args.input, translator.input_shape(args.direction))
    out = translator.translate(images.to(device), None if masks is None else masks.to(device), args.direction)
    path = write_outputs(out, args.out, names)
    print(f"gankit: translated {len(out)} images ({translator.game} {translator.task.name}, {args.direction}) "
          f"to {path}")
    return 0


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    print(f"gankit: warning: {message}", file=sys.stderr)


def cmd_classifier(args: argparse.Namespace) -> int:
    from gankit.metrics.classifier import save_classifier, train_for_dataset

    model, info = train_for_dataset(args.data, root=args.root, download=args.download, epochs=args.epochs,
                                    seed=args.seed, limit=args.limit)
    out = save_classifier(model, info, args.out or Path("classifiers") / f"{args.data}.safetensors")
    print(f"gankit: {args.data} classifier: held-out accuracy {info['test_accuracy']:.2%} on "
          f"{info['test_images']} images ({info['train_images']} trained on, {args.epochs} epochs)")
    print(f"gankit: wrote {out}; evaluate with --extractor classifier:{out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from gankit.bench import DRSOptions, bench

    _check_rejection(args)
    drs = DRSOptions(args.drs, args.drs_calibrate) if args.drs is not None else None
    bench(args.names, seeds=args.seeds, time_scale=args.time_scale,
          configs_dir=Path(args.configs) if args.configs else None, out_dir=Path(args.out_dir),
          json_out=Path(args.json) if args.json else None, overrides=args.overrides, drs=drs,
          density=args.density_filter)
    return 0


def cmd_playground(args: argparse.Namespace) -> int:
    from gankit.bench import default_configs_dir
    from gankit.playground import serve

    serve(args.host, args.port, args.open, Path(args.configs) if args.configs else default_configs_dir(),
          allow_hosts=args.allow_hosts)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from gankit.config import describe, load
    from gankit.models.registry import check_model_specs, describe_model
    from gankit.presets import resolve_config

    if args.model is not None:
        for role, rows in describe_model(args.model):
            print(f"model.{role}: {{name: {args.model}, ...}}")
            for key, default, kind, meaning in rows:
                print(f"  {key:18} {default!r:20} {kind:12} {meaning}")
        return 0
    if args.config is None:
        for key, default, help_text in describe():
            print(f"{key:32} {default!r:24} {help_text}")
        return 0
    cfg = load(resolve_config(args.config), args.overrides)
    check_model_specs(cfg.model, cfg.game.name)  # what `train` would refuse, refused here too
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0


def _silence_stdout() -> None:
    """The reader of our output has gone (``gankit init --list | head``): point stdout at devnull, so that
    neither the rest of the output nor Python's flush at exit reports the broken pipe (the Python docs' way)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (captured): nothing more will reach a pipe
        pass


def main(argv: Sequence[str] | None = None) -> int:
    from gankit.checkpoint import CheckpointError
    from gankit.config import ConfigError
    from gankit.cli_tools import COMMANDS
    from gankit.data import DataError
    from gankit.export import ExportError
    from gankit.metrics.errors import EvalError
    from gankit.train import TrainError

    args = build_parser().parse_args(argv)
    from gankit.plugins import PluginError, import_module

    commands = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "classifier": cmd_classifier,
                "bench": cmd_bench, "config": cmd_config, "interpolate": cmd_interpolate,
                "style-mix": cmd_style_mix, "playground": cmd_playground, "translate": cmd_translate, **COMMANDS}
    try:
        seed = getattr(args, "seed", None)  # sample, eval, classifier: torch refused 2**70 as "Overflow ..."
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise ValueError(f"--seed {seed}: seeds are 0..{MAX_SEED} (2**63 - 1)")
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one "gankit: warning:" line, not Python's two-line format
            for module in args.imports or []:
                import_module(module)
            code = commands[args.command](args)
        sys.stdout.flush()  # a reader that stopped early (| head) shows here, not in Python's exit-time flush
        return code
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except (ConfigError, DataError, CheckpointError, TrainError, EvalError, ExportError, PluginError,
            ValueError) as exc:
        print(f"gankit: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a write that failed (disk full, read-only): one line naming the file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"gankit: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gankit: aborted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
