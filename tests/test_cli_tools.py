"""gankit.cli_tools, through `gankit ...` as a user runs it: export (TorchScript and an hf folder that load back to
the same generator), push (to a stand-in Hub), init, zoo, compare, and bad input as one `gankit: error:` line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY_RING, make_cfg
from gankit.cli import main
from gankit.hub import zoo_entry, zoo_names
from gankit.presets import PRESETS, list_presets
from gankit.sampling import latents, load_generator

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rings(tmp_path_factory):
    """Two tiny ring runs of different seeds (4 steps each)."""
    from gankit.train import train

    root = tmp_path_factory.mktemp("rings")
    return [train(make_cfg(TINY_RING, "train.steps=4", f"train.seed={seed}"), root / f"seed{seed}").run_dir
            for seed in (0, 1)]


def _outputs(net, z):
    with torch.no_grad():
        return net(z)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_export_torchscript_and_hf_load_back_to_the_same_generator(tmp_path, rings, capsys):
    gen = load_generator(rings[0], device="cpu")
    z = latents(7, gen.latent_dim, seed=5)
    expected = _outputs(gen.net.eval(), z)

    assert main(["export", str(rings[0]), "--format", "torchscript", "--out", str(tmp_path / "g.pt")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"gankit: exported the generator at step 4 as torchscript to {tmp_path / 'g.pt'}")
    assert "outputs match PyTorch to" in out
    torch.testing.assert_close(_outputs(torch.jit.load(str(tmp_path / "g.pt")), z), expected)

    assert main(["export", str(rings[0]), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    capsys.readouterr()
    folder = load_generator(tmp_path / "hf", device="cpu")
    assert folder.step == 4
    torch.testing.assert_close(_outputs(folder.net.eval(), z), expected)
    # an earlier export is kept unless --force: one line, and the folder as it was
    before = {p.name: p.read_bytes() for p in (tmp_path / "hf").iterdir()}
    assert main(["export", str(rings[1]), "--format", "hf", "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gankit: error: ") and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "hf").iterdir()} == before
    assert main(["export", str(rings[1]), "--format", "hf", "--out", str(tmp_path / "hf"), "--force"]) == 0
    replaced = load_generator(tmp_path / "hf", device="cpu")
    assert not torch.equal(_outputs(replaced.net.eval(), z), expected)  # the other run's generator now


def test_push_uploads_the_hf_folder_export_writes(tmp_path, rings, capsys, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeHub:
        """Records what push asks of the Hub; keeps a copy of the uploaded folder (push removes its own)."""

        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls.append(("create", repo_id, private, exist_ok))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, repo_id, folder_path, commit_message):
            calls.append(("upload", repo_id, commit_message))
            shutil.copytree(folder_path, tmp_path / "uploaded")

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    assert main(["push", str(rings[0]), "me/tiny-ring", "--private"]) == 0
    assert capsys.readouterr().out == "gankit: pushed the generator at step 4 to https://huggingface.co/me/tiny-ring\n"
    assert calls == [("token", "hf_test"), ("create", "me/tiny-ring", True, True),
                     ("upload", "me/tiny-ring", "gankit push")]
    uploaded = tmp_path / "uploaded"
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in uploaded.iterdir()}
    z = latents(5, 4, seed=1)
    torch.testing.assert_close(_outputs(load_generator(uploaded, device="cpu").net.eval(), z),
                               _outputs(load_generator(rings[0], device="cpu").net.eval(), z))
    # an id that names no Hub repository is refused before anything is uploaded
    calls.clear()
    assert main(["push", str(rings[0]), "not a/repo/id"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gankit: error: push: 'not a/repo/id' is not a Hub repository id")
    assert len(err.strip().splitlines()) == 1 and calls == []


def test_init_lists_copies_and_refuses_to_overwrite_without_force(tmp_path, capsys):
    assert main(["init"]) == 0  # no preset: the list, as --list
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == [name for name, _ in list_presets()]
    assert "mnist_dcgan" in [line.split()[0] for line in listed]

    dest = tmp_path / "new" / "folder"  # created when missing
    assert main(["init", "mnist_dcgan", str(dest)]) == 0
    copied = dest / "mnist_dcgan.yaml"
    assert capsys.readouterr().out == f"gankit: wrote {copied}; train it with: gankit train {copied}\n"
    assert copied.read_text() == (PRESETS / "mnist_dcgan.yaml").read_text()
    assert yaml.safe_load(copied.read_text())["data"]["name"] == "mnist10k"
    copied.write_text("# my edits\n")
    assert main(["init", "mnist_dcgan", str(dest)]) == 2
    assert capsys.readouterr().err == f"gankit: error: {copied} exists; pass --force to overwrite it\n"
    assert copied.read_text() == "# my edits\n"
    assert main(["init", "mnist_dcgan", str(dest), "--force"]) == 0
    assert copied.read_text() == (PRESETS / "mnist_dcgan.yaml").read_text()


def test_zoo_lists_every_shipped_generator(capsys):
    assert main(["zoo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [f"zoo:{name}" for name in zoo_names()]
    for line, name in zip(lines, zoo_names()):
        assert f"{zoo_entry(name)['bytes'] / 1e6:5.2f} MB" in line
    assert main(["zoo", "--markdown"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == len(zoo_names())
    assert all(row.startswith(f"| `zoo:{name}` |") and row.endswith("steps) |") for row, name in zip(rows, zoo_names()))


def test_compare_two_runs_as_a_table_and_json(tmp_path, rings, capsys):
    out_json = tmp_path / "both.json"
    assert main(["compare", *map(str, rings), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert printed.endswith(f"gankit: wrote {out_json}\n") and "side by side" not in printed  # no --out: no PNG
    table = {line.split()[0]: line.split()[1:] for line in printed.splitlines()[1:-1]}
    assert table["step"] == ["4", "4"]
    saved = json.loads(out_json.read_text())
    assert saved["grid"] is None and [r["run"] for r in saved["runs"]] == list(map(str, rings))
    assert [r["name"] for r in saved["runs"]] == ["seed0", "seed1"]
    assert saved["runs"][0]["logged"]["loss_d"] != saved["runs"][1]["logged"]["loss_d"]


@pytest.mark.parametrize("argv, message", [
    (["compare", "{0}"], "compare needs at least two runs, got 1"),
    (["compare", "{0}", "{1}", "--metrics", "fid"], "--metrics sets how --eval measures the runs; add --eval"),
    (["compare", "{0}", "{1}", "--out", "{tmp}/grid.jpg"], "--out must end in .png"),
    (["export", "{0}", "--format", "onnx", "--out", "{tmp}/g.onnx", "--metrics", "{tmp}/none.json"], "--metrics"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, rings, capsys, argv, message):
    assert main([a.format(*map(str, rings), tmp=tmp_path) for a in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("gankit: error: ") and message in captured.err
    assert len(captured.err.splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path, rings):
    """The whole process: exit status 2, one `gankit: error:` line on stderr and nothing else."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "gankit", "compare", str(rings[0]), str(rings[1]), "--num", "5"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "gankit: error: --num sets how --eval measures the runs; add --eval\n"
    assert list(tmp_path.iterdir()) == []
