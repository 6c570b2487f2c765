"""A solution version in memory: ids, index maps and factor matrices aligned on integer indices."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import NamedTuple

import numpy as np

from personalize_core.errors import ArtifactError
from personalize_core.modelstore.attributes import NO_EXTRAS, ModelExtras, load_extras
from personalize_core.modelstore.background import in_background
from personalize_core.modelstore.ids import load_ids
from personalize_core.modelstore.item_matrix import ItemMatrix
from personalize_core.modelstore.layout import ArrayName, FileEntry, Manifest, Recipe
from personalize_core.modelstore.matrices import (
    item_planes,
    read_into_planes,
    receive_item_planes,
    receive_matrix,
    to_planes,
)
from personalize_core.modelstore.npy import decode_npy
from personalize_core.modelstore.objects import Received
from personalize_core.modelstore.user_pages import PageIndex
from personalize_core.modelstore.users import LoadedUsers, PagedUsers, UserAccess, UserCache, UserVectors
from personalize_core.serving.normalisers import log_normalisers
from personalize_core.serving.scoring import max_norm_bound, squared_norms


class Derived:
    """What is computed from a loaded version on first use and kept with it: YᵀY, which every
    fold-in of the version reads (serving/foldin.py). A plain class: a NamedTuple's fields cannot
    change, and this is filled in later, once, under a lock."""

    __slots__ = ("_gram", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gram: np.ndarray | None = None

    def gram(self, item_factors: ItemMatrix) -> np.ndarray:
        if self._gram is None:
            from personalize_core.serving.foldin import item_gram  # noqa: PLC0415 - first fold-in only

            with self._lock:
                if self._gram is None:
                    gram = item_gram(item_factors)
                    gram.setflags(write=False)
                    self._gram = gram
        return self._gram


class SolutionVersionModel(NamedTuple):
    """One loaded solution version. Tell models apart with ``is``: == on its arrays means nothing."""

    manifest: Manifest
    #: ``item_ids[i]``: the id of item i. Compact (ids.py): no str object per item is kept.
    item_ids: Sequence[str]
    #: ``item_index.get(id)``: the index of an item id (hash search, no dict of a million ids).
    item_index: Mapping[str, int]
    #: The float32 [items, d] matrix as two bfloat16-half planes (item_matrix.py: the scorer scans
    #: the high halves and reads exact rows from both); None for POPULAR_ITEMS.
    item_factors: ItemMatrix | None
    #: ``users.get(user_id)``: a user's stored vector and log-normaliser (users.py: fetched page by
    #: page, or held whole for versions published before pages); None where the recipe has no users.
    users: UserVectors | None
    popularity: np.ndarray
    #: Item indices by descending popularity (ties: catalog order), for popular items and cold start.
    popular_order: np.ndarray
    #: L2 norms of the item factors, for RELATED_ITEMS' cosine similarity.
    item_norms: np.ndarray | None
    #: Optional item/user metadata, recent interactions and context vectors (filters, metadata, context).
    extras: ModelExtras = NO_EXTRAS
    #: An upper bound on the largest row norm of the item factors: the scorer's error bounds are
    #: proportional to it.
    item_max_norm: float = 0.0
    #: float64 [d]: scores the users the model has no vector for (the mean user vector); None where
    #: the recipe has no users.
    cold_user_vector: np.ndarray | None = None
    #: log Σ_j exp(cold·j), when the version stores it.
    cold_user_log_normaliser: float | None = None
    #: Computed on first use and kept (YᵀY); None for models built by hand (computed per call then).
    derived: Derived | None = None

    @property
    def arn(self) -> str:
        return self.manifest.solution_version_arn

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def item_gram(self) -> np.ndarray:
        """YᵀY of the item factors, float64 [d, d]: once per version (the first fold-in pays it)."""
        assert self.item_factors is not None
        return (self.derived or Derived()).gram(self.item_factors)

    @property
    def nbytes(self) -> int:
        """The bytes the version holds (the users' cache is the store's, not counted here)."""
        arrays = (self.item_factors, self.popularity, self.popular_order, self.item_norms)
        held = sum(a.nbytes for a in arrays if a is not None)
        return held + (self.users.nbytes if self.users is not None else 0)


def _check_finite(name: str, array: np.ndarray) -> None:
    # Chunked so the check itself allocates little next to a large matrix.
    flat = array.reshape(-1)
    for start in range(0, flat.size, 1 << 22):
        if not np.isfinite(flat[start : start + (1 << 22)]).all():
            raise ArtifactError(f"{name} holds NaN or infinite values")


def _log_normalisers(array: np.ndarray, manifest: Manifest) -> np.ndarray:
    if array.shape != (manifest.num_users,) or array.dtype != np.float64:
        raise ArtifactError("user log-normalisers must be a float64 vector with one value per user")
    _check_finite(ArrayName.USER_LOG_NORMALISERS.value, array)
    return array


#: ``receive(file_name, size)``: the file received whole into a buffer of its own (objects.py).
Receive = Callable[[str, int], Received]


def popularity_order(popularity: np.ndarray) -> np.ndarray:
    """Item indices by descending popularity, ties in catalog order (a stable descending argsort)."""
    if popularity.dtype == np.float32 and len(popularity) < 2**32 and bool((popularity >= 0).all()):
        # Non-negative float32s order as their bit patterns do (+ 0.0 turns -0.0 into 0.0), so one
        # sort of unique (inverted bits, index) keys does it, ~10x faster than a stable argsort.
        bits = (popularity + np.float32(0.0)).view(np.uint32)
        keys = (~bits).astype(np.uint64) << np.uint64(32) | np.arange(len(popularity), dtype=np.uint64)
        return (np.sort(keys) & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return np.argsort(-popularity.astype(np.float64), kind="stable").astype(np.int64)


class _VersionFiles:
    """A version's files, fetched and checked against its manifest (build_model's steps)."""

    def __init__(
        self,
        manifest: Manifest,
        fetch: Callable[[str], bytes],
        fetch_chunks: Callable[[str], Iterable[bytes]] | None,
        receive: Receive | None,
    ) -> None:
        self.manifest = manifest
        self.fetch = fetch
        self.fetch_chunks = fetch_chunks
        self.receive = receive

    def entry(self, name: ArrayName) -> FileEntry:
        entry = self.manifest.files.get(name.value)
        if entry is None:
            raise ArtifactError(f"the manifest lists no {name.value}")
        return entry

    def verified(self, name: ArrayName) -> tuple[bytes, FileEntry]:
        entry = self.entry(name)
        data = self.fetch(name.value)
        if not entry.matches(data):
            raise ArtifactError(f"{name.value} does not match the manifest's size and checksum")
        return data, entry

    def index(self, name: ArrayName) -> np.ndarray | None:
        """A published ``ids.hash_index``, if the version has it (older versions do not)."""
        return decode_npy(*self.verified(name)) if name.value in self.manifest.files else None

    def decoded_matrix(self, name: ArrayName, rows: int) -> np.ndarray:
        array = decode_npy(*self.verified(name))
        if array.dtype != np.float32 or array.ndim != 2 or array.shape != (rows, self.manifest.dimensions):
            raise ArtifactError(f"{name.value} is {array.dtype}{list(array.shape)}, expected float32 matrix")
        _check_finite(name.value, array)
        return array

    def received_matrix(self, name: ArrayName, rows: int) -> tuple[np.ndarray, np.ndarray]:
        assert self.receive is not None
        entry = self.entry(name)
        received = self.receive(name.value, entry.size)
        return receive_matrix(name.value, received, entry, rows, self.manifest.dimensions)

    def user_matrix(self) -> np.ndarray:
        if self.receive is None:
            return self.decoded_matrix(ArrayName.USER_FACTORS, self.manifest.num_users)
        return self.received_matrix(ArrayName.USER_FACTORS, self.manifest.num_users)[0]

    def item_matrix(self) -> tuple[ItemMatrix, float, np.ndarray | None]:
        """The item planes, however the version stored the matrix, an upper bound on its largest row
        norm, and (RELATED_ITEMS) every row's norm. One pass computes the norms and refuses NaN and
        infinities; it reads only the high halves unless the recipe needs exact norms."""
        name, rows, dims = ArrayName.ITEM_FACTORS, self.manifest.num_items, self.manifest.dimensions
        entry = self.entry(name)
        if entry.layout is not None:
            if self.receive is not None:
                factors = receive_item_planes(
                    name.value, self.receive(name.value, entry.size), entry, rows, dims
                )
            else:
                data = np.frombuffer(self.verified(name)[0], dtype=np.uint8)
                factors = item_planes(name.value, data, entry, rows, dims)
        elif self.receive is not None and entry.fortran_order:  # published before the planes
            factors = to_planes(self.received_matrix(name, rows)[0])
        elif self.fetch_chunks is not None and not entry.fortran_order:
            factors = read_into_planes(name.value, self.fetch_chunks(name.value), entry, rows, dims)
        else:
            factors = to_planes(self.decoded_matrix(name, rows))
        exact = self.manifest.recipe is Recipe.RELATED_ITEMS
        squared = squared_norms(factors, exact)
        if not np.isfinite(squared).all():  # a NaN or infinity makes its row's square non-finite
            raise ArtifactError(f"{name.value} holds NaN or infinite values")
        largest = max_norm_bound(float(squared.max(initial=0.0)), dims, of_high_halves=not exact)
        return factors, largest, np.sqrt(squared) if exact else None


def build_model(
    manifest: Manifest,
    fetch: Callable[[str], bytes],
    fetch_chunks: Callable[[str], Iterable[bytes]] | None = None,
    receive: Receive | None = None,
    user_access: UserAccess | None = None,
) -> SolutionVersionModel:
    """Fetch every file of the manifest, verify it, and assemble the model.

    ``fetch(file_name)`` returns the file's bytes. ``receive``, when given, receives the factor
    matrices straight into their serving memory (the item matrix, and the user matrix of a version
    published before user pages, at once, on two connections, while the ids are indexed);
    ``fetch_chunks``, the item matrix of a version published in C order, in chunks as they arrive.
    Without them a matrix is decoded from bytes. ``user_access``: how user pages are read and
    cached (without it, ranges of ``fetch``'s whole files, in a cache of the model's own). Raises
    ArtifactError when anything does not match.
    """
    recipe = manifest.recipe
    files = _VersionFiles(manifest, fetch, fetch_chunks, receive)
    verified = files.verified
    wants_items = recipe.needs_item_factors
    wants_users = recipe.needs_user_factors and manifest.num_users > 0
    paged = wants_users and manifest.user_pages is not None
    loads_users = wants_users and not paged  # a version published before pages: the whole matrix
    items = in_background(files.item_matrix) if wants_items and receive is not None else None
    users = in_background(files.user_matrix) if loads_users and receive is not None else None
    try:
        item_ids, item_index = load_ids(
            verified(ArrayName.ITEM_IDS)[0],
            manifest.num_items,
            "item ids",
            files.index(ArrayName.ITEM_IDS_INDEX),
        )
        user_index: Mapping[str, int] = {}
        if loads_users:
            user_ids = verified(ArrayName.USER_IDS)[0]
            _, user_index = load_ids(
                user_ids, manifest.num_users, "user ids", files.index(ArrayName.USER_IDS_INDEX)
            )
    except BaseException:
        for receiving in (items, users):
            if receiving is not None:
                receiving.exception()  # the receives end before the error is reported
        raise
    item_factors, item_max_norm, item_norms = None, 0.0, None
    if wants_items:
        item_factors, item_max_norm, item_norms = items.result() if items is not None else files.item_matrix()
    user_factors = users.result() if users is not None else files.user_matrix() if loads_users else None
    popularity = decode_npy(*verified(ArrayName.POPULARITY))
    if popularity.shape != (manifest.num_items,) or popularity.dtype.kind not in "fiu":
        raise ArtifactError("popularity must be a numeric vector with one value per item")
    _check_finite(ArrayName.POPULARITY.value, popularity)

    user_vectors: UserVectors | None = None
    if paged and item_factors is not None:
        user_vectors = _paged_users(files, item_factors, user_access)
    elif user_factors is not None:
        user_log_normalisers = None
        if ArrayName.USER_LOG_NORMALISERS.value in manifest.files:
            raw = decode_npy(*verified(ArrayName.USER_LOG_NORMALISERS))
            user_log_normalisers = _log_normalisers(raw, manifest)
        user_vectors = LoadedUsers(user_index, user_factors, user_log_normalisers)

    cold_vector, cold_normaliser = _cold_user(verified, manifest, wants_users, user_factors)
    popular_order = popularity_order(popularity)
    return SolutionVersionModel(
        manifest=manifest,
        item_ids=item_ids,
        item_index=item_index,
        item_factors=item_factors,
        users=user_vectors,
        popularity=popularity,
        popular_order=popular_order,
        item_norms=item_norms,
        extras=load_extras(manifest, fetch),
        item_max_norm=item_max_norm,
        cold_user_vector=cold_vector,
        cold_user_log_normaliser=cold_normaliser,
        derived=Derived(),
    )


def _paged_users(files: _VersionFiles, item_factors: ItemMatrix, access: UserAccess | None) -> PagedUsers:
    """The version's users as pages: only the page index is read now (user_pages.py)."""
    manifest = files.manifest
    pages = manifest.user_pages
    assert pages is not None
    table = decode_npy(*files.verified(ArrayName.USER_PAGES_INDEX))
    index = PageIndex(table, pages.pages_per_file, pages.size)
    if len(index) != pages.pages or -(-pages.pages // pages.pages_per_file) != pages.files:
        raise ArtifactError("the user page index does not match the manifest's userPages")
    if access is None:  # ranges of whole files (tests; the store reads ranges from S3)
        fetch = files.fetch
        access = UserAccess(lambda name, start, length: fetch(name)[start : start + length], UserCache(4096))
    normalise = None
    if manifest.recipe is Recipe.USER_PERSONALIZATION and not pages.normalisers:
        normalise = partial(log_normalisers, item_factors)
    return PagedUsers(
        manifest.solution_version_arn,
        index,
        manifest.dimensions,
        access.read_range,
        access.cache,
        normalise,
        access.fetch_threads,
    )


def _cold_user(
    verified: Callable[[ArrayName], tuple[bytes, FileEntry]],
    manifest: Manifest,
    wants_users: bool,
    user_factors: np.ndarray | None,
) -> tuple[np.ndarray | None, float | None]:
    """The cold-user vector and its normaliser: stored by the writer, or (versions published before
    it) the mean of the user factors, whose normaliser the scorer then computes per request."""
    if not wants_users:
        return None, None
    if ArrayName.COLD_USER.value not in manifest.files and user_factors is not None:
        return np.asarray(user_factors, dtype=np.float64).mean(axis=0), None
    stored = decode_npy(*verified(ArrayName.COLD_USER))
    if stored.dtype != np.float64 or stored.shape != (manifest.dimensions + 1,):
        raise ArtifactError(f"{ArrayName.COLD_USER.value} must be float64 [dimensions + 1]")
    _check_finite(ArrayName.COLD_USER.value, stored)
    return stored[:-1], float(stored[-1])
