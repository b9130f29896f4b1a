"""Check that every figure the docs quote from a results JSON is the JSON's value, so docs cannot drift.

    python scripts/check_figures.py            # README.md, README.zh-CN.md, docs/*.md, benchmarks/RESULTS.md

A cited figure is a Markdown link from the number to its JSON, with the value's place in the JSON as
the link's title:

    [21.4](benchmarks/results/own_folder_300s.json "runs.name=folder.fid")

The place is dot-separated: a key of an object, an index of a list, or ``field=value`` (several joined
with ``&``) choosing the one element of a list whose fields match. The figure must equal the value
rounded to the figure's decimals (``**bold**``, thousands commas and a trailing ``%`` of a fraction are
allowed). Links are resolved against the Markdown file's folder, as a reader's click would.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CITED = re.compile(r'\[(?P<text>[^\]\n]+)\]\((?P<path>[^)\s]+\.json) "(?P<place>[^"]+)"\)')
DOCS = ("README.md", "README.zh-CN.md", "docs/*.md", "benchmarks/RESULTS.md")


def lookup(data: Any, place: str) -> Any:
    """The value at ``place`` (see the module docstring) in parsed JSON; KeyError saying where it failed."""
    node = data
    for part in place.split("."):
        if isinstance(node, list) and "=" in part:
            wanted = dict(cond.split("=", 1) for cond in part.split("&"))
            found = [e for e in node if isinstance(e, dict) and all(same(e.get(k), v) for k, v in wanted.items())]
            if len(found) != 1:
                raise KeyError(f"{part!r} matches {len(found)} elements, not one")
            node = found[0]
        elif isinstance(node, list):
            if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                raise KeyError(f"{part!r} is not an index of a list of {len(node)}")
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(f"no {part!r} here")
    return node


def same(value: Any, wanted: str) -> bool:
    """A selector's ``field=value``: 300 matches 300 and 300.0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(wanted) == value
        except ValueError:
            return False
    return str(value) == wanted


def matches(text: str, value: Any) -> bool:
    shown = text.strip().strip("*").replace(",", "")
    percent = shown.endswith("%")
    shown = shown.rstrip("%").strip()
    if not re.fullmatch(r"-?\d+(\.\d+)?", shown) or isinstance(value, bool) or not isinstance(value, (int, float)):
        return shown == str(value)
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    value = value * 100 if percent else value
    return abs(round(value, decimals) - float(shown)) < 0.5 * 10 ** -decimals + 1e-9


def check(paths: list[Path]) -> tuple[int, list[str]]:
    """(figures checked, problems) over the Markdown files ``paths``."""
    count, problems = 0, []
    for md in paths:
        for number, line in enumerate(md.read_text().splitlines(), 1):
            for m in CITED.finditer(line):
                count += 1
                where = f"{md.relative_to(ROOT) if md.is_relative_to(ROOT) else md}:{number}"
                source = (md.parent / m["path"]).resolve()
                try:
                    value = lookup(json.loads(source.read_text()), m["place"])
                except (OSError, ValueError) as exc:
                    problems.append(f"{where}: {m['path']}: {exc}")
                    continue
                except KeyError as exc:
                    problems.append(f"{where}: {m['path']} {m['place']!r}: {exc.args[0]}")
                    continue
                if not matches(m["text"], value):
                    problems.append(f"{where}: {m['text']} but {m['path']} {m['place']!r} is {value!r}")
    return count, problems


def main() -> int:
    paths = sorted({p for pattern in DOCS for p in ROOT.glob(pattern)})
    count, problems = check(paths)
    for problem in problems:
        print(problem)
    print(f"check_figures: {count} cited figures, {len(problems)} wrong")
    return 1 if problems or not count else 0


if __name__ == "__main__":
    sys.exit(main())
