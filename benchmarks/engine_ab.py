"""Speed of the training step before and after a change of the engine, measured in one run: the same
throughput benchmark (benchmarks/throughput.py: gankit's step against a plain PyTorch loop of the same
networks, in one process) in two checkouts, alternating, so machine load hits both alike.

    python benchmarks/engine_ab.py --before ../before --presets seed004 mnist_dcgan --pairs 3 \\
        --json benchmarks/results/engine_ab.json

Each pair runs ``throughput.py`` of the ``--before`` checkout then of this one (the order flips every
pair), each with its own code on PYTHONPATH. The table gives per preset the median images/s of gankit's
step and its ratio to the plain loop measured beside it; after/before of those ratios is the change.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def throughput(checkout: Path, presets: list[str], threads: int, extra: list[str]) -> dict[str, dict]:
    """One run of ``checkout``'s throughput benchmark; results by preset."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.json"
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        cmd = [sys.executable, str(checkout / "benchmarks" / "throughput.py"), "--presets", *presets,
               "--threads", str(threads), "--tables", "loop", "--json", str(out), *extra]
        subprocess.run(cmd, cwd=checkout, env=env, check=True, stdout=subprocess.DEVNULL)
        rows = json.loads(out.read_text())["results"]
    return {r["preset"]: r for r in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the engine before the change")
    parser.add_argument("--presets", nargs="+", default=["seed004", "mnist_dcgan"])
    parser.add_argument("--pairs", type=int, default=3, help="before/after runs, alternating")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per throughput run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    extra = ["--rounds", str(args.rounds)]
    runs: dict[str, list[dict[str, dict]]] = {"before": [], "after": []}
    for pair in range(args.pairs):
        order = [("before", args.before.resolve()), ("after", ROOT)]
        for label, checkout in order if pair % 2 == 0 else order[::-1]:
            runs[label].append(throughput(checkout, args.presets, args.threads, extra))
    table = []
    print(f"{'preset':<14} {'before img/s':>13} {'after img/s':>12} {'before/plain':>13} {'after/plain':>12} "
          f"{'after/before':>13}")
    for preset in args.presets:
        row: dict[str, object] = {"preset": preset}
        for label in ("before", "after"):
            row[f"{label}_img_s"] = statistics.median(r[preset]["gankit_median"] for r in runs[label])
            row[f"{label}_vs_plain"] = statistics.median(r[preset]["ratio"] for r in runs[label])
        row["change"] = row["after_vs_plain"] / row["before_vs_plain"]
        table.append(row)
        print(f"{preset:<14} {row['before_img_s']:>13.0f} {row['after_img_s']:>12.0f} {row['before_vs_plain']:>13.3f} "
              f"{row['after_vs_plain']:>12.3f} {row['change']:>13.3f}")
    if args.json:
        args.json.write_text(json.dumps({"pairs": args.pairs, "threads": args.threads, "rows": table,
                                         "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
