"""User vectors as pages: what serving fetches one user at a time, instead of the whole matrix.

The users are ordered by the hash of their id (``ids.id_hash``) and cut into pages of
``users_per_page`` (~64 KiB of vectors; a run of equal hashes is never cut, so a user is in
exactly one page). ``PAGES_PER_FILE`` pages make one object ``user_pages/NNNNNN.bin`` (~1 MiB: a
ranged GET of a page costs the same on S3 whatever the object's size; the local S3 reads the
whole object for a range, so objects stay small). The page index (``user_pages.index.npy``,
uint64 [4, pages]: each page's first hash, offset in its file, length and CRC-32) is all a
loaded version keeps: 32 bytes a page, ~1.2 MB for 10M users at d = 64. A user is found with a
binary search of the index, one ranged GET of their page, and a binary search in the page.

A page (little-endian, every array aligned to its item size)::

    b"LPUP" | count u32 | dims u32 | flags u32          16 bytes
    hashes  u64[count]        ascending
    rows    u64[count]        each user's row in the version's user list (the publisher's order)
    log-normalisers f64[count]  only with flag 1 (else computed on first use; serving/normalisers.py)
    vectors f32[count, dims]
    id ends u32[count]        where each id ends in the id bytes
    ids     UTF-8, one after the other
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

import numpy as np

from personalize_core.errors import ArtifactError
from personalize_core.modelstore import ids as id_hashing

MAGIC = b"LPUP"
_HEADER = struct.Struct("<4sIII")
FLAG_NORMALISERS = 1
#: Vector bytes a page aims at: one ranged GET brings ~64 KiB (about a millisecond of S3's
#: per-connection throughput, next to its tens of milliseconds to the first byte).
PAGE_VECTOR_BYTES = 64 << 10
#: Pages per object (~1 MiB objects at d = 64).
PAGES_PER_FILE = 16


def users_per_page(dims: int) -> int:
    return max(16, PAGE_VECTOR_BYTES // (4 * max(1, dims)))


class UserPageError(ArtifactError):
    """A page of user vectors is missing, corrupt, or does not fit the version."""


# -- one page ---------------------------------------------------------------------------------------


def encode_page(
    hashes: np.ndarray,
    rows: np.ndarray,
    vectors: np.ndarray,
    id_bytes: bytes,
    id_ends: np.ndarray,
    log_normalisers: np.ndarray | None = None,
) -> bytes:
    count, dims = vectors.shape
    flags = FLAG_NORMALISERS if log_normalisers is not None else 0
    parts = [
        _HEADER.pack(MAGIC, count, dims, flags),
        np.ascontiguousarray(hashes, dtype="<u8").tobytes(),
        np.ascontiguousarray(rows, dtype="<u8").tobytes(),
    ]
    if log_normalisers is not None:
        parts.append(np.ascontiguousarray(log_normalisers, dtype="<f8").tobytes())
    parts += [
        np.ascontiguousarray(vectors, dtype="<f4").tobytes(),
        np.ascontiguousarray(id_ends, dtype="<u4").tobytes(),
        id_bytes,
    ]
    return b"".join(parts)


class Page:
    """A decoded page: views of its bytes, checked for shape and order (not for values: the
    publisher checked them, and the page's CRC-32 says these are its bytes)."""

    def __init__(self, data: bytes, dims: int, where: str) -> None:
        if len(data) < _HEADER.size:
            raise UserPageError(f"{where} is truncated")
        magic, count, stored_dims, flags = _HEADER.unpack_from(data)
        if magic != MAGIC or stored_dims != dims or flags & ~FLAG_NORMALISERS or count == 0:
            raise UserPageError(f"{where} is not a page of {dims}-dimensional user vectors")
        at = _HEADER.size
        self.hashes = np.frombuffer(data, "<u8", count, at)
        self.rows = np.frombuffer(data, "<u8", count, at + 8 * count)
        at += 16 * count
        self.log_normalisers: np.ndarray | None = None
        if flags & FLAG_NORMALISERS:
            self.log_normalisers = np.frombuffer(data, "<f8", count, at)
            at += 8 * count
        self.vectors = np.frombuffer(data, "<f4", count * dims, at).reshape(count, dims)
        at += 4 * count * dims
        self.id_ends = np.frombuffer(data, "<u4", count, at)
        at += 4 * count
        self._ids = memoryview(data)[at:]
        ends = self.id_ends
        ends_ok = bool((ends[1:] >= ends[:-1]).all()) and int(ends[-1]) == len(self._ids)
        if not ends_ok or bool((self.hashes[1:] < self.hashes[:-1]).any()):
            raise UserPageError(f"{where} is malformed")

    def id_at(self, position: int) -> bytes:
        start = int(self.id_ends[position - 1]) if position else 0
        return bytes(self._ids[start : int(self.id_ends[position])])

    def find(self, encoded_id: bytes, hashed: int) -> int | None:
        """The position of the user in the page, or None (equal hashes are told apart by id)."""
        position = int(np.searchsorted(self.hashes, np.uint64(hashed)))
        while position < len(self.hashes) and int(self.hashes[position]) == hashed:
            if self.id_at(position) == encoded_id:
                return position
            position += 1
        return None


# -- the page index ---------------------------------------------------------------------------------


class PageSpan(NamedTuple):
    file: int
    offset: int
    length: int
    crc32: int


class PageIndex:
    """Where each page is: uint64 [4, pages] = first hash, offset in its file, length, CRC-32."""

    def __init__(self, table: np.ndarray, pages_per_file: int, file_sizes_total: int) -> None:
        if table.dtype != np.uint64 or table.ndim != 2 or table.shape[0] != 4 or table.shape[1] == 0:
            raise ArtifactError("the user page index must be a uint64 [4, pages] array")
        self.first_hashes, self.offsets, self.lengths, self.crc32s = table
        self.pages_per_file = pages_per_file
        pages = table.shape[1]
        starts = np.arange(pages) % pages_per_file == 0
        follows = self.offsets[1:] == self.offsets[:-1] + self.lengths[:-1]
        laid_out = bool((self.offsets[starts] == 0).all()) and bool((follows | starts[1:]).all())
        if (
            not laid_out
            or bool((self.first_hashes[1:] <= self.first_hashes[:-1]).any())
            or int(self.lengths.sum()) != file_sizes_total
        ):
            raise ArtifactError("the user page index does not describe the version's user pages")

    def __len__(self) -> int:
        return len(self.first_hashes)

    @property
    def nbytes(self) -> int:
        return 4 * int(self.first_hashes.nbytes)

    def page_of(self, hashed: int) -> int:
        """The page whose hash range holds ``hashed`` (the last page starting at or below it)."""
        return max(0, int(np.searchsorted(self.first_hashes, np.uint64(hashed), side="right")) - 1)

    def span(self, page: int) -> PageSpan:
        return PageSpan(
            page // self.pages_per_file,
            int(self.offsets[page]),
            int(self.lengths[page]),
            int(self.crc32s[page]),
        )


def check_page(data: bytes, span: PageSpan, where: str) -> None:
    if len(data) != span.length or zlib.crc32(data) != span.crc32:
        raise UserPageError(f"{where} does not match its CRC-32 in the page index (corrupt)")


def hash_of(user_id: str) -> tuple[bytes, int]:
    """The id's UTF-8 bytes and hash, as the publisher ordered them (``ids.id_hash``)."""
    encoded = user_id.encode("utf-8", "surrogatepass")
    return encoded, id_hashing.id_hash(encoded)


def page_bounds(sorted_hashes: np.ndarray, per_page: int) -> list[tuple[int, int]]:
    """[start, stop) of each page over users sorted by hash: ``per_page`` users, a run of equal
    hashes kept whole (a user is then always in the page its hash points to)."""
    bounds, start, count = [], 0, len(sorted_hashes)
    while start < count:
        stop = min(count, start + per_page)
        while stop < count and sorted_hashes[stop] == sorted_hashes[stop - 1]:
            stop += 1
        bounds.append((start, stop))
        start = stop
    return bounds
