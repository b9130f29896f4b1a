"""gankit lesson: every lesson runs by name with a tiny budget and writes a report whose every number is a
measured figure of its report.json; the reading follows the numbers; commands train what the lesson trained."""
from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from gankit.cli import build_parser, main
from gankit.lessons import LESSONS, get_lesson, lesson, playground_fragment, plan
from gankit.lessons.measures import aggregate, fmt
from gankit.lessons.reading import compare, reading
from gankit.lessons.runner import QUIET, RUN_OVERHEAD_S

TINY = ("train.batch_size=8",)  # every run: a smaller batch (a multiple of model.pack 2)
NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?![\w])")


def numeric_leaves(node) -> list[float]:
    if isinstance(node, bool):
        return []
    if isinstance(node, (int, float)):
        return [float(node)] if math.isfinite(node) else []
    if isinstance(node, dict):
        return [v for x in node.values() for v in numeric_leaves(x)]
    if isinstance(node, list):
        return [v for x in node for v in numeric_leaves(x)]
    return []


def shown_numbers(md: str, report: dict) -> list[str]:
    """The numbers report.md states outside code, links and the lesson's declared wording."""
    text = re.sub(r"```.*?```", " ", md, flags=re.S)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"!?\[[^\]]*\]\([^)]*\)", " ", text)
    declared = [report["title"], report["question"], report["tutorial"], *report["labels"].values(),
                *(r["label"] for r in report["runs"])]
    for words in sorted(declared, key=len, reverse=True):
        text = text.replace(words, " ")
    return NUMBER.findall(text)


def is_a_figure(number: str, figures: list[float]) -> bool:
    shown = number.replace(",", "")
    places = len(shown.split(".")[1]) if "." in shown else 0
    return any(abs(round(v, places) - float(shown)) < 0.5 * 10 ** -places + 1e-9 for v in figures)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """Every lesson at 0.5 s per run, one seed (the ring's two, for a spread), 50 samples measured."""
    root = tmp_path_factory.mktemp("lessons")
    out = {}
    for name in LESSONS:
        out[name] = lesson(name, root / name, seeds=2 if name == "mode-collapse-ring" else 1, seconds_per_run=0.5,
                           samples=50, log=lambda line: None, extra=TINY)
    return out


@pytest.mark.parametrize("name", list(LESSONS))
def test_every_lesson_reports_only_measured_figures(reports, name):
    md_path = reports[name]
    md, report = md_path.read_text(), json.loads((md_path.parent / "report.json").read_text())
    head = md.split("## Reading")[0]
    assert re.search(r"!\[[^\]]+\]\(bars\.png\)", head) and "![" in head.split("**Question.**")[1]
    for section in ("## Reading", "## Measured", "## What was run"):
        assert section in md
    for picture in re.findall(r"\]\((\w+\.png)\)", md):
        assert (md_path.parent / picture).read_bytes()[:4] == b"\x89PNG"
    figures = numeric_leaves(report)
    numbers = shown_numbers(md, report)
    assert numbers, "the report states no figure"
    stray = [n for n in numbers if not is_a_figure(n, figures)]
    assert not stray, f"numbers in report.md that are no figure of report.json: {stray}"
    assert report["reading"] and all(s in md for s in report["reading"])
    parser = build_parser()
    for run in report["runs"]:
        for s in run["seeds"]:
            argv = shlex.split(s["command"])
            assert argv[:2] == ["gankit", "train"] and parser.parse_args(argv[1:]).command == "train"
            rows = [json.loads(line) for line in (md_path.parent / "runs" / f"{run['key']}-s{s['seed']}" /
                                                  "metrics.jsonl").read_text().splitlines()]
            assert s["steps"] == ([r["step"] for r in rows if "loss_d" in r] or [0])[-1]
    assert set(report["figures"]) == set(get_lesson(name).runs)


def test_gradient_norms_and_spreads_reach_the_report(reports):
    bn = json.loads((reports["batchnorm"].parent / "report.json").read_text())
    assert all(bn["figures"][k]["grad_norm_g"]["mean"] > 0 for k in bn["figures"]
               if bn["figures"][k]["grad_norm_g"]["n"])
    ring = json.loads((reports["mode-collapse-ring"].parent / "report.json").read_text())
    assert all(ring["figures"][k]["modes"]["n"] == 2 and ring["figures"][k]["modes"]["std"] is not None
               for k in ring["figures"])
    assert "## Play it live" in reports["mode-collapse-ring"].read_text()


