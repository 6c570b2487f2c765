"""Batch scoring: ``user_top_k`` for many users at once, with blocked matrix products.

The item matrix's planes (modelstore/item_matrix.py) are turned back into exact float32 tiles,
block by block ([d, 2,048 items] with the compiled kernels, read while in cache, [d, 8,192] for
numpy), and each tile is multiplied with a block of users; the candidates of every user are
every item within float32's error bound (twice over) of its k-th largest logit, re-scored in
float64 and ranked, exactly as ``user_top_k`` ranks them (the tests compare the two row by row).
A product is compute-bound, not memory-bound, so the high-half scan would not pay here.
"""

from __future__ import annotations

import numpy as np

from personalize_core.modelstore.item_matrix import BLOCK_ITEMS, ItemMatrix
from personalize_core.serving import native
from personalize_core.serving.scoring import (
    Items,
    as_item_matrix,
    item_rows,
    logit_error_bound,
    max_row_norm,
    softmax_scores,
)

#: Items per block of the numpy batch kernel: one block of logits stays in cache.
_BATCH_ITEM_BLOCK = 8_192
#: Item-matrix blocks per tile with the compiled selection: [users, tile] logits stay in cache.
_NATIVE_TILE_BLOCKS = 2
#: Below this many items one block of the numpy kernel holds the whole catalog.
_SMALL_CATALOG = 32_768


