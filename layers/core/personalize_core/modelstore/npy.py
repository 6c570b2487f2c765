""".npy files: the one encoder and header parser of the model's arrays (the publisher's and the loader's)."""

from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np

from personalize_core.errors import ArtifactError
from personalize_core.modelstore.layout import FileEntry


def encode_npy(array: np.ndarray, fortran_order: bool = False) -> bytes:
    """The .npy file of ``array``, in C order, or in Fortran order (column after column)."""
    buffer = io.BytesIO()
    laid_out = np.asfortranarray(array) if fortran_order and array.ndim > 1 else np.ascontiguousarray(array)
    np.save(buffer, laid_out, allow_pickle=False)
    return buffer.getvalue()


class NpyHeader(NamedTuple):
    shape: tuple[int, ...]
    dtype: np.dtype[np.generic]
    #: Where the array's bytes start (numpy pads headers so that this is a multiple of 64).
    offset: int
    fortran_order: bool

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def npy_header(prefix: bytes | memoryview) -> NpyHeader | None:
    """The header once ``prefix`` holds all of it; None before that.

    The one parser of .npy headers (whole files and streamed prefixes alike): versions 1 and 2,
    no Python objects.
    """
    if len(prefix) < 10:
        return None
    prefix = bytes(prefix[: 12 + (1 << 16)])  # a header is never longer (numpy's own limit)
    stream = io.BytesIO(prefix)
    try:
        major, _minor = np.lib.format.read_magic(stream)
        width = 2 if major == 1 else 4
        size = int.from_bytes(prefix[8 : 8 + width], "little")
        if len(prefix) < 8 + width + size:
            return None
        reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = reader(stream)
    except ValueError as exc:
        raise ArtifactError(f"not a .npy file: {exc}") from None
    if dtype.hasobject:
        raise ArtifactError("arrays must hold no Python objects")
    return NpyHeader(tuple(shape), dtype, stream.tell(), bool(fortran_order))


def decode_npy(data: bytes, entry: FileEntry) -> np.ndarray:
    """A read-only array viewing ``data`` (no copy), checked against the manifest's dtype and shape."""
    header = npy_header(data)
    if header is None:
        raise ArtifactError("not a .npy file: the header is truncated")
    if entry.dtype is not None and (header.dtype.str != entry.dtype or header.shape != entry.shape):
        raise ArtifactError(
            f"array is {header.dtype.str}{list(header.shape)}, the manifest says {entry.dtype}{entry.shape}"
        )
    if len(data) - header.offset != header.data_bytes:
        raise ArtifactError("array data is truncated or has trailing bytes")
    flat = np.frombuffer(
        data, dtype=header.dtype, count=header.data_bytes // header.dtype.itemsize, offset=header.offset
    )
    if header.fortran_order:
        return flat.reshape(header.shape[::-1]).T
    return flat.reshape(header.shape)
