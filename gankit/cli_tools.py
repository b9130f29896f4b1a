"""Subcommands for sharing and getting started: export, push, init, zoo. ``gankit.cli`` registers them."""
from __future__ import annotations

import argparse
from pathlib import Path


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
    from gankit.hub import zoo_entry, zoo_names

    for name in zoo_names():
        entry = zoo_entry(name)
        scores = ", ".join(f"{k} {v:.4g}" for k, v in entry.get("metrics", {}).items())
        if args.markdown:
            print(f"| `zoo:{name}` | {entry.get('what', '')} | {scores} | {entry['bytes'] / 1e6:.2f} MB | "
                  f"`{entry.get('trained_with', entry.get('config', '?'))}` ({entry.get('steps', 0):,} steps) |")
        else:
            print(f"zoo:{name:14} {entry.get('what', ''):44} {entry['bytes'] / 1e6:5.2f} MB  {scores}")
    return 0


COMMANDS = {"export": cmd_export, "push": cmd_push, "init": cmd_init, "zoo": cmd_zoo}