def batch_user_top_k(
    item_factors: Items,
    user_vectors: np.ndarray,
    k: int,
    block: int | None = None,
    *,
    log_normalisers: np.ndarray | None = None,
    threads: int | None = None,
    max_norm: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``user_top_k`` for many users at once: blocked matrix products instead of a loop of matvecs.

    Returns ``(indices, scores)``, both ``[users, min(k, items)]``; row r equals
    ``user_top_k(item_factors, user_vectors[r], k)`` (same items, same order, same scores).
    ``log_normalisers`` (one per user) makes the exp over the catalog unnecessary; ``max_norm`` is
    the largest row norm of ``item_factors`` (computed here when not given).
    ``threads``: blocks of users are scored on this many threads, each with a one-thread BLAS
    (numpy releases the GIL in BLAS and in the reductions); None: as many as BLAS is set to use.
    ``block``: users per matrix product (None: 512 with the compiled selection, whose tiles stay
    in cache, else 256).
    """
    if block is None:
        block = 512 if native.kernels() is not None else 256
    items = as_item_matrix(item_factors)
    num_items = items.num_items
    k = min(k, num_items)
    users = user_vectors.shape[0]
    indices = np.empty((users, k), dtype=np.int64)
    scores = np.empty((users, k), dtype=np.float64)
    if k == 0:
        return indices, scores
    largest = max_row_norm(items) if max_norm is None else max_norm

    def score(start: int) -> None:
        stop = min(users, start + block)
        lognorm = None if log_normalisers is None else np.asarray(log_normalisers[start:stop], np.float64)
        indices[start:stop], scores[start:stop] = _batch_block(
            items, np.asarray(user_vectors[start:stop], dtype=np.float32), k, lognorm, largest
        )

    starts = range(0, users, block)
    workers = min(len(starts), _blas_threads() if threads is None else max(1, threads))
    if workers <= 1:
        for start in starts:
            score(start)
        return indices, scores
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - batch jobs only

    from threadpoolctl import threadpool_limits  # noqa: PLC0415 - batch jobs only

    # One BLAS thread per worker: the workers are the parallelism (selection included, not only BLAS).
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(score, starts):
            pass
    return indices, scores


def _blas_threads() -> int:
    """How many threads BLAS is set to use (OMP/OPENBLAS_NUM_THREADS, threadpoolctl, or the CPUs)."""
    from threadpoolctl import threadpool_info  # noqa: PLC0415 - batch jobs only

    return max((int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"), default=1)


def _hits(logits: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every logit at or above its row's bound (a flat scan: 2-D nonzero is slow)."""
    flat = np.flatnonzero(logits >= bounds[:, None])
    rows, columns = np.divmod(flat, logits.shape[1])
    return rows, columns


def _member_maxima(cube: np.ndarray) -> np.ndarray:
    """[rows, members, groups] -> [rows, groups] maxima, by pairwise maximum (faster than max(axis=1))."""
    out: np.ndarray = cube[:, 0].copy()
    for member in range(1, cube.shape[1]):
        np.maximum(out, cube[:, member], out=out)
    return out


def _group_hits(
    cube: np.ndarray, group_maxima: np.ndarray, bounds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column in the block, value) of the logits at or above their row's bound, looking only
    inside the groups whose maximum is."""
    groups = cube.shape[2]
    pair_rows, pair_groups = _hits(group_maxima, bounds)
    members = cube[pair_rows, :, pair_groups]  # [pairs, members]
    pair, member = np.nonzero(members >= bounds[pair_rows][:, None])
    return pair_rows[pair], member * groups + pair_groups[pair], members[pair, member]


def _fold_log_sum_exp(peaks: np.ndarray, mass: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Add a block of logits to each row's running Σ exp(logit - peak); returns the new peaks."""
    new_peaks: np.ndarray = np.maximum(peaks, logits.max(axis=1))
    mass *= np.exp(peaks - new_peaks)
    mass += np.exp(logits.astype(np.float64) - new_peaks[:, None]).sum(axis=1)
    return new_peaks


def _batch_block(
    items: ItemMatrix,
    vectors: np.ndarray,
    k: int,
    log_normalisers: np.ndarray | None,
    max_norm: float,
) -> tuple[np.ndarray, np.ndarray]:
    kernels = native.kernels()
    if kernels is not None:
        return _batch_block_native(kernels, items, vectors, k, log_normalisers, max_norm)
    num_items, dims = items.shape
    rows = vectors.shape[0]
    norms = np.linalg.norm(vectors, axis=1).astype(np.float64)
    slack = 2 * logit_error_bound(dims, 1.0, max_norm) * norms
    groups = 1 << max(10, int(8 * k - 1).bit_length())
    item_block = max(_BATCH_ITEM_BLOCK, groups)
    blocked = num_items > _SMALL_CATALOG and num_items >= 4 * item_block
    if not blocked:
        item_block = num_items
    maxima = np.full((rows, groups), -np.inf, dtype=np.float32)
    threshold = np.full(rows, -np.inf)
    peaks = np.full(rows, -np.inf)
    mass = np.zeros(rows)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (user row, item, float32 logit)
    for number, first in enumerate(range(0, num_items, item_block)):
        tile = items.columns(first // BLOCK_ITEMS, -(-item_block // BLOCK_ITEMS))  # exact [d, block]
        logits = vectors @ tile  # [rows, block] float32
        width = logits.shape[1]
        if log_normalisers is None:  # online log-sum-exp per row, in float64 (the slow path)
            peaks = _fold_log_sum_exp(peaks, mass, logits)
        if blocked and width % groups == 0:
            # Item j of the block is in group j % groups. The block's group maxima tighten the
            # running ones (and, on blocks 0, 1, 3, 7..., the threshold), and say which (user,
            # group) pairs can hold a candidate: only their items are compared one by one.
            cube = logits.reshape(rows, width // groups, groups)
            block_maxima = _member_maxima(cube)
            np.maximum(maxima, block_maxima, out=maxima)
            if number & (number + 1) == 0:
                threshold = np.partition(maxima, groups - k, axis=1)[:, groups - k].astype(np.float64)
            hit_rows, hit_items, values = _group_hits(
                cube, block_maxima, (threshold - slack).astype(np.float32)
            )
        else:  # a small catalog (one block, exact threshold) or the ragged last block
            if not blocked:
                threshold = np.partition(logits, width - k, axis=1)[:, width - k].astype(np.float64)
            hit_rows, hit_items = _hits(logits, (threshold - slack).astype(np.float32))
            values = logits[hit_rows, hit_items]
        found.append((hit_rows, hit_items + first, values))
    if blocked:  # the final threshold, from every block's maxima: few candidates to re-score
        threshold = np.partition(maxima, groups - k, axis=1)[:, groups - k].astype(np.float64)
    hit_rows, hit_items, values = (np.concatenate(part) for part in zip(*found, strict=True))
    keep = values >= (threshold - slack)[hit_rows]
    # -inf never occurs here (no masks), so every row keeps at least k candidates.
    hit_rows, hit_items, values = hit_rows[keep], hit_items[keep], values[keep]
    exact = np.einsum(
        "md,md->m", item_rows(items, hit_items).astype(np.float64), vectors[hit_rows].astype(np.float64)
    )
    # Every row has at least k candidates (no masks here), grouped by row.
    order = np.lexsort((hit_items, -exact, hit_rows))
    starts = np.concatenate(([0], np.cumsum(np.bincount(hit_rows, minlength=rows))[:-1]))
    picked = order[starts[:, None] + np.arange(k)]
    return _scores(picked, hit_items, values, exact, log_normalisers, peaks, mass)


def _batch_block_native(
    kernels: native.Kernels,
    items: ItemMatrix,
    vectors: np.ndarray,
    k: int,
    log_normalisers: np.ndarray | None,
    max_norm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``_batch_block`` with the compiled selection: each tile of logits is read once, while in
    cache, against every user's running bound; candidates are re-scored in float64 in C."""
    num_items, dims = items.shape
    rows = vectors.shape[0]
    norms = np.linalg.norm(vectors, axis=1).astype(np.float64)
    selection = kernels.selection(rows, k, 2 * logit_error_bound(dims, 1.0, max_norm) * norms)
    width = min(num_items, _NATIVE_TILE_BLOCKS * BLOCK_ITEMS)
    tile = np.empty((rows, width), dtype=np.float32)
    columns = np.empty((dims, width), dtype=np.float32)
    peaks = np.full(rows, -np.inf)
    mass = np.zeros(rows)
    for first in range(0, num_items, width):
        factors = kernels.columns(items, first // BLOCK_ITEMS, _NATIVE_TILE_BLOCKS, columns)
        logits = tile[:, : factors.shape[1]]
        np.matmul(vectors, factors, out=logits)
        if log_normalisers is None:  # online log-sum-exp per row, in float64 (the slow path)
            peaks = _fold_log_sum_exp(peaks, mass, logits)
        selection.feed(logits, first)
    hit_rows, hit_items, values = selection.take()
    exact = kernels.exact_logits(items, vectors, hit_rows, hit_items)
    picked = kernels.best(hit_rows, hit_items, exact, rows, k)
    return _scores(picked, hit_items, values, exact, log_normalisers, peaks, mass)


def _scores(
    picked: np.ndarray,
    hit_items: np.ndarray,
    values: np.ndarray,
    exact: np.ndarray,
    log_normalisers: np.ndarray | None,
    peaks: np.ndarray,
    mass: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The chosen items ([rows, k] positions into the candidates) and their softmax scores."""
    chosen, chosen_exact = hit_items[picked].astype(np.int64), exact[picked]
    if log_normalisers is not None:
        return chosen, softmax_scores(chosen_exact, log_normalisers[:, None])
    swapped = np.exp(values[picked].astype(np.float64) - peaks[:, None]).sum(axis=1)
    mass = mass - swapped + np.exp(chosen_exact - peaks[:, None]).sum(axis=1)
    return chosen, softmax_scores(chosen_exact, peaks[:, None] + np.log(mass)[:, None])
