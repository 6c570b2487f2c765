"""Checking what becomes a solution version: ids and factor matrices (the writer's inputs).

Two ways in for ids: a sequence of strings (training, the demo, tests), checked one by one, and
UTF-8 text with one id a line (the publish CLI's .txt file), checked with numpy over the bytes:
10M user ids as Python strings would cost ~1 GB before the matrix is even read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from personalize_core.edge.fields import ID_MAX
from personalize_core.errors import ArtifactError
from personalize_core.modelstore.ids import CompactIds
from personalize_core.modelstore.layout import encode_ids


class PublishError(Exception):
    """Input that cannot become a solution version; nothing has been uploaded."""


def check_ids(ids: Sequence[str], what: str) -> list[str]:
    if not ids:
        raise PublishError(f"{what} is empty")
    seen: set[str] = set()
    for i, value in enumerate(ids):
        if not value or len(value) > ID_MAX or "\n" in value or "\r" in value:
            raise PublishError(
                f"{what}[{i}] {value[:40]!r} must be 1-{ID_MAX} characters without line breaks"
            )
        if value in seen:
            raise PublishError(f"{what} has a duplicate id {value!r}")
        seen.add(value)
    return list(ids)


def check_matrix(array: np.ndarray, rows: int, what: str, dims: int | None = None) -> np.ndarray:
    """The matrix in float32, C order, checked (shape, finite). For matrices that fit in memory."""
    check_matrix_shape(array, rows, what, dims)
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
        matrix = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(matrix).all():
        raise PublishError(f"{what} holds NaN or infinite values (after conversion to float32)")
    return matrix


def check_matrix_shape(array: np.ndarray, rows: int, what: str, dims: int | None = None) -> None:
    if array.dtype.kind != "f":
        raise PublishError(f"{what} must hold floats, not {array.dtype}")
    if array.ndim != 2:
        raise PublishError(f"{what} must be 2-dimensional [rows, dims], got shape {list(array.shape)}")
    if array.shape[0] != rows:
        raise PublishError(f"{what} has {array.shape[0]} rows but there are {rows} ids")
    if array.shape[1] == 0 or (dims is not None and array.shape[1] != dims):
        raise PublishError(f"{what} has {array.shape[1]} dimensions, expected {dims or 'at least 1'}")


def compact_ids(ids: Sequence[str] | bytes, what: str) -> CompactIds:
    """Ids as ``CompactIds`` (the text and its offsets), checked: 1-ID_MAX characters, no line
    break, valid UTF-8. ``bytes``: the ids' text, one a line. Duplicates are found later, from the
    sorted hashes (``first_duplicate``)."""
    if not isinstance(ids, bytes):
        return CompactIds(encode_ids(check_ids(ids, what)), len(ids))
    if not ids:
        raise PublishError(f"{what} is empty")
    try:
        compact = CompactIds(ids, ids.count(b"\n") + 1)
    except ArtifactError as exc:
        raise PublishError(f"{what}: {exc}") from None
    starts = compact.starts
    lengths = np.diff(starts.astype(np.int64)) - 1  # bytes of each id (the newline dropped)
    raw = np.frombuffer(ids, dtype=np.uint8)
    suspects = set(np.flatnonzero((lengths == 0) | (lengths > ID_MAX)).tolist())
    returns = np.flatnonzero(raw == ord("\r"))
    if returns.size:  # the id holding the first carriage return
        suspects.add(int(np.searchsorted(starts, returns[0], side="right")) - 1)
    for i in sorted(suspects):
        value = compact.text(i)
        if not value or len(value) > ID_MAX or "\r" in value:  # (characters, not bytes: UTF-8)
            raise PublishError(
                f"{what}[{i}] {value[:40]!r} must be 1-{ID_MAX} characters without line breaks"
            )
    return compact


def first_duplicate(compact: CompactIds, sorted_hashes: np.ndarray, order: np.ndarray) -> str | None:
    """An id that occurs twice, given the ids' hashes sorted (``order``: the id under each)."""
    same = np.flatnonzero(sorted_hashes[1:] == sorted_hashes[:-1])
    runs: dict[int, set[bytes]] = {}
    for position in sorted({*same.tolist(), *(same + 1).tolist()}):
        seen = runs.setdefault(int(sorted_hashes[position]), set())
        raw = compact.raw(int(order[position]))
        if raw in seen:
            return raw.decode("utf-8")
        seen.add(raw)
    return None
