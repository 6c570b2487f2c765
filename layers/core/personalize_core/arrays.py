"""Streaming a .npy matrix from S3 into the layout the kernels read fastest, without a second copy.

The item matrix is published row-major ([items, d], what numpy writes); the scorer streams it best
dimension-major ([d, items] in memory: BLAS's matrix-vector kernel then reads it at memory
bandwidth). The download is transposed chunk by chunk into a numpy-allocated array (which numpy
backs with huge pages), verified (size, sha256, finite values) as it arrives: at no time does the
process hold the matrix twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from .artifacts import FileEntry, npy_header
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
            shape, dtype, offset = header
            if dtype != np.float32 or shape != (rows, dims):
                raise ArtifactError(f"{name} is {dtype}{list(shape)}, expected float32 [{rows}, {dims}]")
            if entry.size != offset + rows * row_bytes:
                raise ArtifactError(f"{name} does not match the manifest's size")
            out = np.empty((dims, rows), dtype=np.float32)
            pending = pending[offset:]
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
