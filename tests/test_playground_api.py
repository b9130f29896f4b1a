"""The playground's server through its HTTP and websocket API: token, Host and Origin checks, settings
validated like YAML configs, steps of gankit's own Trainer, and an export that `gankit train` replays."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import yaml

from starlette.testclient import TestClient  # the `playground` extra, installed by scripts/setup.sh
from starlette.websockets import WebSocketDisconnect

from gankit.checkpoint import CheckpointDir, load_checkpoint
from gankit.cli import main
from gankit.config import read_yaml
from gankit.playground.frames import unpack
from gankit.playground.server import create_app, local_hosts
from gankit.playground.session import Session
from gankit.playground.settings import LIMITS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TOKEN = "test-token"


@pytest.fixture(scope="module")
def session():
    s = Session(CONFIGS).start()
    yield s
    s.close()


@pytest.fixture()
def client(session):
    with TestClient(create_app(session, TOKEN, {"testserver"}), headers={"X-Gankit-Token": TOKEN}) as c:
        c.post("/api/mode", json={"mode": "2d"})
        yield c


def post(client, path, body, status=200):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    return r.json()


def test_every_route_needs_the_token(session):
    with TestClient(create_app(session, TOKEN, {"testserver"})) as c:
        for path in ("/", "/api/state", "/api/export", "/api/checkpoint", "/static/app.js"):
            assert c.get(path).status_code == 403, path
            assert c.get(path, params={"token": "wrong"}).status_code == 403, path
        assert c.post("/api/control", json={"action": "play"}).status_code == 403
        page = c.get("/", params={"token": TOKEN})
        assert page.status_code == 200 and "gankit playground" in page.text and TOKEN in page.text
        assert c.get("/static/app.js", params={"token": TOKEN}).status_code == 200
        with pytest.raises(WebSocketDisconnect):
            with c.websocket_connect("/ws") as ws:
                ws.receive_bytes()


def test_host_and_origin_are_checked(client):
    # DNS rebinding: the right token, but a Host that is not this server
    assert client.get("/api/state", headers={"Host": "evil.example:8765"}).status_code == 403
    # a cross-site page driving the API or the websocket
    r = client.post("/api/control", json={"action": "play"}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "Origin" in r.text
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws", headers={"Origin": "http://evil.example"}) as ws:
            ws.receive_bytes()
    with client.websocket_connect("/ws", headers={"Origin": "http://testserver"}) as ws:
        header, arrays = unpack(ws.receive_bytes())
    assert header["kind"] == "2d" and header["num_modes"] == 8
    assert arrays["fake"].shape == (1000, 2) and arrays["real"].shape == (1000, 2)
    assert arrays["push"].shape == (1000, 2) and arrays["heat"].shape == (64, 64)


def test_closing_the_page_never_cancels_the_caller(client):
    """The test client cancels a websocket handler as it closes; the handler's cleanup used to turn that
    into a bare CancelledError for the caller about one time in four (the old flaky test above)."""
    for _ in range(20):
        with client.websocket_connect("/ws", headers={"Origin": "http://testserver"}) as ws:
            assert unpack(ws.receive_bytes())[0]["kind"] == "2d"


def test_duplicate_host_or_origin_headers_are_refused(client):
    # a check that reads one of two values can be fooled by a proxy or client that forwards the other
    for origins in (["http://testserver", "http://evil.example"], ["http://evil.example", "http://testserver"]):
        r = client.get("/api/state", headers=[("Origin", o) for o in origins])
        assert r.status_code == 403 and "more than one Origin header" in r.text
    r = client.get("/api/state", headers=[("Host", "testserver"), ("Host", "testserver")])
    assert r.status_code == 403 and "more than one Host header" in r.text
    assert client.get("/api/state", headers={"Origin": "http://testserver"}).status_code == 200


def test_all_interfaces_answer_to_addresses_and_allowed_names(session):
    """--host 0.0.0.0: any IP-literal Host (DNS rebinding cannot produce one), the loopback names, this
    machine's name and --allow-host names; other names are refused, and the message names the cause."""
    hosts = local_hosts("0.0.0.0", 8765, ["mybox.lan"])
    with TestClient(create_app(session, TOKEN, hosts), headers={"X-Gankit-Token": TOKEN}) as c:
        for good in ("127.0.0.1:8765", "localhost:8765", "192.168.1.20:8765", "[fe80::1]:8765", "[::1]:8765",
                     "mybox.lan:8765", "MyBox.LAN:8765", f"{socket.gethostname()}:8765"):
            assert c.get("/api/state", headers={"Host": good}).status_code == 200, good
        r = c.get("/api/state", headers={"Host": "192.168.1.20:8765", "Origin": "http://192.168.1.20:8765"})
        assert r.status_code == 200
        r = c.get("/api/state", headers={"Host": "evil.example:8765"})
        assert r.status_code == 403 and "--allow-host evil.example" in r.text and "--port" not in r.text
        r = c.get("/api/state", headers={"Host": "192.168.1.20:9999"})
        assert r.status_code == 403 and "port 9999" in r.text and "8765" in r.text
        r = c.get("/api/state", headers={"Host": "192.168.1.20:8765", "Origin": "http://evil.example:8765"})
        assert r.status_code == 403 and "Origin" in r.text
        r = c.get("/api/state", headers={"Host": "x" * 10_000})
        assert r.status_code == 403 and len(r.text) < 600  # the header is not echoed whole
    loopback = local_hosts("127.0.0.1", 8765)
    assert loopback.allows("localhost:8765") and loopback.allows("[::1]:8765")
    assert not loopback.allows("192.168.1.20:8765") and not loopback.allows("mybox.lan:8765")


