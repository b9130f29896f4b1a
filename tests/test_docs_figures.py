"""Figures the docs quote from results JSON files are the files' values (scripts/check_figures.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from check_figures import DOCS, check, lookup, matches  # noqa: E402


def test_every_cited_figure_in_the_docs_is_its_jsons_value():
    paths = sorted({p for pattern in DOCS for p in ROOT.glob(pattern)})
    count, problems = check(paths)
    assert not problems, "\n".join(problems)
    assert count >= 28  # the README's quality tables at least


def test_a_drifted_figure_a_missing_key_and_a_missing_file_are_reported(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"runs": [{"name": "a", "fid": 21.44, "s": 300.0},
                                                          {"name": "b", "fid": 9.0, "s": 60}]}))
    (tmp_path / "doc.md").write_text(
        '| ok | [21.4](r.json "runs.name=a.fid") | **[9](r.json "runs.s=60.fid")** | [21](r.json "runs.0.fid") |\n'
        'drifted [19.4](r.json "runs.name=a.fid"), missing [1](r.json "runs.name=c.fid"), '
        '[2](r.json "runs.name=a.kid"), [3](gone.json "x")\n')
    count, problems = check([tmp_path / "doc.md"])
    assert count == 7 and len(problems) == 4
    assert "doc.md:2: 19.4 but r.json 'runs.name=a.fid' is 21.44" in problems[0]
    assert "matches 0 elements" in problems[1] and "no 'kid' here" in problems[2] and "gone.json" in problems[3]


@pytest.mark.parametrize("text, value, ok", [
    ("21.4", 21.4424, True), ("21.44", 21.4424, True), ("21.5", 21.4424, False), ("5,541", 5541, True),
    ("**0.12**", 0.1230, True), ("86 %", 0.8597, True), ("0.13", 0.1230, False), ("cpu", "cpu", True),
])
def test_a_figure_matches_its_value_at_the_shown_precision(text, value, ok):
    assert matches(text, value) is ok


def test_selectors_pick_one_element():
    data = {"rows": [{"run": "x", "seconds": 60.0, "fid": 1.0}, {"run": "x", "seconds": 300.0, "fid": 2.0}]}
    assert lookup(data, "rows.run=x&seconds=300.fid") == 2.0
    with pytest.raises(KeyError, match="matches 2 elements"):
        lookup(data, "rows.run=x.fid")