def test_a_command_trains_the_config_the_lesson_trained(reports, tmp_path, monkeypatch):
    report = json.loads((reports["mode-collapse-ring"].parent / "report.json").read_text())
    run = report["runs"][1]
    argv = shlex.split(run["seeds"][0]["command"])[1:]
    argv[argv.index("--run-dir") + 1] = str(tmp_path / "again")
    monkeypatch.chdir(tmp_path)
    assert main([*argv, *QUIET]) == 0
    lesson_cfg = yaml.safe_load((reports["mode-collapse-ring"].parent / "runs" / f"{run['key']}-s0" /
                                 "config.yaml").read_text())
    again = yaml.safe_load((tmp_path / "again" / "config.yaml").read_text())
    assert again == lesson_cfg


def agg(*values):
    return aggregate(list(values))


def test_the_reading_follows_the_numbers():
    labels = {"a": "baseline", "b": "remedy"}
    whats = {"fid": "FID", "steps": "steps"}

    def read(fid_b, fid_a=(100.0, 102.0)):
        figures = {"a": {"fid": agg(*fid_a), "steps": agg(10, 10)}, "b": {"fid": agg(*fid_b), "steps": agg(10, 10)}}
        return reading(labels, figures, ["fid", "steps"], whats)

    clear, comparisons = read((50.0, 52.0))
    assert any("remedy (51.00 ± 1.414) beat baseline (101.0 ± 1.414) by 50.00" in s for s in clear)
    assert comparisons[0]["verdict"] == "better" and "ahead of every other run" in clear[0]
    worse, _ = read((150.0, 152.0))
    assert any("did worse than baseline" in s for s in worse)
    same, comparisons = read((99.0, 104.0))
    assert comparisons[0]["verdict"] == "within"
    assert any("within the seeds' spread" in s and "no difference at this budget" in s for s in same)
    assert "not clear of" in same[0]
    one, _ = read((50.0,), (100.0,))
    assert any("one seed" in s for s in one)
    assert compare(agg(1.0, 1.2), agg(3.0, 3.1), None)["verdict"] == "lower"  # a descriptive measure
    assert compare(agg(None, None), agg(3.0, 3.1), "lower")["verdict"] == "missing"
    lines, _ = reading(labels, {"a": {"fid": agg(100.0, 101.0)}, "b": {"fid": agg(None, 90.0)}}, ["fid"],
                       {"fid": "FID"}, {"a": 0, "b": 1}, 2)
    assert any("remedy diverged in 1 of 2 seeds" in s for s in lines)
    assert fmt(1234.5678) == "1,234.6" and fmt(0.012345) == "0.01235" and fmt(3.0, True) == "3"


def test_default_budgets_fit_ten_minutes_and_quick_two():
    for item in LESSONS.values():
        runs = len(item.runs)
        default, quick = plan(item), plan(item, quick=True)
        assert runs * default.seeds * (default.seconds_per_run + RUN_OVERHEAD_S) <= 600 + 1
        assert runs * quick.seeds * (quick.seconds_per_run + RUN_OVERHEAD_S) <= 120 + 1 or quick.seconds_per_run == 1
        assert plan(item, minutes=20).seconds_per_run > default.seconds_per_run
        assert item.measures[0] in ("fid", "modes", "grad_norm_g_early")


def test_unknown_lesson_and_game_are_one_error_line(capsys):
    assert main(["lesson", "batchnrm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gankit: error: unknown lesson 'batchnrm'; did you mean 'batchnorm'?") and err.count("\n") == 1
    assert main(["lesson", "batchnorm", "--play", "r1"]) == 2
    assert "no 2D game" in capsys.readouterr().err
    assert main(["lesson", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in LESSONS)


def test_playground_games_are_valid_page_settings():
    from gankit.playground.settings import Settings

    games = [(n, k) for n, item in LESSONS.items() for k in item.playground]
    assert ("mode-collapse-ring", "plain") in games and ("mode-collapse-ring", "r1") in games
    for name, key in games:
        fragment = playground_fragment(name, key)
        changes = {k: json.loads(unquote(v)) for k, v in (part.split("=", 1) for part in fragment.split("&"))}
        Settings.for_2d().check(changes)  # raises ConfigError on a key or value the page refuses
        assert key in get_lesson(name).runs
