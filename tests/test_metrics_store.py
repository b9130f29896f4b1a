"""gankit.metrics.store: where the caches live, content digests, and the safetensors header reader that
refuses pickles and damaged files with one EvalError (the reference cache and Inception weights rely on it)."""
from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, save

from gankit.metrics.errors import EvalError
from gankit.metrics.store import cache_root, digest, safetensors_metadata


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GANKIT_CACHE", "~/elsewhere")
    assert cache_root() == tmp_path / "home" / "elsewhere"  # ~ expanded, as a shell would
    monkeypatch.delenv("GANKIT_CACHE")
    assert cache_root() == Path.home() / ".cache" / "gankit" == tmp_path / "home" / ".cache" / "gankit"
    monkeypatch.setenv("GANKIT_CACHE", "")  # set but empty: the default, not the current directory
    assert cache_root() == tmp_path / "home" / ".cache" / "gankit"


def test_digest_tells_contents_apart_and_is_stable():
    a = save({"w": torch.arange(6.0)})
    b = save({"w": torch.arange(6.0) + 1e-6})
    assert digest(a) == digest(bytes(a)) and len(digest(a)) == 12
    assert int(digest(a), 16) >= 0  # hexadecimal
    assert digest(a) != digest(b)
    assert digest(b"") == "e3b0c44298fc"  # the first 12 hex digits of SHA-256 of nothing


def test_metadata_of_a_real_safetensors_file():
    raw = save({"features": torch.randn(3, 4, dtype=torch.float64)},
               metadata={"gankit": json.dumps({"version": 2}), "note": "x"})
    assert safetensors_metadata(raw, "f.safetensors") == {"gankit": '{"version": 2}', "note": "x"}
    assert load(raw)["features"].shape == (3, 4)  # the header reader left the file as it was
    assert safetensors_metadata(save({"w": torch.zeros(2)}), "f") == {}  # no metadata: empty, not an error


def _raw(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def test_a_header_length_beginning_with_0x80_is_not_taken_for_a_pickle():
    header = json.dumps({"__metadata__": {"k": "v"}}).encode()
    header = header + b" " * (128 - len(header))  # safetensors pads its header with spaces
    raw = _raw(header)
    assert raw[:1] == b"\x80"
    assert safetensors_metadata(raw, "f") == {"k": "v"}


@pytest.mark.parametrize("case", ["pickle", "torch-save", "short", "too-long", "not-json", "a-list", "empty",
                                  "metadata-a-list", "metadata-a-string"])
def test_anything_but_a_safetensors_file_is_one_eval_error_naming_it(case):
    import pickle

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    raw = {
        "pickle": pickle.dumps({"w": [1.0, 2.0]}, protocol=4),
        "torch-save": buf.getvalue(),
        "short": b"\x10\x00\x00",
        "too-long": _raw(b'{"a": 1}')[:12],
        "not-json": _raw(b"{not json}"),
        "a-list": _raw(b"[1, 2]"),
        "empty": b"",
        "metadata-a-list": _raw(b'{"__metadata__": [1, 2]}'),
        "metadata-a-string": _raw(b'{"__metadata__": "abc"}'),
    }[case]
    expected = "pickle / torch.save" if case in ("pickle", "torch-save") else "not a safetensors file"
    with pytest.raises(EvalError, match=expected) as info:
        safetensors_metadata(raw, "/cache/weights.bin")
    assert str(info.value).startswith("/cache/weights.bin ")
