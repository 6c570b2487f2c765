"""A loaded version's users: ``get(user_id)`` gives the stored vector (and log-normaliser) or None.

Two layouts, one interface (``UserVectors``), so ``serving.recipes.user_vector`` asks one place:
- ``PagedUsers`` (versions published since issue 19): only the page index is in memory; a user is
  fetched on demand, with one ranged GET of their page (user_pages.py), into ``UserCache``, a
  bounded LRU shared by the process's versions. Their log-normaliser is computed on first use
  (one float64 pass over the catalog: serving/normalisers.py) and cached with the vector.
- ``LoadedUsers`` (versions published before): the whole matrix and id index, as loaded before.

A user the version does not have is cached too (as None): an unknown id costs one read, once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, Protocol

import numpy as np

from personalize_core.errors import ModelUnavailableError
from personalize_core.modelstore.objects import ObjectMissing
from personalize_core.modelstore.page_layout import user_page_file
from personalize_core.modelstore.s3_reader import S3Error, S3SizeMismatch
from personalize_core.modelstore.user_pages import Page, PageIndex, UserPageError, check_page, hash_of

#: ``read_range(file name under the version, offset, length)``: one ranged GET.
ReadRange = Callable[[str, int, int], bytes]
#: Log-normalisers of [users, d] vectors over the version's catalog (serving/normalisers.py).
Normalise = Callable[[np.ndarray], np.ndarray]


#: Pages a batch reads for nothing rather than send another GET (~72 KB each at d = 64: a
#: millisecond of S3's throughput against tens of milliseconds to the first byte).
_RUN_GAP = 2


class StoredUser(NamedTuple):
    #: The user's vector as stored: float32 [d], read-only.
    vector: np.ndarray
    #: log Σ_j exp(vector·j) over the catalog; None where the recipe needs none (ranking), or an
    #: old version stored none.
    log_normaliser: float | None
    #: The user's row in the version's user list (the order the publisher was given).
    row: int


class UserVectors(Protocol):
    def get(self, user_id: str) -> StoredUser | None:
        """The user's stored vector, or None when the version does not know them."""
        ...

    def get_many(self, user_ids: Iterable[str]) -> dict[str, StoredUser | None]:
        """Every one of ``user_ids`` (batch inference: pages fetched together)."""
        ...

    @property
    def nbytes(self) -> int: ...


class UserCache:
    """A bounded LRU of fetched users, keyed by (version, user id); None marks an unknown user.

    One per process (the store's): its bound is the function's memory for users, whatever the
    number of versions loaded. ~0.7 KB an entry at d = 64 (docs/DESIGN.md).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._entries: OrderedDict[tuple[str, str], StoredUser | None] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: tuple[str, str]) -> tuple[bool, StoredUser | None]:
        with self._lock:
            try:
                value = self._entries[key]
            except KeyError:
                self.misses += 1
                return False, None
            self._entries.move_to_end(key)
            self.hits += 1
            return True, value

    def store(self, key: tuple[str, str], value: StoredUser | None) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)


class UserAccess(NamedTuple):
    """How a loaded version reaches its user pages: the store's ranged GETs and its cache."""

    read_range: ReadRange
    cache: UserCache
    #: Connections a batch of users is fetched on (``get_many``).
    fetch_threads: int = 16


class LoadedUsers:
    """Users of a version in the layout published before pages: everything in memory."""

    def __init__(
        self, index: Mapping[str, int], factors: np.ndarray, log_normalisers: np.ndarray | None
    ) -> None:
        self._index = index
        self.factors = factors
        self.log_normalisers = log_normalisers

    def get(self, user_id: str) -> StoredUser | None:
        row = self._index.get(user_id)
        if row is None:
            return None
        normaliser = None if self.log_normalisers is None else float(self.log_normalisers[row])
        return StoredUser(self.factors[row], normaliser, row)

    def get_many(self, user_ids: Iterable[str]) -> dict[str, StoredUser | None]:
        return {user_id: self.get(user_id) for user_id in user_ids}

    @property
    def nbytes(self) -> int:
        extra = 0 if self.log_normalisers is None else self.log_normalisers.nbytes
        return int(self.factors.nbytes + extra + getattr(self._index, "nbytes", 0))


