"""gankit.checkpoint: nested state packing, safetensors files, atomic writes, damage detection, no pickle."""
from __future__ import annotations

import json
import os
import pickle
import signal
import struct
from pathlib import Path

import pytest
import torch

from conftest import assert_states_equal
from gankit.checkpoint import (CheckpointDir, CheckpointError, load_checkpoint, pack, read_meta, resolve,
                               save_checkpoint, unpack)


def _nested_state() -> dict:
    torch.manual_seed(0)
    return {
        "g": {"net.0.weight": torch.randn(3, 4), "net.0.bias": torch.zeros(3)},
        "opt": {"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.randn(2, 2)},
                          1: {"step": torch.tensor(5.0), "exp_avg": torch.randn(7)}},
                "param_groups": [{"lr": 2e-4, "betas": [0.5, 0.999], "params": [0, 1], "foreach": None,
                                  "amsgrad": False}]},
        "rng": {"torch": torch.get_rng_state(), "cuda": None},
        "empty": torch.zeros(0, 3),
        "scalars": [1, 2.5, "text", True, None, [torch.arange(3), {"deep": torch.ones(2, dtype=torch.bool)}]],
        "ints": torch.arange(6, dtype=torch.int64).view(2, 3),
        "half": torch.tensor([1.5, -2.0], dtype=torch.float16),
        "noncontig": torch.arange(12.0).view(3, 4).t(),
    }


def test_pack_unpack_roundtrip_keeps_int_keys_none_and_lists():
    state = _nested_state()
    tensors: dict[str, torch.Tensor] = {}
    skeleton = pack(state, tensors)
    json.dumps(skeleton)  # the skeleton is plain JSON
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    restored = unpack(json.loads(json.dumps(skeleton)), tensors)
    assert_states_equal(restored, state)
    assert list(restored["opt"]["state"]) == [0, 1]  # int keys stay ints, in order
    assert restored["rng"]["cuda"] is None


def test_pack_copies_tensors():
    t = torch.zeros(3)
    tensors: dict[str, torch.Tensor] = {}
    pack({"t": t}, tensors)
    t += 1
    assert torch.equal(tensors["t"], torch.zeros(3))


def test_pack_refuses_objects_it_cannot_store():
    with pytest.raises(TypeError, match="set"):
        pack({"a": {1, 2}}, {})


def test_pack_refuses_colliding_tensor_names():
    # {"a.b": t} and {"a": {"b": t}} flatten to the same name; one tensor must not overwrite the other
    with pytest.raises(ValueError, match="same name 'a.b'"):
        pack({"a.b": torch.zeros(1), "a": {"b": torch.ones(1)}}, {})


def test_save_load_roundtrip(tmp_path):
    state = _nested_state()
    meta = {"step": 7, "config": {"train": {"seed": 1}}, "note": "ünïcode"}
    path = save_checkpoint(tmp_path / "ck.safetensors", state, meta)
    assert path == tmp_path / "ck.safetensors"
    restored, meta2 = load_checkpoint(path)
    assert_states_equal(restored, state)
    assert meta2 == meta
    restored["g"]["net.0.weight"] += 1  # loaded tensors are writable, independent copies
    assert not torch.equal(restored["g"]["net.0.weight"], state["g"]["net.0.weight"])


