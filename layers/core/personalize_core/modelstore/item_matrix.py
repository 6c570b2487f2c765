"""The item matrix as published and served: every float32 split into two bfloat16 halves.

A float32's high 16 bits are the float truncated to bfloat16 (sign, exponent, 7 fraction bits);
its low 16 bits are the rest of the fraction. The two halves of the whole [items, d] matrix are
kept as two uint16 planes, each in blocks of ``BLOCK_ITEMS`` items laid out dimension-major
(block b is [d, w_b], w_b = min(BLOCK_ITEMS, items - b * BLOCK_ITEMS), the blocks one after the
other). So:

- the high plane alone is a bfloat16 copy of the matrix: the scorer scans it, reading half the
  bytes of the float32 matrix, with a rigorous bound on the error (scoring.py), and re-ranks the
  few candidates exactly;
- both planes together are the float32 matrix, bit for bit, in exactly its memory: exact rows
  (rankings, re-ranks, related items) and exact tiles (batch products) are read from them;
- a block is contiguous, so a scan streams the planes front to back.

The file is a .npy of uint16 [2, items * d] (plane 0 high, plane 1 low); the manifest names the
layout (``LAYOUT``). ``write_rows`` is the one encoder: the publisher encodes a whole matrix with
it and the loader converts versions published before (a float32 matrix) with it.

Here everything is numpy; serving/native.py has compiled loops for the same reads.
"""

from __future__ import annotations

import numpy as np

from personalize_core.modelstore.npy import encode_npy

#: Items per block (the compiled kernels' PB).
BLOCK_ITEMS = 1024
#: The manifest's name for this layout (a FileEntry's ``layout``).
LAYOUT = "bf16-split-1024"
#: Blocks converted at once by the numpy loops (bounds their temporaries to ~16 MB at d = 64).
_GROUP = 16


