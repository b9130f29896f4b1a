"""Speed of the training step before and after a change of the engine, measured in one run: the same
throughput benchmark (benchmarks/throughput.py: gankit's step against a plain PyTorch loop of the same
networks, in one process) in two checkouts, alternating, so machine load hits both alike.

    python benchmarks/engine_ab.py --before ../before --presets seed000 seed004 --pairs 3 \\
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


def summarise(runs: dict[str, list[dict[str, dict]]], presets: list[str]) -> list[dict[str, object]]:
    """Per preset: medians of gankit's images/s and of its ratio to the plain loop, with their ranges over the
    runs of each checkout (the spread says what counts as noise), and after/before of the median ratios."""
    table = []
    print(f"{'preset':<10} {'before img/s':>18} {'after img/s':>18} {'before/plain':>19} {'after/plain':>19} "
          f"{'after/before':>13}")
    for preset in presets:
        row: dict[str, object] = {"preset": preset}
        cells = []
        for label in ("before", "after"):
            speeds = [r[preset]["gankit_median"] for r in runs[label]]
            ratios = [r[preset]["ratio"] for r in runs[label]]
            row[f"{label}_img_s"], row[f"{label}_img_s_range"] = statistics.median(speeds), [min(speeds), max(speeds)]
            row[f"{label}_vs_plain"], row[f"{label}_vs_plain_range"] = statistics.median(ratios), [min(ratios),
                                                                                                  max(ratios)]
            cells += [f"{row[f'{label}_img_s']:.0f} ({min(speeds):.0f}-{max(speeds):.0f})",
                      f"{row[f'{label}_vs_plain']:.3f} ({min(ratios):.2f}-{max(ratios):.2f})"]
        row["change"] = row["after_vs_plain"] / row["before_vs_plain"]
        row["img_s_change"] = row["after_img_s"] / row["before_img_s"]
        table.append(row)
        print(f"{preset:<10} {cells[0]:>18} {cells[2]:>18} {cells[1]:>19} {cells[3]:>19} {row['change']:>13.3f}")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the engine before the change")
    parser.add_argument("--presets", nargs="+", default=["seed000", "seed002", "seed004"],
                        help="presets the plain loop can run (ns or minimax objectives)")
    parser.add_argument("--pairs", type=int, default=3, help="before/after runs, alternating")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per throughput run")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--summarise", type=Path, default=None, help="print the table of an earlier --json")
    args = parser.parse_args(argv)
    if args.summarise:
        saved = json.loads(args.summarise.read_text())
        summarise(saved["runs"], [r["preset"] for r in saved["rows"]])
        return 0
    extra = ["--rounds", str(args.rounds)]
    runs: dict[str, list[dict[str, dict]]] = {"before": [], "after": []}
    for pair in range(args.pairs):
        order = [("before", args.before.resolve()), ("after", ROOT)]
        for label, checkout in order if pair % 2 == 0 else order[::-1]:
            runs[label].append(throughput(checkout, args.presets, args.threads, extra))
    table = summarise(runs, args.presets)
    if args.json:
        args.json.write_text(json.dumps({"pairs": args.pairs, "threads": args.threads, "rows": table,
                                         "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