def test_module_and_optimizer_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "m.safetensors", {"net": net.state_dict(), "opt": opt.state_dict()}, {})
    state, _ = load_checkpoint(tmp_path / "m.safetensors")
    net2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt2 = torch.optim.Adam(net2.parameters(), lr=1e-3)
    net2.load_state_dict(state["net"])
    opt2.load_state_dict(state["opt"])
    assert_states_equal(net2.state_dict(), net.state_dict())
    assert_states_equal(opt2.state_dict()["state"], opt.state_dict()["state"])


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    for i in range(3):
        save_checkpoint(tmp_path / "ck.safetensors", {"x": torch.full((4,), float(i))}, {"i": i})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.safetensors"]
    state, meta = load_checkpoint(tmp_path / "ck.safetensors")
    assert meta == {"i": 2} and torch.equal(state["x"], torch.full((4,), 2.0))


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ck.safetensors", {"x": torch.ones(2)}, {"v": 1})

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CheckpointError, match="previous checkpoint is untouched"):
        save_checkpoint(path, {"x": torch.zeros(2)}, {"v": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.safetensors"]
    assert load_checkpoint(path)[1] == {"v": 1}


def _header_len(path: Path) -> int:
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


def test_corrupted_tensor_byte_is_detected(tmp_path):
    path = save_checkpoint(tmp_path / "ck.safetensors", {"w": torch.randn(100)}, {"step": 1})
    raw = bytearray(path.read_bytes())
    pos = 8 + _header_len(path) + 123  # inside the tensor data
    raw[pos] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "damaged" in str(err.value) and "checksum" in str(err.value)
    assert str(path) in str(err.value)


def test_read_meta_reads_the_header_alone(tmp_path):
    path = save_checkpoint(tmp_path / "ck.safetensors", {"w": torch.randn(100_000)}, {"step": 7, "game": "pix2pix"})
    assert read_meta(path) == load_checkpoint(path)[1] == {"step": 7, "game": "pix2pix"}
    path.write_bytes(path.read_bytes()[:8 + _header_len(path) + 10])  # the tensors cut off: the header still reads
    assert read_meta(path)["game"] == "pix2pix"
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)
    path.write_bytes(path.read_bytes()[:8 + _header_len(path) // 2])  # a header cut off is no header
    with pytest.raises(CheckpointError, match="not a gankit checkpoint"):
        read_meta(path)
    with pytest.raises(CheckpointError, match="not found"):
        read_meta(tmp_path / "missing.safetensors")


def test_truncated_file_is_detected(tmp_path):
    path = save_checkpoint(tmp_path / "ck.safetensors", {"w": torch.randn(100)}, {"step": 1})
    raw = path.read_bytes()
    for cut in (len(raw) - 10, 8 + _header_len(path) // 2, 5, 0):
        path.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
    path.write_bytes(raw[:len(raw) - 10])
    with pytest.raises(CheckpointError, match="damaged|truncated"):
        load_checkpoint(path)


class _Exploit:
    """Unpickling this would create a marker file (pickle calls os.system / open via __reduce__)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_torch_save_pickle_is_refused_without_executing_it(tmp_path):
    marker = tmp_path / "PWNED"
    zip_file = tmp_path / "torch_zip.pt"
    torch.save({"payload": _Exploit(marker), "w": torch.ones(2)}, zip_file)  # torch's zip format
    legacy = tmp_path / "legacy.pt"
    torch.save({"payload": _Exploit(marker)}, legacy, _use_new_zipfile_serialization=False)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(_Exploit(marker)))
    assert not marker.exists()
    for path in (zip_file, legacy, plain):
        with pytest.raises(CheckpointError, match="pickle"):
            load_checkpoint(path)
        assert not marker.exists()
    # sanity check that the payload is live: unpickling it does create the marker
    pickle.loads(plain.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_refused(tmp_path, seed):
    gen = torch.Generator().manual_seed(seed)
    path = tmp_path / "random.safetensors"
    path.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=gen, dtype=torch.uint8).tolist()))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_foreign_safetensors_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, str(plain))
    with pytest.raises(CheckpointError, match="without gankit metadata"):
        load_checkpoint(plain)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.ones(2)}, str(other), metadata={"gankit": json.dumps({"format": "other"})})
    with pytest.raises(CheckpointError, match="format 'other'"):
        load_checkpoint(other)
    newer = tmp_path / "newer.safetensors"
    save_file({"w": torch.ones(2)}, str(newer),
              metadata={"gankit": json.dumps({"format": "gankit-checkpoint", "version": 99})})
    with pytest.raises(CheckpointError, match="newer gankit"):
        load_checkpoint(newer)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_checkpoint_dir_keeps_the_last_k_and_points_latest_at_the_newest(tmp_path):
    ckpts = CheckpointDir(tmp_path / "checkpoints", keep=2)
    assert ckpts.latest() is None and ckpts.all() == []
    for step in (5, 10, 15, 20):
        path = ckpts.save(step, {"x": torch.tensor([step])}, {"step": step})
        assert path.name == f"step_{step:08d}.safetensors"
    assert [p.name for p in ckpts.all()] == ["step_00000015.safetensors", "step_00000020.safetensors"]
    pointer = json.loads((tmp_path / "checkpoints" / "latest.json").read_text())
    assert pointer == {"file": "step_00000020.safetensors", "step": 20}
    assert ckpts.latest() == ckpts.path_for(20)
    assert load_checkpoint(ckpts.latest())[1] == {"step": 20}
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_latest_falls_back_when_latest_json_is_broken(tmp_path):
    ckpts = CheckpointDir(tmp_path, keep=3)
    for step in (1, 2):
        ckpts.save(step, {"x": torch.zeros(1)}, {"step": step})
    pointer = tmp_path / "latest.json"
    for broken in ("{not json", json.dumps({"file": "step_00000099.safetensors"}), json.dumps([1]),
                   json.dumps({"nofile": 1})):
        pointer.write_text(broken)
        assert ckpts.latest() == ckpts.path_for(2)
    pointer.unlink()
    assert ckpts.latest() == ckpts.path_for(2)
    # latest.json wins over the file order when it names an existing checkpoint
    pointer.write_text(json.dumps({"file": "step_00000001.safetensors", "step": 1}))
    assert ckpts.latest() == ckpts.path_for(1)


def test_resolve_file_run_dir_and_checkpoints_dir(tmp_path):
    run = tmp_path / "run"
    ckpts = CheckpointDir(run / "checkpoints")
    ckpts.save(3, {"x": torch.zeros(1)}, {})
    newest = ckpts.save(4, {"x": torch.zeros(1)}, {})
    assert resolve(run) == newest
    assert resolve(run / "checkpoints") == newest
    assert resolve(ckpts.path_for(3)) == ckpts.path_for(3)
    with pytest.raises(CheckpointError, match="no such file"):
        resolve(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        resolve(tmp_path / "empty")


def test_a_header_length_starting_with_byte_0x80_is_not_taken_for_a_pickle(tmp_path):
    """safetensors files begin with their header length; one whose low byte is 0x80 still loads."""
    state = {"w": torch.ones(2)}
    for pad in range(0, 512, 8):  # safetensors pads headers to 8 bytes, so every 8th length is reachable
        path = save_checkpoint(tmp_path / "c.safetensors", state, {"pad": "x" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no padding gave a header length starting with 0x80")
    loaded, meta = load_checkpoint(path)
    assert torch.equal(loaded["w"], state["w"]) and meta["pad"] == "x" * pad


# ---------------------------------------------------------------------------------------------
# Damage and foreign files: each refused with a message that says what the file is


def _rewrite_header(path: Path, edit) -> None:
    """Re-save ``path`` with its gankit header changed by ``edit`` (tensors untouched)."""
    from safetensors.torch import load_file, save_file

    raw = path.read_bytes()
    info = json.loads(json.loads(raw[8:8 + _header_len(path)])["__metadata__"]["gankit"])
    edit(info)
    save_file(load_file(str(path)), str(path), metadata={"gankit": json.dumps(info)})


@pytest.mark.parametrize("edit, expected", [
    (lambda info: info.pop("sha256"), "has no checksum"),
    (lambda info: info.update(sha256="0" * 64), "checksum mismatch"),
    (lambda info: info.pop("state"), "header lacks state"),
    (lambda info: info.update(state={"__tensor__": "nope"}), "does not describe its tensors"),
    (lambda info: info.update(version="1"), "version '1'"),
])
def test_edited_headers_are_refused(tmp_path, edit, expected):
    path = save_checkpoint(tmp_path / "ck.safetensors", {"w": torch.ones(3)}, {"step": 1})
    _rewrite_header(path, edit)
    with pytest.raises(CheckpointError, match=expected) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_checksum_mismatch_message(tmp_path):
    path = save_checkpoint(tmp_path / "ck.safetensors", {"w": torch.randn(64)}, {})
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01  # the last byte of tensor data: a torn final page
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"checksum mismatch.*\(file damaged or partially written\)"):
        load_checkpoint(path)


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty"),
    (b"gank", "too short"),
    (b"data: {name: mnist}\n" * 4, "no safetensors header"),  # a YAML config passed by mistake
    (b'{"file": "step_00000001.safetensors", "step": 1}', "no safetensors header"),  # latest.json
])
def test_files_that_are_not_checkpoints(tmp_path, content, expected):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path)


def test_truncations_of_a_checkpoint_are_refused(tmp_path):
    """A file cut anywhere (a copy interrupted, a save without atomic rename) never loads: every 7th byte
    and each of the last 8."""
    path = save_checkpoint(tmp_path / "ck.safetensors", {"w": torch.randn(40), "b": torch.arange(5)},
                           {"step": 3})
    raw = path.read_bytes()
    cut_file = tmp_path / "cut.safetensors"
    for cut in sorted({*range(0, len(raw), 7), *range(len(raw) - 8, len(raw))}):
        cut_file.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError):
            load_checkpoint(cut_file)


# ---------------------------------------------------------------------------------------------
# Signals during a save


def _signal_during_fsync(monkeypatch: pytest.MonkeyPatch, signum: int) -> list[int]:
    """The first fsync of a save sends ``signum`` to this process, as a second Ctrl-C would."""
    real_fsync, sent = os.fsync, []

    def fsync(fd: int) -> None:
        if not sent:
            sent.append(signum)
            os.kill(os.getpid(), signum)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return sent



def test_ctrl_c_during_a_save_is_held_until_the_save_is_complete(tmp_path, monkeypatch):
    ckpts = CheckpointDir(tmp_path, keep=2)
    ckpts.save(1, {"x": torch.zeros(3)}, {"step": 1})
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's: raises KeyboardInterrupt
    sent = _signal_during_fsync(monkeypatch, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        ckpts.save(2, {"x": torch.ones(3)}, {"step": 2})
    monkeypatch.undo()
    assert sent == [signal.SIGINT]
    # the interrupt came after the checkpoint, its pointer and the rotation: nothing half-done
    assert ckpts.latest() == ckpts.path_for(2)
    assert load_checkpoint(ckpts.latest())[1] == {"step": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "step_00000001.safetensors",
                                                          "step_00000002.safetensors"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_held_signals_reach_the_handler_that_was_installed(tmp_path, monkeypatch):
    received: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    _signal_during_fsync(monkeypatch, signal.SIGTERM)
    save_checkpoint(tmp_path / "ck.safetensors", {"x": torch.ones(2)}, {})
    assert received == [signal.SIGTERM]  # delivered once, after the write
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "ck.safetensors")[1] == {}


def test_saving_from_a_thread_does_not_touch_signal_handlers(tmp_path):
    """Only the main thread may set handlers; a save in a worker thread must still work."""
    import threading

    errors: list[BaseException] = []

    def work() -> None:
        try:
            CheckpointDir(tmp_path).save(1, {"x": torch.ones(2)}, {"step": 1})
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert errors == [] and load_checkpoint(tmp_path / "step_00000001.safetensors")[1] == {"step": 1}


def test_remove_temporaries_only_touches_the_names_atomic_writes_use(tmp_path):
    from gankit.checkpoint import remove_temporaries

    stale = [tmp_path / ".step_00000002.safetensors.k3j_9xz0.tmp", tmp_path / ".latest.json.abcdefgh.tmp"]
    kept = [tmp_path / "notes.tmp", tmp_path / ".hidden.tmp", tmp_path / "step_00000001.safetensors",
            tmp_path / ".x.TOOLONGNAME.tmp"]
    for p in stale + kept:
        p.write_text("x")
    assert sorted(remove_temporaries(tmp_path)) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(kept)


# ---------------------------------------------------------------------------------------------
# Fuzzing (issue 16): random byte mutations of a real checkpoint


def _mutations(raw: bytes, header_end: int, count: int, seed: int):
    """``count`` copies of ``raw``, each with 1-3 random bytes replaced: half inside the header (length and
    JSON, where parsing happens), half anywhere."""
    import random

    rng = random.Random(seed)
    for i in range(count):
        out = bytearray(raw)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(header_end if i % 2 == 0 else len(raw))
            out[pos] = rng.choice([rng.randrange(256), out[pos] ^ (1 << rng.randrange(8))])
        yield bytes(out)


def test_fuzzed_checkpoints_are_refused_in_one_line_or_load_exactly(tmp_path):
    """1,000 mutations of a real run's checkpoint: each raises a one-line CheckpointError, or loads with a
    verified checksum and then equals the original (never a traceback, a hang or a silently wrong value)."""
    import time

    from conftest import TINY, make_cfg
    from gankit.train import train

    result = train(make_cfg(TINY, "train.steps=1", "model.latent_dim=4", "model.generator.width=2",
                            "model.discriminator.widths=[4]"), tmp_path / "run")
    original = result.checkpoint.read_bytes()
    state0, meta0 = load_checkpoint(result.checkpoint)
    header_end = 8 + struct.unpack("<Q", original[:8])[0]
    path = tmp_path / "fuzzed.safetensors"
    outcomes = {"refused": 0, "loaded": 0}
    for raw in _mutations(original, header_end, 1000, seed=16):
        path.write_bytes(raw)
        t0 = time.process_time()  # CPU time: a busy shared machine must not fail it
        try:
            state, meta = load_checkpoint(path)
        except CheckpointError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), str(exc)
            outcomes["refused"] += 1
        else:  # a mutation that changed nothing the reader uses (JSON whitespace, padding)
            assert meta == meta0
            assert_states_equal(state, state0)
            outcomes["loaded"] += 1
        assert time.process_time() - t0 < 10
    assert outcomes["refused"] > 900, outcomes


@pytest.mark.parametrize("name", ["../../other/checkpoints/step_00000009.safetensors",
                                  "/abs/step_00000009.safetensors", "sub/step_00000009.safetensors",
                                  "best.safetensors"])
def test_latest_json_never_leads_outside_its_folder(tmp_path, name):
    """Issue 16, defect 3: a pointer to another run (relative or absolute) is ignored, never followed."""
    other = tmp_path / "other" / "checkpoints"
    CheckpointDir(other).save(9, {"w": torch.ones(2)}, {"step": 9})
    ckpts = CheckpointDir(tmp_path / "run" / "checkpoints")
    own = ckpts.save(1, {"w": torch.zeros(2)}, {"step": 1})
    (ckpts.root / "latest.json").write_text(json.dumps({"file": name.replace("/abs", str(tmp_path / "other"
                                                                                       / "checkpoints")),
                                                        "step": 9}))
    assert ckpts.latest() == own and resolve(tmp_path / "run") == own


def test_non_finite_weights_are_never_written(tmp_path):
    ckpts = CheckpointDir(tmp_path)
    with pytest.raises(CheckpointError, match="weights of g hold NaN or Inf"):
        ckpts.save(1, {"g": {"w": torch.tensor([1.0, float("nan")])}, "d": {"w": torch.ones(1)}}, {"step": 1})
    assert list(tmp_path.iterdir()) == []


def test_version_1_checkpoints_still_load_and_their_tensors_are_verified(tmp_path):
    """Checkpoints written before the checksum covered the header: loaded, tensors verified."""
    from safetensors.torch import save as st_save

    from gankit.checkpoint import _digest

    tensors = {"w": torch.randn(5)}
    header = {"format": "gankit-checkpoint", "version": 1, "sha256": _digest(tensors),
              "state": {"__dict__": [["w", {"__tensor__": "w"}]]}, "meta": {"step": 5}}
    path = tmp_path / "v1.safetensors"
    path.write_bytes(st_save(tensors, metadata={"gankit": json.dumps(header)}))
    state, meta = load_checkpoint(path)
    assert meta == {"step": 5} and torch.equal(state["w"], tensors["w"])
    path.write_bytes(_flip(path.read_bytes(), -1))
    with pytest.raises(CheckpointError, match="checksum mismatch: its tensors do not match"):
        load_checkpoint(path)


def test_an_edited_step_in_the_header_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "ck.safetensors", {"w": torch.ones(3)}, {"step": 5, "data": {"index": 2}})
    raw = path.read_bytes()
    for old, new in ((b'\\"step\\": 5', b'\\"step\\": 7'), (b'\\"index\\": 2', b'\\"index\\": 3')):
        assert raw.count(old) == 1
        path.write_bytes(raw.replace(old, new))
        with pytest.raises(CheckpointError, match="checksum mismatch: its tensors and metadata"):
            load_checkpoint(path)


def _flip(raw: bytes, pos: int) -> bytes:
    out = bytearray(raw)
    out[pos] ^= 0x01
    return bytes(out)


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path):
    """An hf export, a grid or a checkpoint is readable as any file the user writes (was 0600)."""
    import os
    import stat

    from gankit.checkpoint import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b.bin", b"x")
        assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o600
    finally:
        os.umask(old)