@pytest.mark.parametrize("changes, named", [
    ({"optim.lr_g": -1}, "optim.lr_g"),
    ({"optim.lr_d": "fast"}, "optim.lr_d"),
    ({"objective.name": "hingee"}, "hinge"),
    ({"net.g_width": 0}, "net.g_width"),
    ({"net.d_depth": 100}, "net.d_depth"),
    ({"optim.betas_g": [0.5, 1.5]}, "optim.betas_g"),
    ({"data.name": "mnist"}, "data.name"),
    ({"data.name": "points", "data.points": [[0, 0, 1]]}, "data.points"),
    ({"train.batch_size": 10**7}, "batch_size"),
    ({"log.every": 3}, "log.every"),
])
def test_bad_values_give_a_message_and_change_nothing(client, changes, named):
    before = client.get("/api/state").json()
    error = post(client, "/api/settings", {"changes": changes}, status=400)["error"]
    assert named in error and "Traceback" not in error
    after = client.get("/api/state").json()
    assert after["values"] == before["values"] and after["step"] == before["step"]


def test_every_knob_at_its_bound_is_taken_and_past_it_refused(client):
    """Every numeric page knob has an upper bound (settings.LIMITS): at the bound the game takes it, past
    it (or NaN) the change is refused by name and nothing changes."""
    for key, bound in LIMITS.items():
        post(client, "/api/mode", {"mode": "2d"})  # one knob at a time: combinations have their own budget
        value = int(bound) if float(bound).is_integer() else bound
        assert post(client, "/api/settings", {"changes": {key: value}})["values"][key] == value, key
        before = client.get("/api/state").json()
        beyond = value + 1 if isinstance(value, int) else math.nextafter(value, math.inf)
        for bad in (beyond, 10**30, float("nan")):
            r = client.post("/api/settings", content=json.dumps({"changes": {key: bad}}),
                            headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and key in r.json()["error"], (key, bad, r.text)
        after = client.get("/api/state").json()
        assert after["values"] == before["values"] and after["step"] == before["step"]
    assert set(LIMITS) >= {k for k, v in client.get("/api/state").json()["values"].items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool)}
    post(client, "/api/mode", {"mode": "2d"})


@pytest.mark.parametrize("changes, named", [
    ({"train.d_steps": 100_000_000}, "train.d_steps must be at most 100"),  # froze the server (issue 27)
    ({"train.batch_size": 100_000}, "train.batch_size must be at most 4,096"),  # a 40 GB allocation
    # the widest nets at the largest batch: each within its bound, the step over the budget
    ({"net.g_width": 1024, "net.g_depth": 8, "net.d_width": 1024, "net.d_depth": 8, "train.batch_size": 4096},
     "train.batch_size=4096"),
    ({"net.d_width": 1024, "net.d_depth": 8, "train.d_steps": 100}, "train.d_steps=100"),
    ({"train.batch_size": 4096, "train.d_steps": 100}, "train.d_steps=100"),
    # steps that fit, but each frame would draw the heat map through the widest D for seconds
    ({"net.d_width": 1024, "net.d_depth": 8}, "one frame of the page"),
])
def test_a_step_that_would_freeze_the_machine_is_refused(client, changes, named):
    before = client.get("/api/state").json()
    error = post(client, "/api/settings", {"changes": changes}, status=400)["error"]
    assert named in error, error
    if "=" in named:
        assert "GFLOP" in error and "lower train.batch_size" in error
    if "frame" in named:
        assert "net.d_width=1024, net.d_depth=8" in error and "lower the widths or depths" in error
    after = client.get("/api/state").json()
    assert after["values"] == before["values"] and after["step"] == before["step"]


