"""Receiving a .npy matrix from S3 into the array that serves it, without a second copy.

The scorer streams the item matrix best dimension-major ([d, items] in memory: BLAS's
matrix-vector kernel then reads it at memory bandwidth), so the publisher writes it that way: a
Fortran-order .npy of [items, d]. ``receive_matrix`` lands such a file straight in a numpy-allocated
buffer (which numpy backs with huge pages), hashing each slice while the next is on the wire, and
the matrix is a view of that buffer: no transposition, no copy. User factors (row-major, a row per
request) arrive the same way.

Versions published before that hold a C-order item matrix: ``read_dimension_major`` transposes
those chunk by chunk as they arrive. Either way the process never holds the matrix twice.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterable

import numpy as np

from .artifacts import FileEntry, NpyHeader, npy_header
from .errors import ArtifactError

_MAX_HEADER = 1 << 16


def read_dimension_major(
    name: str, chunks: Iterable[bytes], entry: FileEntry, rows: int, dims: int
) -> tuple[np.ndarray, float]:
    """A float32 [rows, dims] matrix from .npy chunks, laid out [dims, rows] in memory (returned as
    its transpose view), with its largest row norm. Raises ArtifactError on any mismatch."""
    digest = hashlib.sha256()
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
    if digest.hexdigest() != entry.sha256:
        raise ArtifactError(f"{name} does not match the manifest's size and sha256")
    out.flags.writeable = False
    return out.T, float(np.sqrt(largest))


#: Receives an object into a buffer of its exact size, handing each landed slice to a callback.
ReadInto = Callable[[memoryview, Callable[[memoryview], None]], None]


def receive_matrix(
    name: str, read_into: ReadInto, entry: FileEntry, rows: int, dims: int
) -> tuple[np.ndarray, np.ndarray]:
    """A float32 [rows, dims] matrix received straight into its serving array, and its squared row
    norms. A Fortran-order file gives the dimension-major layout (a transposed view of [d, rows]), a
    C-order one the row-major layout. Raises ArtifactError on any mismatch with the manifest."""
    buffer = np.empty(entry.size, dtype=np.uint8)
    with _HashingAlong() as digest:
        read_into(memoryview(buffer), digest.update)
    if digest.hexdigest() != entry.sha256:
        raise ArtifactError(f"{name} does not match the manifest's size and sha256")
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


class _HashingAlong:
    """SHA-256 of slices handed over in order, computed on its own thread while the next slice is
    received (hashlib lets go of the GIL on large buffers), so the check costs no wall time when
    the network is the slower of the two. A handed-over slice must not change afterwards."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._slices: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)

    def __enter__(self) -> _HashingAlong:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._slices.put(None)
        self._thread.join()

    def update(self, data: memoryview) -> None:
        self._slices.put(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def _run(self) -> None:
        while (data := self._slices.get()) is not None:
            self._digest.update(data)


def _check_header(name: str, header: NpyHeader, entry: FileEntry, rows: int, dims: int) -> None:
    if header.dtype != np.float32 or header.shape != (rows, dims):
        raise ArtifactError(
            f"{name} is {header.dtype}{list(header.shape)}, expected float32 [{rows}, {dims}]"
        )
    if entry.size != header.offset + header.data_bytes:
        raise ArtifactError(f"{name} does not match the manifest's size")
