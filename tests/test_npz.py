"""The one `.npz` reader (gankit.data.npz): headers checked against the archive before anything is allocated,
only the rows asked for read, no pickles; and a fuzz of the files `gankit eval` and `gankit translate` read."""
from __future__ import annotations

import io
import random
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gankit.data.npz import NpzFile
from gankit.data.source import DataError
from gankit.metrics.api import load_labelled_samples
from gankit.metrics.errors import EvalError
from gankit.translation.files import read_inputs


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=True)
    return buf.getvalue()


def _claiming(descr: str, shape: object, data: bytes = b"\0" * 64, fortran: bool = False) -> bytes:
    """A .npy member whose header claims ``descr`` and ``shape`` over ``data``."""
    text = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape}, }}".encode("latin1")
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_headers_are_checked_against_the_archive_before_any_allocation(tmp_path):
    huge = _zip(tmp_path / "huge.npz", {"images.npy": _claiming("|u1", (10**12, 28, 28, 1))})
    with NpzFile(huge) as npz, pytest.raises(DataError, match=r"claims uint8 1000000000000 x 28 x 28 x 1 .* holds 64 "):
        npz.info("images")
    pickled = _zip(tmp_path / "obj.npz", {"images.npy": _npy(np.array([{"a": 1}, None], dtype=object))})
    with NpzFile(pickled) as npz, pytest.raises(DataError, match="Python objects .* never unpickles"):
        npz.read("images")
    for descr, shape in (("|V8", (8,)), ("<U0", (10**15,)), ("<f4", (-1, 4))):
        path = _zip(tmp_path / "odd.npz", {"images.npy": _claiming(descr, shape)})
        with NpzFile(path) as npz, pytest.raises(DataError, match="`images`"):
            npz.read("images")
    bomb = _zip(tmp_path / "bomb.npz", {"images.npy": _npy(np.zeros(1000, np.uint8))}, zipfile.ZIP_DEFLATED)
    raw = bytearray(bomb.read_bytes())
    central = raw.rindex(b"PK\x01\x02")
    raw[central + 24:central + 28] = struct.pack("<I", 2**31)  # the directory claims 2 GiB uncompressed
    (tmp_path / "bomb.npz").write_bytes(bytes(raw))
    with NpzFile(bomb) as npz, pytest.raises(DataError, match="more than deflate can produce"):
        npz.info("images")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(DataError, match="single.npz is a single .npy array"):
        NpzFile((tmp_path / "single.npy").rename(tmp_path / "single.npz"))


def test_only_the_rows_asked_for_are_read(tmp_path):
    """Issue 27, defect 13: the first 10 rows of a 64 MB array cost about their own size (an honest 2 GB
    array cost 2.5 GB to evaluate with --num 10)."""
    images = np.random.default_rng(0).integers(0, 255, (80_000, 28, 28, 1), dtype=np.uint8)
    path = tmp_path / "big.npz"
    np.savez(path, images=images, labels=np.arange(80_000))
    tracemalloc.start()
    try:
        x, y, _ = load_labelled_samples(path, 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert torch.equal(x, torch.from_numpy(images[:10]).permute(0, 3, 1, 2)) and y.tolist() == list(range(10))


def test_reads_what_numpy_writes(tmp_path):
    """Fortran order, big-endian, compressed, format 2.0: the same arrays as np.load."""
    f = np.asfortranarray(np.arange(60, dtype=">f8").reshape(10, 6))
    np.savez_compressed(tmp_path / "a.npz", points=f, labels=np.arange(10, dtype=">i4"))
    with NpzFile(tmp_path / "a.npz") as npz:
        assert np.array_equal(npz.read("points"), f) and np.array_equal(npz.read("points", 3), f[:3])
        assert npz.read("points").dtype == np.float64 and npz.read("points").flags.c_contiguous
        assert npz.read("labels", 4).tolist() == [0, 1, 2, 3]
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ones((2, 3), np.uint8), version=(2, 0))
    with NpzFile(_zip(tmp_path / "v2.npz", {"images.npy": buf.getvalue()})) as npz:
        assert npz.read("images").tolist() == [[1, 1, 1]] * 2


def test_the_bundled_digits_go_through_the_reader():
    from importlib import resources

    from gankit.data.bundled import load_mnist10k_arrays

    images, labels = load_mnist10k_arrays()
    with resources.files("gankit.assets").joinpath("mnist10k.npz").open("rb") as fh, np.load(fh) as npz:
        assert np.array_equal(images, npz["images"]) and np.array_equal(labels, npz["labels"])


# ---------------------------------------------------------------------------------------------
# Fuzz: ~1,000 seeded mutations of small valid files of each kind gankit reads


IMAGES = np.random.default_rng(1).integers(0, 255, (6, 8, 8, 1), dtype=np.uint8)
LABELS = np.arange(6, dtype=np.int64) % 3
POINTS = np.random.default_rng(2).normal(size=(20, 2)).astype(np.float32)
SMALL = np.random.default_rng(3).integers(0, 255, (3, 7, 7), dtype=np.uint8)
MASKS = (np.random.default_rng(4).random((3, 7, 7)) < 0.3).astype(np.uint8)


def _base_files() -> list[tuple[str, bytes]]:
    """(kind, bytes): eval images with labels (stored), eval points (deflated), translate inputs with masks."""
    out = []
    for kind, arrays, method in (("images", {"images": IMAGES, "labels": LABELS}, zipfile.ZIP_STORED),
                                 ("points", {"points": POINTS}, zipfile.ZIP_DEFLATED),
                                 ("translate", {"images": SMALL, "masks": MASKS}, zipfile.ZIP_STORED)):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", method) as zf:
            for key, array in arrays.items():
                zf.writestr(f"{key}.npy", _npy(array))
        out.append((kind, buf.getvalue()))
    return out


