"""Receiving a .npy matrix from S3 into the array that serves it, without a second copy.

The scorer streams the item matrix best dimension-major ([d, items] in memory: BLAS's
matrix-vector kernel then reads it at memory bandwidth), so the publisher writes it that way: a
Fortran-order .npy of [items, d]. Such a file is received straight into a buffer of its own
(objects.py: huge pages, hashed slice by slice while the next is on the wire), and
``receive_matrix`` makes the matrix a view of that buffer: no transposition, no copy. User
factors (row-major, a row per request) arrive the same way.

Versions published before that hold a C-order item matrix: ``read_dimension_major`` transposes
those chunk by chunk as they arrive. Either way the process never holds the matrix twice.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from personalize_core.errors import ArtifactError
from personalize_core.modelstore.layout import FileEntry
from personalize_core.modelstore.npy import NpyHeader, npy_header
from personalize_core.modelstore.objects import Received

_MAX_HEADER = 1 << 16


def read_dimension_major(
    name: str, chunks: Iterable[bytes], entry: FileEntry, rows: int, dims: int
) -> tuple[np.ndarray, float]:
    """A float32 [rows, dims] matrix from .npy chunks, laid out [dims, rows] in memory (returned as
    its transpose view), with its largest row norm. Raises ArtifactError on any mismatch."""
    digest = entry.running_checksum()
    received = 0
    pending = b""
    out: np.ndarray | None = None
    row_bytes = dims * 4
    filled = 0
    largest = 0.0
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
            out = np.empty((dims, rows), dtype=np.float32)
            pending = pending[header.offset :]
        whole = min(len(pending) // row_bytes, rows - filled)
        if whole:
            block = np.frombuffer(pending, dtype=np.float32, count=whole * dims).reshape(whole, dims)
            if not np.isfinite(block).all():
                raise ArtifactError(f"{name} holds NaN or infinite values")
            largest = max(largest, float(np.einsum("ij,ij->i", block, block).max()))
            out[:, filled : filled + whole] = block.T
            filled += whole
            pending = pending[whole * row_bytes :]
    if out is None or filled != rows or pending or received != entry.size:
        raise ArtifactError(f"{name} does not match the manifest's size (truncated or trailing bytes)")
    if digest.hexdigest() != entry.checksum:
        raise ArtifactError(f"{name} does not match the manifest's size and checksum")
    out.flags.writeable = False
    return out.T, float(np.sqrt(largest))


def receive_matrix(
    name: str, received: Received, entry: FileEntry, rows: int, dims: int
) -> tuple[np.ndarray, np.ndarray]:
    """A float32 [rows, dims] matrix viewing the buffer it was received into, and its squared row
    norms. A Fortran-order file gives the dimension-major layout (a transposed view of [d, rows]), a
    C-order one the row-major layout. Raises ArtifactError on any mismatch with the manifest."""
    checked = received.crc32 == entry.crc32 if entry.crc32 is not None else entry.matches(received.buffer)
    if not checked:  # (a version published without CRC-32s is checked against its SHA-256s here)
        raise ArtifactError(f"{name} does not match the manifest's size and checksum")
    buffer = np.frombuffer(received.buffer, dtype=np.uint8)
    buffer.flags.writeable = False  # and so every view of it below
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
