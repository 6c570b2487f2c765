"""The compiled candidate selection (``_select.c``), loaded with ctypes when it was built.

Why C: after the matrix product, finding each user's top-k candidates is a pass over every
logit. numpy needs several passes and temporaries for it (group maxima, a comparison, a
nonzero); the kernel keeps a running bound per user and compares 64 logits per vector step,
which is what lets the batch scorer out-run faiss's and keeps the warm path at the memory floor.

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
        self.name: str = library.sel_kernel().decode()

    def selection(self, rows: int, k: int, slack: np.ndarray) -> Selection:
        return Selection(self._library, rows, k, slack)

    def exact_logits(
        self, item_factors: np.ndarray, users: np.ndarray, rows: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        """``users[rows[i]] . item_factors[items[i]]`` in float64, reading only those rows."""
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
    except OSError:  # built for another architecture or C library: numpy scores instead
        return None
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
    return Kernels(library)