def test_a_command_is_answered_while_a_long_step_runs(client, session, monkeypatch):
    """Pause (and the state) are answered between two D updates: a step of 20 slow D updates does not keep
    the page waiting, and the game pauses once that step is complete."""
    post(client, "/api/mode", {"mode": "2d"})
    post(client, "/api/settings", {"changes": {"train.d_steps": 20}})
    t, run = session.trainer, session.run
    d_phase, d_updates = t.phases[0], []

    def slow_d_loss(*args, **kwargs):  # each D update takes 0.1 s: a step takes 2 s
        d_updates.append(time.monotonic())
        time.sleep(0.1)
        return d_phase.loss(*args, **kwargs)

    monkeypatch.setattr(t, "phases", (dataclasses.replace(d_phase, loss=slow_d_loss), *t.phases[1:]))
    post(client, "/api/control", {"action": "play"})
    while len(d_updates) < 3:
        time.sleep(0.01)
    step = run.step
    t0 = time.monotonic()
    state = client.get("/api/state").json()
    assert state["playing"] and time.monotonic() - t0 < 0.5
    state = post(client, "/api/control", {"action": "pause"})
    answered = time.monotonic() - t0
    assert not state["playing"] and answered < 0.6, answered  # within one D update, not the 2 s step
    assert len(d_updates) < 20 * (step + 1) and run.step == step  # the step was still running
    deadline = time.monotonic() + 10
    while run.step == step and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert run.step == step + 1  # the step in progress completed (export replay stays exact), then paused
    assert not client.get("/api/state").json()["playing"]
    post(client, "/api/mode", {"mode": "2d"})


def test_bad_requests_never_kill_the_server(client):
    assert client.post("/api/settings", content=b"{not json").status_code == 400
    assert "action" in post(client, "/api/control", {"action": "fly"}, status=400)["error"]
    assert "count" in post(client, "/api/control", {"action": "step", "count": -3}, status=400)["error"]
    assert "mode" in post(client, "/api/mode", {"mode": "3d"}, status=400)["error"]
    assert "presets" in post(client, "/api/mode", {"mode": "image", "config": "../../etc/passwd"}, status=400)["error"]
    assert post(client, "/api/control", {"action": "step", "count": 2})["step"] == 2


