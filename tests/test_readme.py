"""Every example in the README runs as written, with tiny budgets: the shell blocks in order in one
working directory (a later block samples the run an earlier one trained), then the Python blocks."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
from PIL import Image

from gankit.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
TINY_TRAIN = ["--set", "train.batch_size=16", "log.progress=false", "log.tensorboard=false", "log.sample_every=0",
              "train.device=cpu"]
SKIPPED = ("pip ", "bash scripts/", "gankit push ")  # installs, and the upload that needs an account


# the tutorials' path (docs/learn.md) and the Chinese pages: their commands run as the README's do
LEARN_PAGES = ("docs/learn.md", "docs/learn.zh-CN.md", "README.zh-CN.md")
TINY_LESSON = ["--seconds-per-run", "0.3", "--num", "50", "--seeds", "1"]  # a lesson in seconds


def blocks(language: str, text: str = README) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def commands(text: str = README) -> list[str]:
    lines = []
    for block in blocks("bash", text):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#") and not line.startswith(SKIPPED):
                lines.append(line)
    return lines


def tiny(argv: list[str]) -> list[str]:
    """The command with a budget of a few steps and few samples."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--max-seconds":
            i += 2
            continue
        if argv[i] in ("--steps", "--num") and argv[0] in ("train", "sample", "eval", "compare"):
            out += [argv[i], str(min(int(argv[i + 1]), 4 if argv[i] == "--steps" else 600))]
            i += 2
            continue
        out.append(argv[i])
        i += 1
    if out[0] == "train":
        out = out + ([] if "--steps" in out else ["--steps", "2"]) + TINY_TRAIN
    if out[0] == "lesson" and not {"--list", "--play"} & set(out):
        out = [a for a in out if a != "--quick"] + TINY_LESSON
    return out


def test_readme_has_a_picture_a_table_of_contents_and_no_internal_references():
    first_screen = "\n".join(README.splitlines()[:15])
    picture = re.search(r"!\[[^\]]*\]\(([^)]+)\)", first_screen)
    assert picture and (ROOT / picture.group(1)).is_file()
    headings = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"(?m)^## (.+)$", README)}
    for anchor in re.findall(r"\]\(#([a-z0-9-]+)\)", README):
        assert anchor in headings, anchor
    for internal in (".ci/run", "the issue", "EPYC", "the lead"):
        assert internal not in README
    for link in re.findall(r"\]\(((?:docs|benchmarks)/[^)#\s]+)(?: \"[^\"]*\")?\)", README):  # a cited figure's title
        assert (ROOT / link).is_file(), link


def test_zoo_table_is_what_the_zoo_says(capsys):
    assert main(["zoo", "--markdown"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows and all(row in README for row in rows)


def test_shell_examples_run_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    (tmp_path / "my_images").mkdir()
    for i in range(40):  # the "own images" section's folder
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(tmp_path / "my_images" / f"{i}.png")
    # the "translate images" section's low-resolution inputs
    np.savez(tmp_path / "small.npz", images=rng.integers(0, 255, (4, 7, 7), dtype=np.uint8))
    (tmp_path / "small_digits").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (7, 7), dtype=np.uint8)).save(tmp_path / "small_digits" / f"{i}.png")
    ran = []
    for line in commands():
        argv = shlex.split(line)
        assert argv[0] == "gankit", line
        rc = main(tiny(argv[1:]))
        assert rc == 0, f"{line}: {capsys.readouterr().err}"
        ran.append(argv[1])
    assert {"zoo", "sample", "train", "interpolate", "eval", "export", "translate", "compare"} <= set(ran)
    assert np.load(tmp_path / "big.npz")["images"].shape == (4, 28, 28, 1)
    assert sorted(p.name for p in (tmp_path / "big").iterdir()) == ["0.png", "1.png", "2.png"]
    assert (tmp_path / "mnist-gan" / "model.safetensors").is_file() and (tmp_path / "walk.gif").is_file()
    assert (tmp_path / "compare.png").is_file() and len(json.loads((tmp_path / "compare.json").read_text())["runs"]) == 2


def test_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the checkout: presets by name, no configs/ folder here
    for block in blocks("python"):
        code = re.sub(r"train\.steps=\d+", "train.steps=2", block)
        code = code.replace('["train.steps=2"]', '["train.steps=2", "log.progress=false", "train.device=cpu"]')
        code = code.replace('"train.steps=2"]', '"train.steps=2", "log.progress=false", "train.device=cpu"]')
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "runs" / "nb" / "config.yaml").is_file() and (tmp_path / "runs" / "tiny").is_dir()


def test_docs_keep_the_moved_sections():
    for page in ("data-and-models", "metrics", "checkpoints", "scale", "quality", "layout", "translation"):
        text = (ROOT / "docs" / f"{page}.md").read_text()
        assert text.startswith("# ") and "../README.md" in text and len(text) > 1000


def test_learn_pages_and_the_chinese_pages_run_as_written(tmp_path, monkeypatch, capsys):
    """docs/learn.md, its Chinese version and the Chinese quickstart: each command, once (the pages share
    them), in order in one working directory; links and pictures resolve."""
    monkeypatch.chdir(tmp_path)
    seen, ran = set(), []
    for page in LEARN_PAGES:
        text = (ROOT / page).read_text()
        for internal in (".ci/run", "the issue", "EPYC", "the lead"):
            assert internal not in text, (page, internal)
        for link in re.findall(r"\]\(([^)#\s]+\.(?:md|png|json|yaml))(?: \"[^\"]*\")?\)", text):
            assert (ROOT / page).parent.joinpath(link).resolve().is_file(), (page, link)
        for line in commands(text):
            if line in seen:
                continue
            seen.add(line)
            argv = shlex.split(line)
            assert argv[0] == "gankit", line
            rc = main(tiny(argv[1:]))
            assert rc == 0, f"{page}: {line}: {capsys.readouterr().err}"
            ran.append(argv[1])
    assert {"train", "sample", "lesson"} <= set(ran)
