"""Receiving a .npy matrix from S3 into the array that serves it, without a second copy.

The item matrix is published as its two bfloat16-half planes (item_matrix.py), the layout the
scorer reads. Such a file is received straight into a buffer of its own (objects.py: huge pages,
hashed slice by slice while the next is on the wire), and ``receive_item_planes`` makes the
planes a view of that buffer: no copy. User factors (row-major, a row per request) arrive the
same way (``receive_matrix``).

Versions published before hold a float32 item matrix: a Fortran-order one is received whole and
converted to planes (``to_planes``); a C-order one is streamed and converted chunk by chunk as
it arrives (``read_into_planes``), never held twice.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from personalize_core.errors import ArtifactError
from personalize_core.modelstore.item_matrix import LAYOUT, ItemMatrix, write_rows
from personalize_core.modelstore.layout import FileEntry
from personalize_core.modelstore.npy import NpyHeader, npy_header
from personalize_core.modelstore.objects import Received

_MAX_HEADER = 1 << 16


#: Rows converted at once from a float32 matrix to planes (bounds the conversion's temporaries).
_CONVERT_ROWS = 65_536


def read_into_planes(
    name: str, chunks: Iterable[bytes], entry: FileEntry, rows: int, dims: int
) -> ItemMatrix:
    """The planes of a C-order float32 [rows, dims] .npy, converted chunk by chunk as it arrives.
    Raises ArtifactError on any mismatch (the values are checked by the load's norm pass)."""
    digest = entry.running_checksum()
    received = 0
    pending = b""
    out: np.ndarray | None = None
    row_bytes = dims * 4
    filled = 0
    for chunk in chunks:
        digest.update(chunk)
        received += len(chunk)
        pending = pending + chunk if pending else chunk
        if out is None:
            header = npy_header(pending[:_MAX_HEADER])
            if header is None:
                if len(pending) >= _MAX_HEADER:
                    raise ArtifactError(f"{name}: .npy header is too large")
                continue
            _check_header(name, header, entry, rows, dims)
            if header.fortran_order:
                raise ArtifactError(f"{name}: a Fortran-order matrix is received whole, not streamed")
            out = np.empty((2, rows * dims), dtype=np.uint16)
            pending = pending[header.offset :]
        whole = min(len(pending) // row_bytes, rows - filled)
        if whole:
            block = np.frombuffer(pending, dtype=np.float32, count=whole * dims).reshape(whole, dims)
            write_rows(out, rows, dims, filled, block)
            filled += whole
            pending = pending[whole * row_bytes :]
    if out is None or filled != rows or pending or received != entry.size:
        raise ArtifactError(f"{name} does not match the manifest's size (truncated or trailing bytes)")
    if digest.hexdigest() != entry.checksum:
        raise ArtifactError(f"{name} does not match the manifest's size and checksum")
    out.flags.writeable = False
    return ItemMatrix(out, rows, dims)


def to_planes(matrix: np.ndarray) -> ItemMatrix:
    """The planes of a float32 [rows, dims] matrix (any layout), converted a slice at a time."""
    rows, dims = matrix.shape
    planes = np.empty((2, rows * dims), dtype=np.uint16)
    for start in range(0, rows, _CONVERT_ROWS):
        write_rows(planes, rows, dims, start, matrix[start : start + _CONVERT_ROWS])
    planes.flags.writeable = False
    return ItemMatrix(planes, rows, dims)


def _checked_buffer(name: str, received: Received, entry: FileEntry) -> np.ndarray:
    checked = received.crc32 == entry.crc32 if entry.crc32 is not None else entry.matches(received.buffer)
    if not checked:  # (a version published without CRC-32s is checked against its SHA-256s here)
        raise ArtifactError(f"{name} does not match the manifest's size and checksum")
    buffer = np.frombuffer(received.buffer, dtype=np.uint8)
    buffer.flags.writeable = False  # and so every view of it below
    return buffer


def item_planes(name: str, data: np.ndarray, entry: FileEntry, rows: int, dims: int) -> ItemMatrix:
    """The planes an item-matrix file holds (``data``: its bytes as uint8), checked against the
    manifest. Raises ArtifactError on any mismatch."""
    if entry.layout != LAYOUT:
        raise ArtifactError(
            f"{name} has layout {entry.layout!r}, which this version of the service cannot read"
        )
    header = npy_header(memoryview(data)[:_MAX_HEADER])
    if header is None:
        raise ArtifactError(f"{name}: not a .npy file (the header is truncated)")
    if header.dtype != np.uint16 or header.shape != (2, rows * dims) or header.fortran_order:
        raise ArtifactError(
            f"{name} is {header.dtype}{list(header.shape)}, expected uint16 [2, {rows * dims}]"
        )
    if entry.size != header.offset + header.data_bytes:
        raise ArtifactError(f"{name} does not match the manifest's size")
    return ItemMatrix(data[header.offset :].view(np.uint16).reshape(2, rows * dims), rows, dims)


def receive_item_planes(name: str, received: Received, entry: FileEntry, rows: int, dims: int) -> ItemMatrix:
    """The item matrix's planes viewing the buffer they were received into (no copy)."""
    return item_planes(name, _checked_buffer(name, received, entry), entry, rows, dims)


def receive_matrix(
    name: str, received: Received, entry: FileEntry, rows: int, dims: int
) -> tuple[np.ndarray, np.ndarray]:
    """A float32 [rows, dims] matrix viewing the buffer it was received into, and its squared row
    norms. A Fortran-order file gives the dimension-major layout (a transposed view of [d, rows]), a
    C-order one the row-major layout. Raises ArtifactError on any mismatch with the manifest."""
    buffer = _checked_buffer(name, received, entry)
    header = npy_header(memoryview(buffer)[:_MAX_HEADER])
    if header is None:
        raise ArtifactError(f"{name}: not a .npy file (the header is truncated)")
    _check_header(name, header, entry, rows, dims)
    data = buffer[header.offset :].view(np.float32)
    if header.fortran_order:
        stored = data.reshape(dims, rows)
        squared_norms = np.einsum("ij,ij->j", stored, stored)
        matrix = stored.T
    else:
        matrix = data.reshape(rows, dims)
        squared_norms = np.einsum("ij,ij->i", matrix, matrix)
    # One pass checks the values too: a NaN or an infinity makes its row's squared norm non-finite
    # (and so does a value too large to square, which no softmax could use either).
    if not np.isfinite(squared_norms).all():
        raise ArtifactError(f"{name} holds NaN or infinite values")
    return matrix, squared_norms


def _check_header(name: str, header: NpyHeader, entry: FileEntry, rows: int, dims: int) -> None:
    if header.dtype != np.float32 or header.shape != (rows, dims):
        raise ArtifactError(
            f"{name} is {header.dtype}{list(header.shape)}, expected float32 [{rows}, {dims}]"
        )
    if entry.size != header.offset + header.data_bytes:
        raise ArtifactError(f"{name} does not match the manifest's size")
