"""A solution version in memory: ids, index maps and factor matrices aligned on integer indices."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .arrays import read_dimension_major
from .artifacts import ArrayName, FileEntry, Manifest, Recipe, decode_npy, sha256_hex
from .attributes import NO_EXTRAS, ModelExtras, load_extras
from .errors import ArtifactError
from .ids import load_ids
from .scoring import max_row_norm, remember_max_row_norm


@dataclass(frozen=True, slots=True, eq=False)
class SolutionVersionModel:
    manifest: Manifest
    #: ``item_ids[i]``: the id of item i. Compact (ids.py): no str object per item is kept.
    item_ids: Sequence[str]
    #: ``item_index.get(id)``: the index of an item id (hash search, no dict of a million ids).
    item_index: Mapping[str, int]
    user_index: Mapping[str, int]
    #: float32 [items, d], laid out dimension-major in memory (a transposed view of [d, items]: the
    #: matrix-vector product streams it fastest); None for POPULAR_ITEMS.
    item_factors: np.ndarray | None
    #: float32 [users, d]; None where the recipe has no users.
    user_factors: np.ndarray | None
    popularity: np.ndarray
    #: Item indices by descending popularity (ties: catalog order), for popular items and cold start.
    popular_order: np.ndarray
    #: L2 norms of the item factors, for RELATED_ITEMS' cosine similarity.
    item_norms: np.ndarray | None
    #: Optional item/user metadata, recent interactions and context vectors (filters, metadata, context).
    extras: ModelExtras = NO_EXTRAS
    #: log Σ_j exp(u·j) per user, from the publisher; None for versions published without it.
    user_log_normalisers: np.ndarray | None = None

    @property
    def arn(self) -> str:
        return self.manifest.solution_version_arn

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def log_normaliser(self, user: int) -> float | None:
        """The user's precomputed log Σ_j exp(u·j), when the version carries it."""
        return None if self.user_log_normalisers is None else float(self.user_log_normalisers[user])

    @property
    def nbytes(self) -> int:
        arrays = (
            self.item_factors,
            self.user_factors,
            self.popularity,
            self.popular_order,
            self.item_norms,
            self.user_log_normalisers,
        )
        return sum(a.nbytes for a in arrays if a is not None)


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


def files_to_prefetch(manifest: Manifest) -> list[str]:
    """The files ``build_model`` reads whole (all but the streamed item matrix), to fetch ahead."""
    skipped = {ArrayName.ITEM_FACTORS.value}
    if not manifest.recipe.needs_user_factors:
        skipped |= {ArrayName.USER_FACTORS.value, ArrayName.USER_LOG_NORMALISERS.value}
    return [name for name in manifest.files if name not in skipped]


def build_model(
    manifest: Manifest,
    fetch: Callable[[str], bytes],
    fetch_chunks: Callable[[str], Iterable[bytes]] | None = None,
) -> SolutionVersionModel:
    """Fetch every file of the manifest, verify it, and assemble the model.

    ``fetch(file_name)`` returns the file's bytes; ``fetch_chunks(file_name)``, when given, its bytes
    in chunks: the item matrix then streams into its serving layout without a second copy.
    Raises ArtifactError when anything does not match.
    """
    recipe = manifest.recipe

    def verified(name: ArrayName) -> tuple[bytes, FileEntry]:
        entry = manifest.files.get(name.value)
        if entry is None:
            raise ArtifactError(f"the manifest lists no {name.value}")
        data = fetch(name.value)
        if len(data) != entry.size or sha256_hex(data) != entry.sha256:
            raise ArtifactError(f"{name.value} does not match the manifest's size and sha256")
        return data, entry

    def matrix(name: ArrayName, rows: int) -> np.ndarray:
        array = decode_npy(*verified(name))
        if array.dtype != np.float32 or array.ndim != 2 or array.shape != (rows, manifest.dimensions):
            raise ArtifactError(f"{name.value} is {array.dtype}{list(array.shape)}, expected float32 matrix")
        _check_finite(name.value, array)
        return array

    item_ids, item_index = load_ids(verified(ArrayName.ITEM_IDS)[0], manifest.num_items, "item ids")
    user_index: Mapping[str, int] = {}
    if manifest.num_users:
        _, user_index = load_ids(verified(ArrayName.USER_IDS)[0], manifest.num_users, "user ids")

    def item_matrix() -> np.ndarray:
        name = ArrayName.ITEM_FACTORS
        entry = manifest.files.get(name.value)
        if entry is None:
            raise ArtifactError(f"the manifest lists no {name.value}")
        if fetch_chunks is None:  # from bytes: one transposing copy (callers without streaming)
            factors = np.ascontiguousarray(matrix(name, manifest.num_items).T).T
            remember_max_row_norm(factors, max_row_norm(factors))
            return factors
        factors, largest = read_dimension_major(
            name.value, fetch_chunks(name.value), entry, manifest.num_items, manifest.dimensions
        )
        remember_max_row_norm(factors, largest)
        return factors

    item_factors = item_matrix() if recipe.needs_item_factors else None
    user_factors = (
        matrix(ArrayName.USER_FACTORS, manifest.num_users)
        if recipe.needs_user_factors and manifest.num_users
        else None
    )
    popularity = decode_npy(*verified(ArrayName.POPULARITY))
    if popularity.shape != (manifest.num_items,) or popularity.dtype.kind not in "fiu":
        raise ArtifactError("popularity must be a numeric vector with one value per item")
    _check_finite(ArrayName.POPULARITY.value, popularity)

    user_log_normalisers = None
    if user_factors is not None and ArrayName.USER_LOG_NORMALISERS.value in manifest.files:
        raw = decode_npy(*verified(ArrayName.USER_LOG_NORMALISERS))
        user_log_normalisers = _log_normalisers(raw, manifest)

    # Stable sort of the negated counts: most popular first, ties in catalog order.
    popular_order = np.argsort(-popularity.astype(np.float64), kind="stable").astype(np.int64)
    item_norms = None
    if item_factors is not None and recipe is Recipe.RELATED_ITEMS:
        item_norms = np.linalg.norm(item_factors, axis=1).astype(np.float32)
    return SolutionVersionModel(
        manifest=manifest,
        item_ids=item_ids,
        item_index=item_index,
        user_index=user_index,
        item_factors=item_factors,
        user_factors=user_factors,
        popularity=popularity,
        popular_order=popular_order,
        item_norms=item_norms,
        extras=load_extras(manifest, fetch),
        user_log_normalisers=user_log_normalisers,
    )
