"""The one reader of ``.npz`` files: samples to evaluate, images to translate, the bundled digits.

Nothing is trusted before it is checked: no pickles (object dtypes are refused from the header), every
member's header (shape, dtype) is checked against the bytes the archive says it holds, and those against
what its compression can produce, before an array is allocated; then only the rows asked for are read
(the first ``--num`` of a 2 GB array cost their own size). Every failure is one DataError naming the file.
"""
from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from gankit.data.source import DataError, memory_shortfall

DEFLATE_MAX_RATIO = 1032  # deflate's best case (a 258-byte match in about 2 bits): more is a lie or a bomb
_CHUNK = 16 << 20  # bytes decompressed per read, so a full read never holds a second copy of the array
# what a zip may throw at a damaged or hostile archive, besides OSError and ValueError
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
               NotImplementedError, RuntimeError, OverflowError, IndexError, KeyError)


@dataclass(frozen=True)
class ArrayInfo:
    """What a member's header claims, checked against the archive: shape, dtype and C or Fortran order."""

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int  # bytes of the member before its data: magic and header

    def describe(self) -> str:
        return f"{self.dtype} {_shape(self.shape)}"


class NpzFile:
    """An ``.npz`` archive opened for checked reading: ``keys``, ``info(key)`` from the header alone, and
    ``read(key, rows)``; use it as a context manager."""

    def __init__(self, source: str | Path | IO[bytes], name: str | None = None) -> None:
        self.name = name or str(source)
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise DataError(f"no such file: {path}" if not path.exists() else f"{path} is not a file")
        try:
            self._zip = zipfile.ZipFile(source)
        except zipfile.BadZipFile:
            raise DataError(self._not_an_archive(source)) from None
        except _ZIP_ERRORS as exc:
            raise DataError(f"{self.name} is not a readable .npz archive: {_text(exc)}") from None
        try:
            members = self._zip.infolist()
        except _ZIP_ERRORS as exc:
            raise DataError(f"{self.name} is not a readable .npz archive: {_text(exc)}") from None
        self._members = {m.filename[:-4]: m for m in members if m.filename.endswith(".npy")}
        self._infos: dict[str, ArrayInfo] = {}

    def _not_an_archive(self, source: str | Path | IO[bytes]) -> str:
        try:
            if isinstance(source, (str, Path)):
                with open(source, "rb") as fh:
                    head = fh.read(6)
            else:
                source.seek(0)
                head = source.read(6)
        except OSError:
            head = b""
        if head == b"\x93NUMPY":
            return (f"{self.name} is a single .npy array, not an .npz archive (write one with "
                    "np.savez(path, images=...))")
        return f"{self.name} is not an .npz archive (not a zip file)"

    def __enter__(self) -> NpzFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    @property
    def keys(self) -> list[str]:
        return list(self._members)

    def __contains__(self, key: str) -> bool:
        return key in self._members

    def info(self, key: str) -> ArrayInfo:
        """The checked header of ``key``: a plain dtype (no objects, fields or sub-arrays) and a shape whose
        bytes are exactly what the member holds."""
        if key in self._infos:
            return self._infos[key]
        if key not in self._members:
            raise DataError(f"{self.name} holds no `{key}` array (it has: {', '.join(self._members) or 'none'})")
        member = self._members[key]
        where = f"{self.name}: `{key}`"
        if member.compress_type == zipfile.ZIP_STORED:
            if member.file_size != member.compress_size:
                raise DataError(f"{where}: the archive claims {member.file_size:,} bytes stored in "
                                f"{member.compress_size:,} (damaged)")
        elif member.compress_type == zipfile.ZIP_DEFLATED:
            if member.file_size > DEFLATE_MAX_RATIO * member.compress_size + 1024:
                raise DataError(f"{where}: the archive claims {member.file_size:,} bytes from {member.compress_size:,} "
                                "compressed, more than deflate can produce (damaged, or a zip bomb)")
        else:
            raise DataError(f"{where} is compressed with zip method {member.compress_type}; gankit reads the stored "
                            "and deflated members that np.savez and np.savez_compressed write")
        try:
            with self._zip.open(member) as fp:
                version = np.lib.format.read_magic(fp)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
                else:
                    raise DataError(f"{where}: .npy format version {version[0]}.{version[1]}; gankit reads 1.0 "
                                    "and 2.0")
                offset = fp.tell()
        except DataError:
            raise
        except (*_ZIP_ERRORS, SyntaxError, RecursionError, MemoryError) as exc:
            raise DataError(f"{where} is damaged or not an .npy array: {_text(exc)}") from None
        if dtype.hasobject:
            raise DataError(f"{where} holds Python objects ({dtype}), which gankit never unpickles; save plain "
                            "numbers")
        if dtype.kind not in "biufcSUmM" or dtype.fields is not None or dtype.subdtype is not None \
                or dtype.itemsize == 0:
            raise DataError(f"{where} has the dtype {dtype}; gankit reads plain arrays of numbers")
        if any(d < 0 for d in shape):
            raise DataError(f"{where}: the header claims the shape {shape}")
        nbytes = math.prod(shape) * dtype.itemsize
        if member.file_size - offset != nbytes:
            raise DataError(f"{where}: the header claims {dtype} {_shape(shape)} ({nbytes:,} bytes) "
                            f"but the archive holds {max(0, member.file_size - offset):,} bytes of data (damaged)")
        info = ArrayInfo(key, tuple(int(d) for d in shape), dtype, bool(fortran), offset)
        self._infos[key] = info
        return info

    def read(self, key: str, rows: int | None = None) -> np.ndarray:
        """``key``'s array, or its first ``rows`` rows, in native byte order; the rest is never read (a
        Fortran-ordered array is read whole first: its rows are not contiguous)."""
        info = self.info(key)
        shape = info.shape
        if rows is not None and shape and not info.fortran_order:
            shape = (min(max(rows, 0), shape[0]), *shape[1:])
        count = math.prod(shape)
        nbytes = count * info.dtype.itemsize
        short = memory_shortfall(nbytes)
        if short:
            raise DataError(f"{self.name}: `{key}` ({info.describe()}): {count:,} values {short}")
        flat = np.empty(count, info.dtype)
        view = flat.view(np.uint8)
        got = 0
        try:
            with self._zip.open(self._members[key]) as fp:
                fp.read(info.offset)
                while got < nbytes:
                    n = fp.readinto(view[got:got + _CHUNK])  # type: ignore[attr-defined]
                    if not n:
                        break
                    got += n
                if got == nbytes and nbytes + info.offset == self._members[key].file_size:
                    fp.read(1)  # at the end: zipfile compares the CRC-32 of the whole member
        except _ZIP_ERRORS as exc:
            raise DataError(f"{self.name}: cannot read `{key}`: {_text(exc)}") from None
        if got < nbytes:
            raise DataError(f"{self.name}: `{key}` ends after {got:,} of {nbytes:,} bytes (truncated)")
        array = flat.reshape(shape, order="F" if info.fortran_order else "C")
        if rows is not None and info.fortran_order and shape:
            array = array[:max(rows, 0)]
        array = np.ascontiguousarray(array)
        return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(map(str, shape)) or "scalar"


def _text(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def open_npz(path: str | Path) -> NpzFile:
    """:class:`NpzFile` of a user's file."""
    return NpzFile(path)


def read_arrays(source: str | Path | IO[bytes], keys: tuple[str, ...], name: str | None = None
                ) -> dict[str, Any]:
    """Whole arrays ``keys`` of an archive (each must be there)."""
    with NpzFile(source, name) as npz:
        return {k: npz.read(k) for k in keys}