class PagedUsers:
    """Users fetched page by page from S3 into a ``UserCache``; only the page index is kept."""

    def __init__(
        self,
        version: str,
        index: PageIndex,
        dims: int,
        read_range: ReadRange,
        cache: UserCache,
        normalise: Normalise | None = None,
        fetch_threads: int = 16,
    ) -> None:
        #: The version's ARN: the cache's key and every error's subject.
        self.version = version
        self.index = index
        self.dims = dims
        self._read_range = read_range
        self._cache = cache
        self._normalise = normalise
        self._fetch_threads = max(1, fetch_threads)

    @property
    def nbytes(self) -> int:
        return self.index.nbytes

    def get(self, user_id: str) -> StoredUser | None:
        key = (self.version, user_id)
        found, stored = self._cache.lookup(key)
        if found:
            return stored
        encoded, hashed = hash_of(user_id)
        page_number = self.index.page_of(hashed)
        span = self.index.span(page_number)
        page = self._page(page_number, self._read(page_number, span.offset, span.length))
        position = page.find(encoded, hashed)
        stored = None if position is None else self._stored([(page, position)])[0]
        self._cache.store(key, stored)
        return stored

    def get_many(self, user_ids: Iterable[str]) -> dict[str, StoredUser | None]:
        """The users of a batch: those not cached are fetched with one ranged GET per run of
        nearby pages (``_runs``), on ``fetch_threads`` connections, and their normalisers
        computed in one product."""
        found: dict[str, StoredUser | None] = {}
        wanted: dict[int, list[tuple[str, bytes, int]]] = {}  # page -> (id, UTF-8, hash)
        for user_id in dict.fromkeys(user_ids):
            cached, stored = self._cache.lookup((self.version, user_id))
            if cached:
                found[user_id] = stored
                continue
            encoded, hashed = hash_of(user_id)
            wanted.setdefault(self.index.page_of(hashed), []).append((user_id, encoded, hashed))
        located: list[tuple[str, Page, int | None]] = []  # (user id, their page, position)
        for pages in self._fetch(self._runs(sorted(wanted))):
            for page_number, page in pages:
                for user_id, encoded, hashed in wanted[page_number]:
                    located.append((user_id, page, page.find(encoded, hashed)))
        present = [(page, position) for _, page, position in located if position is not None]
        fetched = iter(self._stored(present))  # one product for every normaliser to compute
        for user_id, _, position in located:
            found[user_id] = None if position is None else next(fetched)
            self._cache.store((self.version, user_id), found[user_id])
        return found

    # -- reading pages -------------------------------------------------------------------------------

    def _runs(self, pages: list[int]) -> list[list[int]]:
        """Sorted pages cut into runs, each one ranged GET: pages of one file at most
        ``_RUN_GAP`` pages apart (a page read for nothing costs less than another request)."""
        runs: list[list[int]] = []
        per_file = self.index.pages_per_file
        for page in pages:
            last = runs[-1][-1] if runs else -1
            if runs and page // per_file == last // per_file and page - last <= _RUN_GAP + 1:
                runs[-1].append(page)
            else:
                runs.append([page])
        return runs

    def _fetch(self, runs: list[list[int]]) -> Iterable[list[tuple[int, Page]]]:
        """Each run's pages, the runs read on ``fetch_threads`` connections."""
        if len(runs) <= 1 or self._fetch_threads == 1:
            return map(self._file_pages, runs)
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - batch inference only

        with ThreadPoolExecutor(min(self._fetch_threads, len(runs))) as pool:
            return list(pool.map(self._file_pages, runs))

    def _file_pages(self, page_numbers: list[int]) -> list[tuple[int, Page]]:
        spans = [self.index.span(p) for p in page_numbers]
        start = spans[0].offset
        data = self._read(page_numbers[0], start, spans[-1].offset + spans[-1].length - start)
        return [
            (p, self._page(p, data[span.offset - start : span.offset - start + span.length]))
            for p, span in zip(page_numbers, spans, strict=True)
        ]

    def _where(self, page_number: int) -> str:
        name = user_page_file(page_number // self.index.pages_per_file)
        return f"user page {page_number} ({name}) of {self.version}"

    def _read(self, page_number: int, offset: int, length: int) -> bytes:
        name = user_page_file(page_number // self.index.pages_per_file)
        try:
            return self._read_range(name, offset, length)
        except ObjectMissing:
            raise UserPageError(f"{self._where(page_number)} does not exist") from None
        except S3SizeMismatch:
            raise UserPageError(f"{self._where(page_number)} is truncated") from None
        except S3Error as exc:
            if exc.status == 416:  # the file ends before the page: truncated
                raise UserPageError(f"{self._where(page_number)} is truncated") from None
            raise ModelUnavailableError(f"{self._where(page_number)} cannot be read now; try again") from exc
        except OSError as exc:
            raise ModelUnavailableError(f"{self._where(page_number)} cannot be read now; try again") from exc

    def _page(self, page_number: int, data: bytes) -> Page:
        where = self._where(page_number)
        check_page(data, self.index.span(page_number), where)
        return Page(data, self.dims, where)

    def _stored(self, located: list[tuple[Page, int]]) -> list[StoredUser]:
        """The users at (page, position), vectors copied out of their pages (the pages are
        dropped), with their normalisers: stored, or computed now in one product."""
        if not located:
            return []
        vectors = np.stack([page.vectors[position] for page, position in located]).astype(np.float32)
        normalisers: list[float | None]
        stored = [page.log_normalisers for page, _ in located]
        if all(column is not None for column in stored):
            normalisers = [float(c[p]) for c, (_, p) in zip(stored, located, strict=True) if c is not None]
        elif self._normalise is not None:
            normalisers = self._normalise(vectors).tolist()
        else:
            normalisers = [None] * len(located)
        rows = [int(page.rows[position]) for page, position in located]
        return [StoredUser(_own(vectors[i]), normalisers[i], rows[i]) for i in range(len(located))]


def _own(row: np.ndarray) -> np.ndarray:
    """A read-only copy of one vector: a cached user keeps 4d bytes alive, not a page or a block."""
    vector = row.copy()
    vector.flags.writeable = False
    return vector
