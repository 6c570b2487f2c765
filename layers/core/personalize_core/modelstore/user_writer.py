"""Writing a version's user pages (user_pages.py) from a [users, d] matrix, in bounded memory.

The matrix may be an mmap'd .npy (the publish CLI's): it is read a block of pages at a time, in
the hash order of the ids, and never copied whole. Pages go to files in a folder (spooled to disk:
10M users x 64 make ~2.8 GB of pages), which the writer uploads; the page index and the version's
cold-user vector (the users' mean, streamed) come back in memory. Memory: the ids (text, offsets,
hashes and their order: ~36 bytes an id) and one block of pages.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from personalize_core.modelstore.ids import CompactIds
from personalize_core.modelstore.inputs import PublishError, check_matrix_shape, compact_ids, first_duplicate
from personalize_core.modelstore.npy import encode_npy
from personalize_core.modelstore.page_layout import UserPages, user_page_file
from personalize_core.modelstore.user_pages import PAGES_PER_FILE, encode_page, page_bounds, users_per_page
from personalize_core.serving.normalisers import log_normaliser

#: Pages gathered from the matrix at once (a block of 64 pages is ~4 MB at d = 64).
_PAGES_PER_BLOCK = 64


class WrittenUsers(NamedTuple):
    #: The page files on disk, by their name under the version (``user_pages/NNNNNN.bin``).
    files: dict[str, Path]
    #: ``user_pages.index.npy``'s bytes.
    index_file: bytes
    pages: UserPages
    #: float64 [d + 1]: the mean user vector and its log-normaliser (``ArrayName.COLD_USER``).
    cold_user: np.ndarray
    users: int


def write_user_pages(
    user_ids: Sequence[str] | bytes,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    folder: Path,
    what: str = "user factors",
) -> WrittenUsers:
    """Check the users and write their pages into ``folder``. Raises PublishError."""
    ids = compact_ids(user_ids, "user ids")
    dims = item_factors.shape[1]
    check_matrix_shape(user_factors, len(ids), what, dims)
    hashes = ids.hashes()
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    del hashes
    duplicate = first_duplicate(ids, sorted_hashes, order)
    if duplicate is not None:
        raise PublishError(f"user ids has a duplicate id {duplicate!r}")

    writer = _PageFiles(folder)
    total = np.zeros(dims, dtype=np.float64)
    bounds = page_bounds(sorted_hashes, users_per_page(dims))
    try:
        for first in range(0, len(bounds), _PAGES_PER_BLOCK):
            block = bounds[first : first + _PAGES_PER_BLOCK]
            start, stop = block[0][0], block[-1][1]
            rows = order[start:stop]
            vectors = _gather(user_factors, rows, what)
            total += vectors.sum(axis=0, dtype=np.float64)
            for page_start, page_stop in block:
                at, to = page_start - start, page_stop - start
                id_bytes, id_ends = _ids_of(ids, rows[at:to])
                page_hashes = sorted_hashes[page_start:page_stop]
                page = encode_page(page_hashes, rows[at:to], vectors[at:to], id_bytes, id_ends)
                writer.add(page, int(page_hashes[0]))
    finally:
        writer.close()
    mean = total / len(ids)
    cold_user = np.append(mean, log_normaliser(item_factors, mean))
    return WrittenUsers(writer.files, encode_npy(writer.index()), writer.summary(), cold_user, len(ids))


def _gather(matrix: np.ndarray, rows: np.ndarray, what: str) -> np.ndarray:
    """``matrix[rows]`` in float32, read in row order (an mmap'd file is read forwards), checked."""
    ascending = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), matrix.shape[1]), dtype=np.float32)
    with np.errstate(over="ignore"):  # beyond float32: inf, refused below
        out[ascending] = matrix[rows[ascending]]
    if not np.isfinite(out).all():
        raise PublishError(f"{what} holds NaN or infinite values (after conversion to float32)")
    return out


def _ids_of(ids: CompactIds, rows: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The ids of ``rows`` one after the other, and where each ends."""
    begins = ids.starts[rows].astype(np.int64)  # (only these rows: not the whole offsets array)
    lengths = ids.starts[rows + 1].astype(np.int64) - 1 - begins
    data = ids.data
    joined = b"".join([data[s : s + n] for s, n in zip(begins.tolist(), lengths.tolist(), strict=True)])
    return joined, np.cumsum(lengths)


class _PageFiles:
    """Pages appended to ``PAGES_PER_FILE``-page files, indexed and hashed as they are written."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, Path] = {}
        self._rows: list[tuple[int, int, int, int]] = []  # first hash, offset, length, CRC-32
        self._digest = hashlib.sha256()
        self._size = 0
        self._out: BinaryIO | None = None
        self._offset = 0

    def add(self, page: bytes, first_hash: int) -> None:
        if len(self._rows) % PAGES_PER_FILE == 0:
            self.close()
            name = user_page_file(len(self._rows) // PAGES_PER_FILE)
            path = self.folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            self.files[name] = path
            self._out = path.open("wb")
            self._offset = 0
        assert self._out is not None
        self._out.write(page)
        self._rows.append((first_hash, self._offset, len(page), zlib.crc32(page)))
        self._offset += len(page)
        self._size += len(page)
        self._digest.update(page)

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def index(self) -> np.ndarray:
        return np.array(self._rows, dtype=np.uint64).T.copy()

    def summary(self) -> UserPages:
        digest = self._digest.hexdigest()
        return UserPages(len(self.files), len(self._rows), PAGES_PER_FILE, self._size, digest)
