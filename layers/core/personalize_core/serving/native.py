"""The compiled kernels (``_select.c``, ``_planes.c``), loaded with ctypes when they were built.

Why C: after the matrix product, finding each user's top-k candidates is a pass over every
logit. numpy needs several passes and temporaries for it (group maxima, a comparison, a
nonzero); the kernel keeps a running bound per user and compares 64 logits per vector step.
The item matrix's high-half scan (modelstore/item_matrix.py) is C too: it widens bfloat16 to
float32 as it multiplies, block by block, and hands each block of logits to the selection while
it is in cache; numpy would convert the whole plane first, writing more bytes than the scan saves.
The vector loops (AVX-512, AVX2, NEON, or a portable loop) are chosen at run time.

The library is optional. ``make`` builds it next to this file for development and the layer
build (layers/core/Makefile) builds it into the layer when the host compiles for the target
architecture; without it, or with ``PERSONALIZE_NATIVE_KERNELS=0``, scoring.py takes its numpy
path, which returns the same items and scores (the tests run both).
"""

from __future__ import annotations

import weakref
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from personalize_core.modelstore.item_matrix import BLOCK_ITEMS, ItemMatrix
from personalize_core.settings import NATIVE_KERNELS_VARIABLE, get_settings

#: Set to 0 to score with numpy only (for comparison, or to rule the kernel out).
DISABLE_VARIABLE = NATIVE_KERNELS_VARIABLE
LIBRARY_PATH = Path(__file__).with_name("_select.so")


