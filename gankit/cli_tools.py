"""Subcommands for comparing, sharing and getting started: compare, export, push, init, zoo, encode, lesson.
``gankit.cli`` registers them."""
from __future__ import annotations

import argparse
from pathlib import Path

from gankit.cli_args import DEVICE_HELP, _json_value, _positive_float, _positive_int


def add_parsers(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("export", help="write a trained generator as ONNX, TorchScript or a Hugging Face folder")
    x.add_argument("source", help="run directory, checkpoint file, generator folder or zoo:NAME")
    x.add_argument("--format", required=True, choices=("onnx", "torchscript", "hf"),
                   help="onnx: a .onnx graph with a dynamic batch; torchscript: a traced .pt for torch.jit.load; "
                        "hf: a folder (config.json, model.safetensors, README.md model card, samples.png)")
    x.add_argument("--out", required=True, help="output file (onnx, torchscript) or folder (hf)")
    x.add_argument("--metrics", metavar="JSON", help="hf: a `gankit eval --json` result for the model card "
                   "(default: none, the card says not measured)")
    x.add_argument("--no-ema", action="store_true", help="export the raw generator, not its EMA")
    x.add_argument("--force", action="store_true", help="hf: overwrite the files of an earlier export in --out "
                   "(default: refuse)")

    p = sub.add_parser("push", help="upload a trained generator to the Hugging Face Hub as an hf folder")
    p.add_argument("source", help="run directory, checkpoint file, generator folder or zoo:NAME")
    p.add_argument("repo_id", help="Hub repository, e.g. your-name/mnist-gan (created when missing)")
    p.add_argument("--metrics", metavar="JSON", help="a `gankit eval --json` result for the model card (default: none)")
    p.add_argument("--private", action="store_true", help="create the repository as private (default public)")
    p.add_argument("--no-ema", action="store_true", help="upload the raw generator, not its EMA")

    i = sub.add_parser("init", help="copy a preset config (see `gankit init --list`) into a folder to edit")
    i.add_argument("preset", nargs="?", help="preset name, e.g. mnist_dcgan or folder_dcgan")
    i.add_argument("dir", nargs="?", default=".", help="destination folder (default: the current one)")
    i.add_argument("--list", action="store_true", help="list the presets with their first comment line")
    i.add_argument("--force", action="store_true", help="overwrite an existing file (default: refuse)")

    z = sub.add_parser("zoo", help="list the pretrained generators shipped with gankit (gankit sample zoo:NAME)")
    z.add_argument("--markdown", action="store_true", help="print the README's zoo table instead")

    r = sub.add_parser("compare", help="runs side by side: fresh samples of each in one PNG, their metrics in "
                       "one table")
    r.add_argument("runs", nargs="+", metavar="RUN", help="two or more run directories")
    r.add_argument("--out", help="write every run's samples side by side, labelled with its name and step, to this "
                   ".png (default: the table only)")
    r.add_argument("--samples", type=_positive_int, metavar="N", help="samples of each run in --out, drawn fresh "
                   "from its latest checkpoint (default 64 images, or 2500 2D points)")
    r.add_argument("--seed", type=int, default=0, help="latent seed of every run's samples (default 0: runs with "
                   "the same latent size get the same latents)")
    r.add_argument("--eval", action="store_true", help="also measure every run the same way, as gankit eval does "
                   "(FID, KID, precision/recall, ... on fresh samples)")
    r.add_argument("--num", type=_positive_int, help="--eval: samples of each run (default 10000)")
    r.add_argument("--ref", help="--eval: reference dataset (default: the runs' own data, which must be the same)")
    r.add_argument("--metrics", help="--eval: comma-separated, as gankit eval's --metrics (default: its default)")
    r.add_argument("--json", help="write every run's values (and --eval's results) to this JSON file "
                   "(default: print only)")
    r.add_argument("--no-ema", action="store_true", help="sample the raw generators, not their EMA")
    r.add_argument("--device", default="auto", help=DEVICE_HELP)

    c = sub.add_parser("encode", help="bigan runs: images -> their latents E(x) in an .npz (and a grid of x | G(E(x)))")
    c.add_argument("source", help="run directory or checkpoint file of a bigan run")
    c.add_argument("--input", required=True, help="a folder of images (searched recursively) or an .npz with uint8 "
                   "`images` N x H x W [x C], at the run's size")
    c.add_argument("--out", default="latents.npz", help="the .npz to write: `latents` float32 N x latent_dim and "
                   "`names` (each input's path, or its index in the .npz) (default latents.npz)")
    c.add_argument("--grid", metavar="PNG", help="also write rows of the first inputs, each row followed by "
                   "their reconstructions G(E(x)), to this .png (default: none)")
    c.add_argument("--device", default="auto", help=DEVICE_HELP)
    le = sub.add_parser("lesson", help="run a small experiment that answers a tutorial's question, then write its "
                        "report (gankit lesson --list)")
    le.add_argument("name", nargs="?", help="the lesson, e.g. batchnorm (see --list)")
    le.add_argument("--list", action="store_true", help="list the lessons with their runs and default budget")
    le.add_argument("--minutes", type=_positive_float, help="the whole lesson's budget on one CPU core, training and "
                    "measuring (default: the lesson's, about 10; --quick: 2)")
    le.add_argument("--quick", action="store_true", help="a 2-minute version, measured on 1,000 samples")
    le.add_argument("--seeds", type=_positive_int, help="seeds per run (default: the lesson's, 2 or 3); the "
                    "report's spread is over them")
    le.add_argument("--out", help="folder of the runs and the report (default runs/lessons/NAME)")
    le.add_argument("--play", metavar="RUN", help="instead of running the lesson, open its 2D game RUN in "
                    "gankit playground, ready to press Play (the lessons on the ring have one; default: none, run "
                    "the lesson)")
    le.add_argument("--seconds-per-run", type=_positive_float, metavar="S", help="train every run for S seconds "
                    "instead (default: --minutes shared by the runs x seeds)")
    le.add_argument("--num", type=_positive_int, metavar="N", help="samples each run is measured on (default 2,000 "
                    "digits or 2,500 ring points; --quick 1,000)")


def cmd_export(args: argparse.Namespace) -> int:
    from gankit.export import export, read_metrics
    from gankit.sampling import load_generator

    metrics = read_metrics(args.metrics)
    gen = load_generator(args.source, ema=not args.no_ema, device="cpu")
    out, diff = export(gen, args.format, args.out, force=args.force, metrics=metrics)
    checked = f"; outputs match PyTorch to {diff:.1e} on a batch of 5" if diff is not None else ""
    print(f"gankit: exported the {'EMA ' if gen.is_ema else ''}generator at step {gen.step} as {args.format} "
          f"to {out}{checked}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from gankit.export import push, read_metrics
    from gankit.sampling import load_generator

    metrics = read_metrics(args.metrics)
    gen = load_generator(args.source, ema=not args.no_ema, device="cpu")
    url = push(gen, args.repo_id, metrics=metrics, private=args.private)
    print(f"gankit: pushed the generator at step {gen.step} to {url}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from gankit.presets import copy_preset, list_presets

    if args.list or args.preset is None:
        for name, summary in list_presets():
            print(f"{name:24} {summary}")
        return 0
    out = copy_preset(args.preset, Path(args.dir), force=args.force)
    print(f"gankit: wrote {out}; train it with: gankit train {out}")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from gankit.generator_folder import zoo_entry, zoo_names

    for name in zoo_names():
        entry = zoo_entry(name)
        scores = ", ".join(f"{k} {v:.4g}" for k, v in entry.get("metrics", {}).items())
        if args.markdown:
            print(f"| `zoo:{name}` | {entry.get('what', '')} | {scores} | {entry['bytes'] / 1e6:.2f} MB | "
                  f"`{entry.get('trained_with', entry.get('config', '?'))}` ({entry.get('steps', 0):,} steps) |")
        else:
            print(f"zoo:{name:14} {entry.get('what', ''):44} {entry['bytes'] / 1e6:5.2f} MB  {scores}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import json

    from gankit.checkpoint import atomic_write_bytes
    from gankit.compare import compare
    from gankit.device import select_device

    if len(args.runs) < 2:
        raise ValueError(f"compare needs at least two runs, got {len(args.runs)}")
    for option in ("num", "ref", "metrics"):
        if getattr(args, option) is not None and not args.eval:
            raise ValueError(f"--{option} sets how --eval measures the runs; add --eval")
    if args.out is not None and Path(args.out).suffix.lower() != ".png":
        raise ValueError(f"--out must end in .png, got {args.out!r}")
    evaluate_with = None
    if args.eval:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
        evaluate_with = {"ref": args.ref, "metrics": metrics, "num": args.num or 10_000, "seed": args.seed}
    result = compare(args.runs, args.out, num=args.samples, seed=args.seed, evaluate_with=evaluate_with,
                     ema=not args.no_ema, device=select_device(args.device, "--device"))
    if result["grid"] is not None:
        print(f"gankit: wrote fresh samples (seed {args.seed}) of {len(args.runs)} runs side by side to "
              f"{result['grid']}")
    if args.eval:
        info = result["runs"][0]["eval"]["info"]
        features = f", features {info['extractor']} v{info['extractor_version']}" if info["extractor"] else ""
        print(f"gankit: --eval: {info['num']} samples of each run vs {info['reference']} ({info['split']}){features}")
    print(result["table"])
    if args.json:
        body = {"runs": result["runs"], "grid": result["grid"]}
        atomic_write_bytes(Path(args.json), json.dumps(body, indent=2, default=_json_value).encode())
        print(f"gankit: wrote {args.json}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import io

    import numpy as np

    from gankit.checkpoint import atomic_write_bytes
    from gankit.device import select_device
    from gankit.games.bigan import load_bigan
    from gankit.translation.files import read_inputs

    out = Path(args.out)
    if out.suffix.lower() != ".npz" or out.is_dir():
        raise ValueError(f"--out must name an .npz file, got {args.out!r}")
    if args.grid is not None and Path(args.grid).suffix.lower() != ".png":
        raise ValueError(f"--grid must end in .png, got {args.grid!r}")
    if not Path(args.input).exists():
        raise ValueError(f"--input {args.input}: no such file or directory")
    run = load_bigan(args.source, select_device(args.device, "--device"))
    images, _, names = read_inputs(args.input, run.shape)
    z = run.encode(images)
    buf = io.BytesIO()
    np.savez(buf, latents=z.numpy().astype(np.float32), names=np.array(names, dtype=str))
    atomic_write_bytes(out, buf.getvalue())
    print(f"gankit: wrote the latents ({z.shape[1]} each) of {len(z)} images, E of the run at step {run.step}, "
          f"to {out}")
    if args.grid is not None:
        grid = run.write_grid(images, args.grid)
        print(f"gankit: wrote inputs | reconstructions G(E(x)) to {grid}")
    return 0


def cmd_lesson(args: argparse.Namespace) -> int:
    from gankit.lessons import LESSONS, get_lesson, lesson, playground_fragment, plan

    if args.list or args.name is None:
        for name, item in LESSONS.items():
            budget = plan(item)
            print(f"{name:22} {item.title} ({len(item.runs)} runs x {budget.seeds} seeds, ~{item.minutes:g} min; "
                  f"tutorial {item.tutorial.split(' ')[0]})")
        return 0
    get_lesson(args.name)  # an unknown name: one error line with a suggestion, before anything runs
    if args.play is not None:
        from gankit.bench import default_configs_dir
        from gankit.playground import serve

        fragment = playground_fragment(args.name, args.play)
        serve(open_browser=True, configs_dir=default_configs_dir(), fragment=fragment)
        return 0
    report = lesson(args.name, args.out, minutes=args.minutes, seeds=args.seeds, quick=args.quick,
                    seconds_per_run=args.seconds_per_run, samples=args.num)
    print(f"gankit: wrote {report} (figures in {report.parent / 'report.json'})")
    return 0


COMMANDS = {"compare": cmd_compare, "export": cmd_export, "push": cmd_push, "init": cmd_init, "zoo": cmd_zoo,
            "encode": cmd_encode, "lesson": cmd_lesson}