def _rebuild(raw: bytes, rng: random.Random) -> bytes:
    """The archive rebuilt with one member changed: renamed, its header's shape or dtype claim replaced,
    its data cut short, or an object array in its place."""
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        members = {i.filename: (zf.read(i), i.compress_type) for i in zf.infolist()}
    name = rng.choice(sorted(members))
    data, method = members.pop(name)
    key = name[:-4]
    how = rng.randrange(5)
    if how == 0:  # a wrong or odd key
        name = rng.choice([key + "s.npy", key, key.upper() + ".npy", "x/" + name, "labels.npy", name + ".npy"])
    elif how == 1:  # the header claims another shape over the same bytes
        shape = rng.choice([(10**12, 28, 28, 1), (2**63,), (0,), (-1, 8), (), (6, 8, 8, 1, 1), (3, 7, 7, 0),
                            (1, 7, 7), (10**6, 7, 7), (6, 2**40, 2**40), (5,), (True, 3)])
        data = _claiming(rng.choice(["|u1", "<f4", "<i8"]), shape, data[128:])
    elif how == 2:  # another dtype: objects, void, strings, complex, big-endian, a dtype with no size
        descr = rng.choice(["|O", "|V8", "<U1", "<c8", ">f4", "<U0", "|b1", "<M8[s]", "<f16", "<U1000000000"])
        data = _claiming(descr, rng.choice([(6, 8, 8, 1), (20, 2), (3, 7, 7), (6,), (1,)]), data[128:])
    elif how == 3:  # the data cut short (the zip itself stays valid)
        data = data[:rng.randrange(len(data))]
    else:  # an object array, pickled, as np.savez(allow_pickle=True) writes it
        data = _npy(np.array([None, {"x": 1}, [2]], dtype=object))
    members[name] = (data, method)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for member, (content, member_method) in members.items():
            out.writestr(zipfile.ZipInfo(member), content, member_method)
    return buf.getvalue()


def _mutate(raw: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    out = bytearray(raw)
    if kind == 0:  # 1-3 bytes replaced anywhere
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(out))
            out[pos] = rng.choice([rng.randrange(256), out[pos] ^ (1 << rng.randrange(8))])
    elif kind == 1:  # a byte of a member's .npy header (magic, version, length, dict)
        starts = [i for i in range(len(raw)) if raw.startswith(b"\x93NUMPY", i)] or [0]
        pos = rng.choice(starts) + rng.randrange(128)
        if pos < len(out):
            out[pos] = rng.randrange(256)
    elif kind == 2:  # the file cut short
        out = out[:rng.randrange(len(out))]
    elif kind == 3:  # a size, CRC or offset in the central directory
        central = raw.rfind(b"PK\x01\x02")
        if central >= 0:
            field = rng.choice([16, 20, 24, 42])  # CRC-32, compressed size, uncompressed size, local offset
            out[central + field:central + field + 4] = struct.pack("<I", rng.choice(
                [0, 1, 2**31, 2**32 - 1, rng.randrange(2**32)]))
    else:
        return _rebuild(raw, rng)
    return bytes(out)


def _check_read(kind: str, path: Path) -> str:
    """Refused by the path's own error class in one line naming the file, or read exactly as written (a
    mutation may leave what is read intact: zip metadata, a renamed `labels` or `masks`)."""
    if kind == "translate":
        try:
            images, masks, _ = read_inputs(path, (1, 7, 7))
        except DataError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), str(exc)
            return "refused"
        assert torch.equal(images[:, 0], torch.from_numpy(SMALL))
        assert masks is None or torch.equal(masks[:, 0], torch.from_numpy(MASKS))
        return "read"
    try:
        x, y, _ = load_labelled_samples(path, 1000)
    except EvalError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc), str(exc)
        return "refused"
    if kind == "images":
        assert torch.equal(x, torch.from_numpy(IMAGES).permute(0, 3, 1, 2))
        assert y is None or y.tolist() == LABELS.tolist()
    else:
        assert torch.equal(x, torch.from_numpy(POINTS))
    return "read"


def test_fuzzed_npz_inputs_are_refused_in_one_line_or_read_exactly(tmp_path):
    """1,000 seeded mutations of the .npz files eval and translate read (byte flips, header claims of shape
    and dtype, truncated members and files, wrong keys, pickled object arrays, lying zip directories): each is
    refused with EvalError (eval) or DataError (translate) in one line naming the file, or read exactly as
    written; never another exception, never more than 64 MiB allocated, never more than 2 s of CPU."""
    rng = random.Random(27)
    bases = _base_files()
    path = tmp_path / "fuzzed.npz"
    outcomes = {"refused": 0, "read": 0}
    tracemalloc.start()
    try:
        for i in range(1000):
            kind, raw = bases[i % len(bases)]
            path.write_bytes(_mutate(raw, rng))
            tracemalloc.reset_peak()
            t0 = time.process_time()  # CPU time: a busy shared machine must not fail it
            outcomes[_check_read(kind, path)] += 1
            assert time.process_time() - t0 < 2, f"mutation {i} took {time.process_time() - t0:.1f} s"
            assert tracemalloc.get_traced_memory()[1] < 64 << 20, f"mutation {i} allocated too much"
    finally:
        tracemalloc.stop()
    assert outcomes["refused"] > 600 and outcomes["read"] > 20, outcomes
