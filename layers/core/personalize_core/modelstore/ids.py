"""Ids of a solution version, kept compact: the downloaded UTF-8 text, offsets, and sorted hashes.

A million ids as a Python list and dict cost ~100 MB (a str object each, twice referenced, plus
the dict's table); here they cost the text itself plus 20 bytes an id, and no str object exists
until one is asked for. ``IdList`` gives the id at an index (a request renders k of them),
``IdIndex`` the index of an id: a binary search of the id's hash among the sorted hashes, then a
comparison of the candidate's bytes (so a hash collision never returns a wrong index).

The hash is deterministic (not Python's per-process ``hash``), so the publisher writes the sorted
hashes beside the ids (``hash_index``: ``<ids>.index.npy``) and a load takes them as they are:
hashing 100k ids in Python costs 10-16 ms of cold start. Versions published without them get
them computed at load.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import overload

import numpy as np

from personalize_core.errors import ArtifactError

#: Ids hashed per Python-level batch while building: bounds the bytes objects alive at a time.
_HASH_BATCH = 65_536


def stable_hash(raw: bytes) -> int:
    """64 bits of an id's UTF-8 bytes, the same in every process: CRC-32 and Adler-32 (zlib's C)."""
    return zlib.crc32(raw) << 32 | zlib.adler32(raw)


#: The hash of an id's bytes (tests swap in a weak one to force collisions).
id_hash: Callable[[bytes], int] = stable_hash


class CompactIds:
    """The text ``id\\nid\\n...id`` (no trailing newline), with the start of every id."""

    def __init__(self, data: bytes, expected: int) -> None:
        try:
            data.decode("utf-8")  # valid text, checked once (the decoded copy is dropped at once)
        except UnicodeDecodeError as exc:
            raise ArtifactError(f"id list is not UTF-8: {exc}") from None
        raw = np.frombuffer(data, dtype=np.uint8)
        breaks = np.flatnonzero(raw == ord("\n"))
        count = len(breaks) + 1 if data else 0
        if count != expected:
            raise ArtifactError(f"id list has {count} ids, the manifest says {expected}")
        # starts[i] .. starts[i + 1] - 1 is id i (the -1 drops its newline; the last has none).
        dtype = np.uint32 if len(data) < 2**32 - 1 else np.int64
        starts = np.empty(count + 1, dtype=dtype)
        if count:
            starts[0] = 0
            starts[1:count] = breaks + 1
            starts[count] = len(data) + 1
        self._data = data
        self._starts = starts
        self._count = count

    def __len__(self) -> int:
        return self._count

    @property
    def data(self) -> bytes:
        return self._data

    @property
    def starts(self) -> np.ndarray:
        """Where each id starts in ``data``, and (last) the length of ``data`` + 1."""
        return self._starts

    def text(self, index: int) -> str:
        starts = self._starts  # .item gives Python ints: ~2x faster than int(starts[i]) (per answer)
        return self._data[starts.item(index) : starts.item(index + 1) - 1].decode("utf-8")

    def raw(self, index: int) -> bytes:
        return self._data[int(self._starts[index]) : int(self._starts[index + 1]) - 1]

    def hashes(self) -> np.ndarray:
        """``id_hash`` of every id, in batches: a few thousand bytes objects at a time."""
        out = np.empty(self._count, dtype=np.uint64)
        for first in range(0, self._count, _HASH_BATCH):
            last = min(self._count, first + _HASH_BATCH)
            text = self._data[int(self._starts[first]) : int(self._starts[last]) - 1]
            out[first:last] = np.fromiter(
                map(id_hash, text.split(b"\n")), dtype=np.uint64, count=last - first
            )
        return out

    @property
    def nbytes(self) -> int:
        return len(self._data) + self._starts.nbytes


class IdList(Sequence[str]):
    """``ids[i]``: the id at index i (decoded on demand)."""

    def __init__(self, ids: CompactIds) -> None:
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self._ids.text(i) for i in range(*index.indices(len(self)))]
        count = len(self._ids)
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError(index)
        return self._ids.text(index)


class IdIndex(Mapping[str, int]):
    """``index.get(id)``, ``index[id]``, ``id in index``: the index of an id, without a dict."""

    def __init__(self, ids: CompactIds, what: str = "ids", published: np.ndarray | None = None) -> None:
        """``published``: the version's ``hash_index`` of these ids, if it has one (else computed)."""
        self._ids = ids
        if published is None:
            published = hash_index(ids)
        elif published.dtype != np.uint64 or published.shape != (2, len(ids)):
            raise ArtifactError(f"the index of the {what} is not a uint64 [2, {len(ids)}] array")
        self._hashes, order = published[0], published[1]
        if len(ids) and (bool((self._hashes[1:] < self._hashes[:-1]).any()) or int(order.max()) >= len(ids)):
            raise ArtifactError(f"the index of the {what} is not sorted hashes of its ids")
        self._order = order
        # Equal hashes are either a collision (fine) or a duplicate id (refused): compare bytes.
        same = np.flatnonzero(self._hashes[1:] == self._hashes[:-1])
        seen: dict[int, set[bytes]] = {}
        # (np.union1d would cost ~5 ms of cold start on its first call; a collision is rare)
        for position in sorted({*same.tolist(), *(same + 1).tolist()}):
            found = seen.setdefault(int(self._hashes[position]), set())
            raw = ids.raw(int(self._order[position]))
            if raw in found:
                raise ArtifactError(f"{what} are not unique")
            found.add(raw)

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, key: object, default: int | None = None) -> int | None:  # type: ignore[override]
        if not isinstance(key, str):
            return default
        encoded = key.encode("utf-8", "surrogatepass")
        wanted = id_hash(encoded)
        # As a uint64: a Python int below 2**63 made numpy search in float64, converting every hash
        # (~70 us at 100k ids) and rounding them (two hashes ~2**11 apart compared equal).
        position = int(np.searchsorted(self._hashes, np.uint64(wanted)))
        while position < len(self._hashes) and int(self._hashes[position]) == wanted:
            index = int(self._order[position])
            if self._ids.raw(index) == encoded:
                return index
            position += 1
        return default

    def __getitem__(self, key: str) -> int:
        index = self.get(key)
        if index is None:
            raise KeyError(key)
        return index

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return (self._ids.text(i) for i in range(len(self._ids)))

    @property
    def nbytes(self) -> int:
        return int(self._order.nbytes + self._hashes.nbytes)


def hash_index(ids: CompactIds) -> np.ndarray:
    """[2, n] uint64: the ids' hashes in ascending order, and under each the index of its id."""
    hashes = ids.hashes()
    order = np.argsort(hashes, kind="stable")
    return np.stack([hashes[order], order.astype(np.uint64)])


def load_ids(
    data: bytes, expected: int, what: str, published: np.ndarray | None = None
) -> tuple[IdList, IdIndex]:
    """The ids of ``data`` (UTF-8, one a line) by index and by id, with the version's ``hash_index``
    of them when it has one; ArtifactError if they are not ``expected`` many, not UTF-8, or not
    unique (or the index does not fit them)."""
    ids = CompactIds(data, expected)
    return IdList(ids), IdIndex(ids, what, published)