class ItemMatrix:
    """A float32 [items, d] matrix held as its two bfloat16-half planes (see the module)."""

    __slots__ = ("dims", "num_items", "planes")

    def __init__(self, planes: np.ndarray, num_items: int, dims: int) -> None:
        if (
            planes.dtype != np.uint16
            or planes.shape != (2, num_items * dims)
            or not planes.flags.c_contiguous
        ):
            raise ValueError(
                f"item planes must be uint16 [2, {num_items * dims}], not {planes.dtype}{planes.shape}"
            )
        self.planes = planes
        self.num_items = num_items
        self.dims = dims

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> ItemMatrix:
        """Encode a float32 [items, d] matrix."""
        rows, dims = matrix.shape
        planes = np.empty((2, rows * dims), dtype=np.uint16)
        write_rows(planes, rows, dims, 0, matrix)
        return cls(planes, rows, dims)

    @property
    def shape(self) -> tuple[int, int]:
        return self.num_items, self.dims

    @property
    def nbytes(self) -> int:
        return int(self.planes.nbytes)

    @property
    def high(self) -> np.ndarray:
        high: np.ndarray = self.planes[0]
        return high

    @property
    def low(self) -> np.ndarray:
        low: np.ndarray = self.planes[1]
        return low

    def offsets(self, items: np.ndarray) -> np.ndarray:
        """[m, d] positions of the items' elements in a plane."""
        items = np.asarray(items, dtype=np.int64)
        block = items // BLOCK_ITEMS
        width = np.minimum(BLOCK_ITEMS, self.num_items - block * BLOCK_ITEMS)
        start = block * BLOCK_ITEMS * self.dims + (items - block * BLOCK_ITEMS)
        offsets: np.ndarray = start[:, None] + np.arange(self.dims)[None, :] * width[:, None]
        return offsets

    def rows(self, items: np.ndarray) -> np.ndarray:
        """The float32 rows of ``items``, exactly: [m, d]."""
        at = self.offsets(items)
        return join(self.planes[0][at], self.planes[1][at])

    def matrix(self) -> np.ndarray:
        """The whole float32 [items, d] matrix (a copy: for tests and tools, not for serving)."""
        return self.rows(np.arange(self.num_items))

    def columns(self, first_block: int, count: int) -> np.ndarray:
        """Blocks ``first_block ..`` as a float32 [d, their items] tile of the dimension-major matrix."""
        first = first_block * BLOCK_ITEMS
        stop = min(self.num_items, first + count * BLOCK_ITEMS)
        out = np.empty((self.dims, stop - first), dtype=np.float32)
        for block in range(first_block, -(-stop // BLOCK_ITEMS)):
            _, width, high, low = self.block(block)
            column = (block - first_block) * BLOCK_ITEMS
            out[:, column : column + width] = join(high, low)
        return out

    def block(self, block: int) -> tuple[int, int, np.ndarray, np.ndarray]:
        """(first item, width, high [d, width], low [d, width]) of one block."""
        first = block * BLOCK_ITEMS
        width = min(BLOCK_ITEMS, self.num_items - first)
        span = slice(first * self.dims, (first + width) * self.dims)
        shape = (self.dims, width)
        return first, width, self.planes[0][span].reshape(shape), self.planes[1][span].reshape(shape)

    def scan(self, user: np.ndarray, exact: bool, out: np.ndarray | None = None) -> np.ndarray:
        """u · item for every item, in float32: from the high halves alone (``exact`` False) or from
        the float32 values. ``user`` is float32 [d]."""
        n, dims = self.shape
        out = np.empty(n, dtype=np.float32) if out is None else out
        full = n // BLOCK_ITEMS
        for group in range(0, full, _GROUP):
            count = min(_GROUP, full - group)
            span = slice(group * BLOCK_ITEMS * dims, (group + count) * BLOCK_ITEMS * dims)
            shape = (count, dims, BLOCK_ITEMS)
            high = self.planes[0][span].reshape(shape)
            values = join(high, self.planes[1][span].reshape(shape) if exact else None)
            out[group * BLOCK_ITEMS : (group + count) * BLOCK_ITEMS] = np.matmul(user, values).reshape(-1)
        if full * BLOCK_ITEMS < n:
            first, _, high, low = self.block(full)
            out[first:] = user @ join(high, low if exact else None)
        return out

    def squared_norms(self, exact: bool) -> np.ndarray:
        """float32 squared row norms, of the float32 values or of their high halves; non-finite
        where a value is NaN, infinite, or too large to square."""
        out = np.empty(self.num_items, dtype=np.float32)
        for block in range((self.num_items + BLOCK_ITEMS - 1) // BLOCK_ITEMS):
            first, width, high, low = self.block(block)
            values = join(high, low if exact else None)
            with np.errstate(over="ignore", invalid="ignore"):
                out[first : first + width] = np.einsum("ij,ij->j", values, values)
        return out


def encode_item_matrix(matrix: np.ndarray) -> bytes:
    """The item-matrix file of a float32 [items, d] matrix: the .npy of its planes."""
    return encode_npy(ItemMatrix.from_matrix(matrix).planes)


def join(high: np.ndarray, low: np.ndarray | None) -> np.ndarray:
    """float32 values from their halves (low None: the high halves alone, the rest zero)."""
    bits = high.astype(np.uint32) << np.uint32(16)
    if low is not None:
        bits |= low
    values: np.ndarray = bits.view(np.float32)
    return values


def write_rows(planes: np.ndarray, num_items: int, dims: int, first: int, rows: np.ndarray) -> None:
    """Split float32 ``rows`` ([m, d], items ``first ..``) into their places in ``planes``."""
    bits = np.ascontiguousarray(rows, dtype=np.float32).view(np.uint32)
    stop = first + bits.shape[0]
    item = first
    while item < stop:
        block = item // BLOCK_ITEMS
        start = block * BLOCK_ITEMS
        width = min(BLOCK_ITEMS, num_items - start)
        end = min(stop, start + width)
        segment = bits[item - first : end - first].T  # [d, end - item]
        span = slice(start * dims, (start + width) * dims)
        planes[0][span].reshape(dims, width)[:, item - start : end - start] = segment >> np.uint32(16)
        planes[1][span].reshape(dims, width)[:, item - start : end - start] = segment & np.uint32(0xFFFF)
        item = end