class Selection:
    """The candidates of ``rows`` users, fed tile by tile: [rows, width] float32 logits at a time."""

    def __init__(self, library: Any, rows: int, k: int, slack: np.ndarray) -> None:
        self._library = library
        self.rows = rows
        slack64 = np.ascontiguousarray(slack, dtype=np.float64)
        if slack64.shape != (rows,) or k < 1:
            raise ValueError("one slack per row and k >= 1 are required")
        self._handle = library.sel_new(rows, k, slack64.ctypes.data)
        if not self._handle:
            raise MemoryError("candidate selection: out of memory")
        self._free = weakref.finalize(self, library.sel_free, self._handle)

    def feed(self, logits: np.ndarray, first_item: int) -> None:
        """Logits of items ``first_item ..`` for every row (rows contiguous, any row stride)."""
        if not self._free.alive:
            raise RuntimeError("this selection was already taken")
        if logits.dtype != np.float32 or logits.ndim != 2 or logits.shape[0] != self.rows:
            raise ValueError("logits must be float32 [rows, width]")
        if logits.shape[1] > 1 and logits.strides[1] != 4:
            raise ValueError("each row of logits must be contiguous")
        if self._library.sel_feed(
            self._handle, logits.ctypes.data, logits.shape[1], logits.strides[0] // 4, first_item
        ):
            raise MemoryError("candidate selection: out of memory")

    def handle(self) -> int:
        """The C selection (for a scan to feed); RuntimeError once taken."""
        if not self._free.alive:
            raise RuntimeError("this selection was already taken")
        handle: int = self._handle
        return handle

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, item, float32 logit) of every candidate, row by row; the selection is spent."""
        if not self._free.alive:
            raise RuntimeError("this selection was already taken")
        count = self._library.sel_finish(self._handle)
        if count < 0:
            raise MemoryError("candidate selection: out of memory")
        rows, items = np.empty(count, dtype=np.int64), np.empty(count, dtype=np.int64)
        values = np.empty(count, dtype=np.float32)
        self._library.sel_export(self._handle, rows.ctypes.data, items.ctypes.data, values.ctypes.data)
        self._free()
        return rows, items, values


class Kernels:
    """The loaded library: selections and exact float64 dot products for candidates."""

    def __init__(self, library: Any) -> None:
        self._library = library

    @property
    def name(self) -> str:
        """The vector loop in use: avx512, avx2, neon or portable."""
        name: bytes = self._library.sel_kernel()
        return name.decode()

    def use(self, name: str) -> bool:
        """Run ``name``'s loops from now on ("auto": the best this CPU has); False when it cannot."""
        status: int = self._library.sel_use(name.encode())
        return status == 0

    def selection(self, rows: int, k: int, slack: np.ndarray) -> Selection:
        return Selection(self._library, rows, k, slack)

    def scan(
        self,
        items: ItemMatrix,
        user: np.ndarray,
        exact: bool,
        out: np.ndarray | None = None,
        selection: Selection | None = None,
        allowed: np.ndarray | None = None,
    ) -> None:
        """One user's scan of every item: u · item from the high halves (``exact`` False) or the
        float32 values, into ``out`` (float32 [items]) and/or, block by block, into a one-row
        ``selection`` (-inf where ``allowed`` is False)."""
        user32 = np.ascontiguousarray(user, dtype=np.float32)
        if user32.shape != (items.dims,):
            raise ValueError("the user vector must have the items' dimensions")
        if out is not None and (
            out.dtype != np.float32 or out.shape != (items.num_items,) or not out.flags.c_contiguous
        ):
            raise ValueError("out must be a contiguous float32 vector, one value per item")
        mask = None if allowed is None else np.ascontiguousarray(allowed, dtype=np.bool_)
        if mask is not None and mask.shape != (items.num_items,):
            raise ValueError("allowed must hold one value per item")
        if selection is not None and selection.rows != 1:
            raise ValueError("a scan feeds a one-row selection")
        planes = items.planes
        status = self._library.pl_scan(
            selection.handle() if selection is not None else None,
            planes[0].ctypes.data,
            planes[1].ctypes.data if exact else None,
            items.num_items,
            items.dims,
            user32.ctypes.data,
            mask.ctypes.data if mask is not None else None,
            out.ctypes.data if out is not None else None,
        )
        if status:
            raise MemoryError("candidate selection: out of memory")

    def top_k(
        self,
        items: ItemMatrix,
        user: np.ndarray,
        k: int,
        slack: float,
        exact_scan: bool,
        allowed: np.ndarray | None = None,
        out: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One user's top k in one call: the scan (high halves, or both planes when ``exact_scan``)
        feeding a selection with ``slack``, the candidates re-scored in float64 with ``user`` as
        given, the best k ranked (ties by item). Returns (items, exact logits), at most k of them;
        ``out`` (optional) gets every scanned float32 logit."""
        user64 = np.ascontiguousarray(user, dtype=np.float64)
        user32 = user64.astype(np.float32)
        if user64.shape != (items.dims,) or k < 1:
            raise ValueError("the user vector must have the items' dimensions, and k >= 1")
        if out is not None and (
            out.dtype != np.float32 or out.shape != (items.num_items,) or not out.flags.c_contiguous
        ):
            raise ValueError("out must be a contiguous float32 vector, one value per item")
        mask = None if allowed is None else np.ascontiguousarray(allowed, dtype=np.bool_)
        if mask is not None and mask.shape != (items.num_items,):
            raise ValueError("allowed must hold one value per item")
        chosen = np.empty(k, dtype=np.int64)
        exact = np.empty(k, dtype=np.float64)
        planes = items.planes
        count = self._library.pl_top_k(
            planes[0].ctypes.data, planes[1].ctypes.data, items.num_items, items.dims,
            user32.ctypes.data, user64.ctypes.data, k, slack, exact_scan,
            mask.ctypes.data if mask is not None else None,
            out.ctypes.data if out is not None else None,
            chosen.ctypes.data, exact.ctypes.data,
        )  # fmt: skip
        if count < 0:
            raise MemoryError("top k: out of memory")
        return chosen[:count], exact[:count]

    def rows(self, items: ItemMatrix, indices: np.ndarray) -> np.ndarray:
        """The exact float32 rows of ``indices``: [m, d]."""
        wanted = np.ascontiguousarray(indices, dtype=np.int64)
        if wanted.size and (wanted.min() < 0 or wanted.max() >= items.num_items):
            raise IndexError("item index out of range")
        out = np.empty((wanted.shape[0], items.dims), dtype=np.float32)
        planes = items.planes
        self._library.pl_rows(
            planes[0].ctypes.data, planes[1].ctypes.data, items.num_items, items.dims,
            wanted.ctypes.data, wanted.shape[0], out.ctypes.data,
        )  # fmt: skip
        return out

    def columns(self, items: ItemMatrix, first_block: int, count: int, out: np.ndarray) -> np.ndarray:
        """Blocks ``first_block ..`` into ``out`` as a float32 [d, their items] tile (a view of it)."""
        count = min(count, -(-items.num_items // BLOCK_ITEMS) - first_block)
        width = min(items.num_items, (first_block + count) * BLOCK_ITEMS) - first_block * BLOCK_ITEMS
        if (
            out.dtype != np.float32
            or out.shape[0] != items.dims
            or out.shape[1] < width
            or out.strides[1] != 4
        ):
            raise ValueError("out must be float32 [d, >= the blocks' items] with contiguous rows")
        planes = items.planes
        self._library.pl_columns(
            planes[0].ctypes.data, planes[1].ctypes.data, items.num_items, items.dims,
            first_block, count, out.ctypes.data, out.strides[0] // 4,
        )  # fmt: skip
        return out[:, :width]

    def squared_norms(self, items: ItemMatrix, exact: bool) -> np.ndarray:
        """float32 squared row norms (of the high halves when not ``exact``); non-finite for a row
        with a NaN, an infinity or a value too large to square."""
        out = np.empty(items.num_items, dtype=np.float32)
        planes = items.planes
        self._library.pl_norms(
            planes[0].ctypes.data, planes[1].ctypes.data if exact else None, items.num_items, items.dims,
            out.ctypes.data,
        )  # fmt: skip
        return out

    def exact_logits(
        self, item_factors: np.ndarray | ItemMatrix, users: np.ndarray, rows: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        """``users[rows[i]] . item_factors[items[i]]`` in float64, reading only those rows."""
        if isinstance(item_factors, ItemMatrix):
            return self._exact_from_planes(item_factors, users, rows, items)
        if item_factors.dtype != np.float32 or item_factors.ndim != 2:
            raise ValueError("item factors must be a float32 matrix")
        users32 = np.ascontiguousarray(users, dtype=np.float32)
        rows64 = np.ascontiguousarray(rows, dtype=np.int64)
        items64 = np.ascontiguousarray(items, dtype=np.int64)
        if users32.shape[1] != item_factors.shape[1] or rows64.shape != items64.shape:
            raise ValueError("users and items must share dimensions; one row per item")
        out = np.empty(items64.shape[0], dtype=np.float64)
        item_stride, dim_stride = (s // 4 for s in item_factors.strides)
        self._library.sel_exact(
            item_factors.ctypes.data,
            item_stride,
            dim_stride,
            users32.ctypes.data,
            users32.shape[1],
            rows64.ctypes.data,
            items64.ctypes.data,
            items64.shape[0],
            out.ctypes.data,
        )
        return out

    def _exact_from_planes(
        self, matrix: ItemMatrix, users: np.ndarray, rows: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        users32 = np.ascontiguousarray(users, dtype=np.float32)
        rows64 = np.ascontiguousarray(rows, dtype=np.int64)
        items64 = np.ascontiguousarray(items, dtype=np.int64)
        if users32.ndim != 2 or users32.shape[1] != matrix.dims or rows64.shape != items64.shape:
            raise ValueError("users and items must share dimensions; one row per item")
        out = np.empty(items64.shape[0], dtype=np.float64)
        planes = matrix.planes
        self._library.pl_exact(
            planes[0].ctypes.data, planes[1].ctypes.data, matrix.num_items, matrix.dims,
            users32.ctypes.data, rows64.ctypes.data, items64.ctypes.data, items64.shape[0], out.ctypes.data,
        )  # fmt: skip
        return out

    def best(
        self, rows: np.ndarray, items: np.ndarray, exact: np.ndarray, num_rows: int, k: int
    ) -> np.ndarray:
        """[num_rows, k] positions of each row's k best candidates (larger exact logit first, ties
        by smaller item); candidates grouped by row, as ``Selection.take`` returns them."""
        rows64, items64 = np.ascontiguousarray(rows, np.int64), np.ascontiguousarray(items, np.int64)
        exact64 = np.ascontiguousarray(exact, np.float64)
        if not rows64.shape == items64.shape == exact64.shape:
            raise ValueError("one row, item and exact logit per candidate")
        positions = np.empty((num_rows, k), dtype=np.int64)
        status = self._library.sel_best(
            rows64.ctypes.data,
            items64.ctypes.data,
            exact64.ctypes.data,
            rows64.shape[0],
            num_rows,
            k,
            positions.ctypes.data,
        )
        if status == -2:
            raise MemoryError("candidate ranking: out of memory")
        if status:
            raise ValueError("every row needs at least k candidates, grouped by row")
        return positions


@cache
def kernels() -> Kernels | None:
    """The compiled kernels, or None (not built, not loadable here, or switched off)."""
    if not get_settings().native_kernels or not LIBRARY_PATH.exists():
        return None
    import ctypes  # noqa: PLC0415 - ~2 ms, paid only where the kernels are used

    try:
        library = ctypes.CDLL(str(LIBRARY_PATH))
        _declare(library, ctypes)
    except (OSError, AttributeError):  # another architecture, C library or build: numpy scores
        return None
    return Kernels(library)


def _declare(library: Any, ctypes: Any) -> None:
    """The C signatures (an AttributeError when the library lacks one: a stale build)."""
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    library.sel_new.restype, library.sel_new.argtypes = pointer, [size, size, pointer]
    library.sel_feed.restype = ctypes.c_int
    library.sel_feed.argtypes = [pointer, pointer, size, size, size]
    library.sel_finish.restype, library.sel_finish.argtypes = size, [pointer]
    library.sel_export.restype, library.sel_export.argtypes = None, [pointer] * 4
    library.sel_free.restype, library.sel_free.argtypes = None, [pointer]
    library.sel_kernel.restype, library.sel_kernel.argtypes = ctypes.c_char_p, []
    library.sel_exact.restype = None
    library.sel_exact.argtypes = [pointer, size, size, pointer, size, pointer, pointer, size, pointer]
    library.sel_best.restype = ctypes.c_int
    library.sel_best.argtypes = [pointer, pointer, pointer, size, size, size, pointer]
    library.sel_use.restype, library.sel_use.argtypes = ctypes.c_int, [ctypes.c_char_p]
    library.pl_scan.restype = ctypes.c_int
    library.pl_scan.argtypes = [pointer, pointer, pointer, size, size, pointer, pointer, pointer]
    library.pl_rows.restype, library.pl_rows.argtypes = (
        None,
        [pointer, pointer, size, size, pointer, size, pointer],
    )
    library.pl_exact.restype = None
    library.pl_exact.argtypes = [pointer, pointer, size, size, pointer, pointer, pointer, size, pointer]
    library.pl_columns.restype = None
    library.pl_columns.argtypes = [pointer, pointer, size, size, size, size, pointer, size]
    library.pl_norms.restype, library.pl_norms.argtypes = None, [pointer, pointer, size, size, pointer]
    library.pl_top_k.restype = size
    library.pl_top_k.argtypes = [pointer, pointer, size, size, pointer, pointer, size, ctypes.c_double]
    library.pl_top_k.argtypes += [ctypes.c_int, pointer, pointer, pointer, pointer]