def test_request_bodies_are_capped_and_never_echoed_whole(client):
    from gankit.playground.server import MAX_BODY

    r = client.post("/api/control", content=b" " * (MAX_BODY + 1), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and f"{MAX_BODY:,}" in r.json()["error"]
    r = client.post("/api/settings", content=b"[" * 200_000 + b"]" * 200_000)
    assert r.status_code == 413
    r = client.post("/api/settings", content=b"[" * 60_000 + b"]" * 60_000)  # under the cap, past json's depth
    assert r.status_code == 400 and "nests more than" in r.json()["error"]
    deep = {"changes": {"data.name": "points", "data.points": [[0.0, 0.0]]}}
    node = deep["changes"]["data.points"]
    for _ in range(100):
        node[0] = [node[0]]
        node = node[0]
    assert "nests more than" in post(client, "/api/settings", deep, status=400)["error"]
    for path, body in (("/api/control", {"action": "x" * 100_000}), ("/api/mode", {"mode": ["m"] * 20_000}),
                       ("/api/settings", {"changes": {"k" * 100_000: 1}}),
                       ("/api/settings", {"changes": {"optim.lr_g": "y" * 100_000}})):
        r = client.post(path, json=body)
        assert r.status_code == 400 and len(r.text) < 1000, (path, len(r.text))
    # the page's largest body, 5,000 drawn points at the plane's edge, fits
    points = [[-10.125, -10.125]] * 4999 + [[1.0, 1.0]]
    state = post(client, "/api/settings", {"changes": {"data.name": "points", "data.points": points}})
    assert len(state["values"]["data.points"]) == 5000


def test_a_chunked_body_is_refused_before_it_is_read_whole():
    """A real server: 300 MiB sent chunked (no length to refuse up front) gets its 413 after the first
    MAX_BODY bytes, and the server stops reading (the client may have a few MiB in flight)."""
    import select

    from gankit.playground.server import Playground

    p = Playground(port=0, configs_dir=CONFIGS).start_in_thread()
    try:
        with socket.create_connection(("127.0.0.1", p.port), timeout=30) as sock:
            sock.sendall(f"POST /api/settings HTTP/1.1\r\nHost: 127.0.0.1:{p.port}\r\nX-Gankit-Token: {p.token}\r\n"
                         "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
            chunk, sent = b"%x\r\n%s\r\n" % (65536, b" " * 65536), 0
            while sent < 300 * 2**20:
                if select.select([sock], [], [], 0)[0]:
                    break
                try:
                    sock.sendall(chunk)
                except OSError:  # the server closed the connection after answering
                    break
                sent += 65536
            reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert sent < 64 * 2**20, sent
    finally:
        p.stop()


def test_steps_train_the_real_networks(client, session):
    post(client, "/api/control", {"action": "reset"})
    g0 = {k: v.clone() for k, v in session.trainer.g.state_dict().items()}
    d0 = {k: v.clone() for k, v in session.trainer.d.state_dict().items()}
    state = post(client, "/api/control", {"action": "step_d"})
    assert state["step"] == 0 and not state["clean"]  # a lone D step: the export cannot replay it
    assert all(torch.equal(g0[k], v) for k, v in session.trainer.g.state_dict().items())
    assert not all(torch.equal(d0[k], v) for k, v in session.trainer.d.state_dict().items())
    assert post(client, "/api/control", {"action": "step_g"})["step"] == 1
    state = post(client, "/api/control", {"action": "step", "count": 30})
    assert state["step"] == 31
    header, _ = unpack(session.frame)
    assert header["step"] == 31 and {"loss_d", "loss_g", "d_real", "d_fake", "r1"} <= set(header["stats"])
    assert 0 <= header["high_quality"] <= 1 and 0 <= header["modes"] <= 8


def test_a_knob_continues_the_game_and_an_architecture_restarts_it(client, session):
    post(client, "/api/control", {"action": "reset"})
    post(client, "/api/control", {"action": "step", "count": 5})
    state = post(client, "/api/settings", {"changes": {"optim.lr_d": 5e-4, "objective.name": "hinge"}})
    assert state["step"] == 5 and not state["clean"] and "optim.lr_d" in state["note"]
    assert session.trainer.optimizers["d"].param_groups[0]["lr"] == 5e-4
    assert type(session.trainer.objective).__name__ == "Hinge"
    state = post(client, "/api/settings", {"changes": {"net.g_width": 64, "net.g_depth": 2}})
    assert state["step"] == 0 and state["clean"] and state["values"]["net.g_width"] == 64
    assert [m.out_features for m in session.trainer.g.modules() if isinstance(m, torch.nn.Linear)] == [64, 64, 2]
    state = post(client, "/api/settings", {"changes": {"data.name": "points", "data.points": [[0, 0], [1, 1]]}})
    assert state["values"]["data.name"] == "points"
    assert post(client, "/api/control", {"action": "step", "count": 2})["step"] == 2
    header, _ = unpack(session.frame)
    assert header["modes"] is None  # drawn points have no known modes to count


def test_export_is_replayed_by_gankit_train(client, tmp_path):
    post(client, "/api/settings", {"changes": {"objective.name": "lsgan", "train.seed": 3}})
    post(client, "/api/control", {"action": "reset"})
    state = post(client, "/api/control", {"action": "step", "count": 40})
    assert state["clean"] and state["step"] == 40
    exported = client.get("/api/export")
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    assert "reproduces the playground's game" in exported.text
    cfg_path = tmp_path / "playground.yaml"
    cfg_path.write_text(exported.text)
    assert yaml.safe_load(exported.text)["train"]["steps"] == 40
    ckpt = tmp_path / "playground.safetensors"
    ckpt.write_bytes(client.get("/api/checkpoint").content)
    played, meta = load_checkpoint(ckpt)
    assert meta["step"] == 40
    assert main(["train", str(cfg_path), "--run-dir", str(tmp_path / "run"), "--set", "log.progress=false",
                 "log.tensorboard=false", "log.plot=false"]) == 0
    trained, meta = load_checkpoint(CheckpointDir(tmp_path / "run" / "checkpoints").latest())
    assert meta["step"] == 40
    for net in ("g", "d"):
        assert played[net].keys() == trained[net].keys()
        for k in played[net]:
            assert torch.equal(played[net][k], trained[net][k]), f"{net}.{k}"


def test_image_mode_shows_samples_and_saves_a_checkpoint(client, session, tmp_path):
    state = post(client, "/api/mode", {"mode": "image"})
    assert state["mode"] == "image" and state["config"] == "mnist_dcgan.yaml" and "FID" in state["fid_note"]
    assert "net.g_width" not in state["values"]
    assert "net.g_width" in post(client, "/api/settings", {"changes": {"net.g_width": 8}}, status=400)["error"]
    error = post(client, "/api/settings", {"changes": {"train.batch_size": 4096}}, status=400)["error"]
    assert "train.batch_size=4096" in error and "GFLOP" in error  # conv nets: the same step budget
    state = post(client, "/api/control", {"action": "step", "count": 2})
    header, arrays = unpack(session.frame)
    assert header["kind"] == "image" and arrays["grid"][:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "ckpt.safetensors").write_bytes(client.get("/api/checkpoint").content)
    _, meta = load_checkpoint(tmp_path / "ckpt.safetensors")
    assert meta["step"] == 2 and meta["config"]["data"]["name"] == "mnist10k"
    assert "reproduces" in client.get("/api/export").text
    post(client, "/api/mode", {"mode": "2d"})


def test_a_broken_preset_is_skipped_with_a_note_and_files_are_read_once(tmp_path, monkeypatch):
    import shutil

    import gankit.playground.session as session_module

    for name in ("mnist_dcgan.yaml", "ring.yaml"):
        shutil.copy(CONFIGS / name, tmp_path / name)
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    (tmp_path / "bomb.yaml").write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")))
    (tmp_path / "list.yaml").write_text("- data\n")
    reads = []
    monkeypatch.setattr(session_module, "read_yaml", lambda path: reads.append(path.name) or read_yaml(path))
    s = Session(tmp_path)
    with TestClient(create_app(s, TOKEN, {"testserver"}), headers={"X-Gankit-Token": TOKEN}) as c:
        state = c.get("/api/state").json()
        assert state["configs"] == ["mnist_dcgan.yaml"]
        notes = " | ".join(state["config_notes"])
        assert "deep.yaml skipped" in notes and "nested more than" in notes
        assert "bomb.yaml skipped" in notes and "list.yaml skipped" in notes and "ring" not in notes
        assert len(notes) < 2000
        assert sorted(reads) == ["bomb.yaml", "deep.yaml", "list.yaml", "mnist_dcgan.yaml", "ring.yaml"]
        for _ in range(3):
            assert c.get("/api/state").status_code == 200
        assert len(reads) == 5  # unchanged files are not parsed again
        assert "presets" in post(c, "/api/mode", {"mode": "image", "config": "deep.yaml"}, status=400)["error"]
        (tmp_path / "deep.yaml").write_text("data: {name: mnist10k}\n")  # fixed: offered again
        assert c.get("/api/state").json()["configs"] == ["deep.yaml", "mnist_dcgan.yaml"]
        assert reads[5:] == ["deep.yaml"]
    s.close()


TINY_IMAGE_PRESET = """\
data: {name: mnist10k, limit: 256}
model:
  latent_dim: 16
  generator: {name: dcgan, width: 8}
  discriminator: {name: dcgan, width: 8}
train: {batch_size: 32, ema_decay: 0.9, threads: 1}
"""


def test_image_mode_export_replays_the_ema_bit_for_bit(tmp_path, monkeypatch):
    """`gankit train` re-estimates the EMA's BatchNorm statistics before it saves and samples; the
    playground's checkpoint, grid and FID take the same path, so its EMA is the one training saves."""
    import gankit.playground.session as session_module

    monkeypatch.setattr(session_module, "EMA_STATS_SECONDS", 0.0)  # every frame, not every 10 s
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.yaml").write_text(TINY_IMAGE_PRESET)
    s = Session(tmp_path / "configs")
    with TestClient(create_app(s, TOKEN, {"testserver"}), headers={"X-Gankit-Token": TOKEN}) as c:
        post(c, "/api/mode", {"mode": "image", "config": "tiny.yaml"})
        assert post(c, "/api/control", {"action": "step", "count": 3})["step"] == 3
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in s.trainer.ema.shadow.modules())
        ckpt = tmp_path / "played.safetensors"
        ckpt.write_bytes(c.get("/api/checkpoint").content)
        cfg_path = tmp_path / "playground.yaml"
        cfg_path.write_text(c.get("/api/export").text)
    played, _ = load_checkpoint(ckpt)
    # the grid was drawn from the EMA with re-estimated statistics (the render copy: its own thread)
    for k, v in s.nets.ema.state_dict().items():
        assert torch.allclose(v.float(), played["g_ema"][k].float(), atol=1e-5), k
    s.close()
    assert main(["train", str(cfg_path), "--run-dir", str(tmp_path / "run"), "--set", "log.progress=false",
                 "log.tensorboard=false", "log.plot=false", "log.sample_every=0", "eval.every=0"]) == 0
    trained, meta = load_checkpoint(CheckpointDir(tmp_path / "run" / "checkpoints").latest())
    assert meta["step"] == 3
    for net in ("g", "d", "g_ema"):
        assert played[net].keys() == trained[net].keys()
        for k in played[net]:
            assert torch.equal(played[net][k], trained[net][k]), f"{net}.{k}"


def test_cli_refuses_a_busy_port(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["playground", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gankit: error: cannot listen on 127.0.0.1") and err.count("\n") == 1
    assert "in use" in err and "--port" in err


def test_ctrl_c_stops_a_real_server_within_seconds_while_a_step_runs(tmp_path):
    """`gankit playground` as its own process, a long step running (40 D updates of batch 4,096: about
    a second) and a run of 10,000 steps waiting: one SIGINT stops the server within 5 s and the process
    exits with status 0, no traceback, no abort; the waiting command is answered (503), not left hanging."""
    import signal
    import subprocess
    import sys
    import threading
    import urllib.error
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(CONFIGS.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "gankit", "playground", "--port", "0", "--configs", str(CONFIGS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    err: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: err.extend((time.monotonic(), line) for line in proc.stderr))
    reader.start()
    try:
        line = proc.stdout.readline()
        assert "playground at" in line, line
        base, token = line.split()[-1].split("/?token=")

        def call(path: str, body: dict) -> tuple[int, dict]:
            req = urllib.request.Request(base + path, method="POST", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json", "X-Gankit-Token": token})
            try:
                with urllib.request.urlopen(req, timeout=120) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        assert call("/api/settings", {"changes": {"train.batch_size": 4096, "train.d_steps": 40}})[0] == 200
        waiting: list = []
        runner = threading.Thread(target=lambda: waiting.append(call("/api/control", {"action": "step",
                                                                                      "count": 10_000})))
        runner.start()
        time.sleep(1.0)  # a step is running
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
        exited = time.monotonic() - t0
        runner.join(timeout=10)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(line for _, line in err)
    stopped = [t - t0 for t, line in err if "playground stopped" in line]
    assert rc == 0 and stopped and stopped[0] < 5, (rc, stopped, text)
    # then the interpreter's own teardown (torch's: well under a second on an idle core, seconds on a busy one)
    assert exited < 10, exited
    assert "Traceback" not in text and "terminate called" not in text, text
    assert waiting and waiting[0][0] == 503 and "stopping" in waiting[0][1]["error"]


def test_frames_are_pushed_as_drawn_and_an_open_page_does_not_hold_up_shutdown():
    """A real server: each new frame reaches an open websocket, and stopping the server while a page is
    still connected (the game paused, so no frame is due) ends promptly instead of waiting for the page."""
    import json
    import time
    import urllib.request

    from websockets.sync.client import connect

    from gankit.playground.server import Playground

    p = Playground(port=0, configs_dir=CONFIGS).start_in_thread()
    with connect(f"ws://127.0.0.1:{p.port}/ws?token={p.token}", origin=f"http://127.0.0.1:{p.port}") as ws:
        try:
            assert unpack(ws.recv(timeout=30))[0]["step"] == 0
            req = urllib.request.Request(f"http://127.0.0.1:{p.port}/api/control", method="POST",
                                         data=json.dumps({"action": "step", "count": 3}).encode(),
                                         headers={"Content-Type": "application/json", "X-Gankit-Token": p.token})
            assert json.loads(urllib.request.urlopen(req, timeout=60).read())["step"] == 3
            assert unpack(ws.recv(timeout=30))[0]["step"] == 3
            t0 = time.monotonic()
        finally:
            p.stop()
        assert not p._thread.is_alive() and time.monotonic() - t0 < 8
