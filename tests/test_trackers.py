"""log.trackers: Weights & Biases (offline) and MLflow (a local file store) get what metrics.jsonl gets, the
config and the sample grids; a resumed run continues their runs; nothing is sent over the network."""
from __future__ import annotations

import glob
import importlib.util
import json
import struct
import sys
from pathlib import Path

import pytest

from conftest import TINY, TINY_RING, make_cfg
from gankit.cli import main
from gankit.config import ConfigError, from_dict
from gankit.logs import read_metrics
from gankit.trackers import library_trackers, mlflow_client, tensorboard_on

BOTH = ["log.trackers=[tensorboard,wandb,mlflow]", "log.tensorboard=true", "log.every=5", "log.sample_every=5",
        "checkpoint.every=10"]
NETWORK: list[tuple[str, tuple]] = []  # what the audit hook saw while ``_watching`` is set
_watching = False


def _audit(event: str, args: tuple) -> None:
    if _watching and (event in ("socket.getaddrinfo", "socket.gethostbyname")
                      or (event == "socket.connect" and not isinstance(args[1], (str, bytes)))):  # not AF_UNIX
        NETWORK.append((event, args[1:]))



@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """10 steps, then resumed to 20, logging to TensorBoard, W&B and MLflow; the ids trackers.json held after
    the first part."""
    global _watching
    from gankit.train import train

    run_dir = tmp_path_factory.mktemp("tracked") / "run"
    sys.addaudithook(_audit)  # a hook cannot be removed: it records only while ``_watching``
    _watching = True
    try:
        train(make_cfg(TINY, *BOTH, "train.steps=10"), run_dir)
        first_ids = json.loads((run_dir / "trackers.json").read_text())
        train(make_cfg(TINY, *BOTH, "train.steps=20"), run_dir, resume=True)
    finally:
        _watching = False
    return run_dir, first_ids


def test_trackers_config_and_the_older_tensorboard_switch():
    default = from_dict({})
    assert default.log.trackers == ["tensorboard"] and tensorboard_on(default.log)
    assert library_trackers(from_dict({"log": {"trackers": ["wandb", "tensorboard", "mlflow"]}}).log) == ["wandb", "mlflow"]
    assert not tensorboard_on(from_dict({"log": {"tensorboard": False}}).log)  # still turns it off
    assert not tensorboard_on(from_dict({"log": {"trackers": ["mlflow"]}}).log)
    with pytest.raises(ConfigError, match=r"log.trackers: unknown tracker 'wandbb'; did you mean 'wandb'\?"):
        from_dict({"log": {"trackers": ["wandbb"]}})
    with pytest.raises(ConfigError, match="names a tracker twice"):
        from_dict({"log": {"trackers": ["mlflow", "mlflow"]}})


def test_a_tracker_that_is_not_installed_is_refused_before_the_run_starts(tmp_path, capsys, tiny_yaml, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    run = tmp_path / "run"
    assert main(["train", str(tiny_yaml), "--run-dir", str(run), "--set", "log.trackers=[wandb]"]) == 2
    err = capsys.readouterr().err
    assert err == "gankit: error: config: log.trackers lists wandb, which is not installed: pip install 'gankit[wandb]'\n"
    assert not run.exists()


def test_resume_continues_the_same_tracker_runs_without_network(tracked_run):
    run_dir, first_ids = tracked_run
    ids = json.loads((run_dir / "trackers.json").read_text())
    assert ids == first_ids and set(ids) == {"wandb", "mlflow"}
    assert (run_dir / "tensorboard").is_dir()
    assert NETWORK == []


def test_mlflow_gets_the_scalars_the_config_and_the_grids(tracked_run):
    run_dir, ids = tracked_run
    client = mlflow_client(run_dir)
    run = client.get_run(ids["mlflow"])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert client.get_experiment(run.info.experiment_id).name == "gankit"
    rows = read_metrics(run_dir / "metrics.jsonl")
    for key in ("loss_d", "d_fake", "img_per_s"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(ids["mlflow"], key))
        assert history == [(r["step"], pytest.approx(r[key])) for r in rows if key in r]
    assert [r["step"] for r in rows if "loss_d" in r] == [5, 10, 15, 20]
    params = run.data.params
    assert params["model.latent_dim"] == "16" and params["train.batch_size"] == "32"
    assert params["model.generator"] == "{'name': 'dcgan', 'width': 8}"
    assert params["train.steps"] == "10"  # params cannot change: the run's start; config.yaml is the resume's
    artifacts = Path(client.download_artifacts(ids["mlflow"], "config.yaml"))
    assert "steps: 20" in artifacts.read_text()
    images = [a.path for a in client.list_artifacts(ids["mlflow"], "images") if a.path.endswith(".png")]
    assert {int(p.split("+step+")[1].split("+")[0]) for p in images} == {5, 10, 15, 20}


def _wandb_records(path: str):
    """The protobuf records of a W&B transaction log (``run-<id>.wandb``): LevelDB's log format (32 KiB blocks
    of records with a 7-byte header, split into first / middle / last parts) after a 7-byte W&B header."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    pos, part = 7, b""
    while pos + 7 <= len(data):
        room = 32768 - pos % 32768
        if room < 7:  # a block's tail too short for a header is padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            pos += room
            continue
        part += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or its last part
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part)
            part = b""
            yield record


def test_wandb_gets_the_scalars_the_config_and_the_grids_offline(tracked_run):
    run_dir, ids = tracked_run
    logs = sorted(glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb")))
    assert len(logs) == 2 and all(ids["wandb"] in log for log in logs)  # the first part and the resume
    history, config, images = [], {}, 0
    for log in logs:
        for record in _wandb_records(log):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                row = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                       for item in record.history.item}
                if row.get("samples/_type") == "image-file":
                    images += 1
                elif "loss_d" in row:
                    history.append(row)
            elif kind == "run":
                assert record.run.run_id == ids["wandb"] and record.run.project == "gankit"
                config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss_d" in r]
    history.sort(key=lambda h: h["step"])  # the two parts' folders are named by start time, not always in order
    assert [(h["step"], h["loss_d"], h["d_real"]) for h in history] == \
        [(r["step"], pytest.approx(r["loss_d"]), pytest.approx(r["d_real"])) for r in rows]
    assert config["model"]["latent_dim"] == 16 and config["train"]["steps"] in (10, 20)
    assert images == 6  # steps 5, 10 (and the final grid of the first part at 10), 15, 20 (and the final one)
    assert len(glob.glob(str(run_dir / "wandb" / "offline-run-*" / "files" / "media" / "images" / "*.png"))) == 6


def test_a_2d_run_sends_its_scatter_plots(tmp_path):
    from gankit.train import train

    run = train(make_cfg(TINY_RING, "log.trackers=[mlflow]", "log.sample_every=5"), tmp_path / "ring").run_dir
    client = mlflow_client(run)
    run_id = json.loads((run / "trackers.json").read_text())["mlflow"]
    images = [a.path for a in client.list_artifacts(run_id, "images") if a.path.endswith(".png")]
    assert len(images) == 3  # steps 5 and 10, and the final plot
    assert client.get_metric_history(run_id, "loss_d")[-1].step == 10
