"""Scoring kernels. Exact, vectorised, and numerically stable.

Personalize's score for USER_PERSONALIZATION is a softmax over the whole catalog,
``exp(u·i) / Σ_j exp(u·j)``; for PERSONALIZED_RANKING the sum runs over the input list.

How ``user_top_k`` stays exact while reading the item matrix once:
- one float32 matrix-vector product over the catalog (the only pass over the matrix; the model
  keeps the matrix dimension-major, so BLAS streams it at memory bandwidth);
- candidates: every item within the float32 error bound (twice over) of the k-th largest logit,
  so the exact top k are among them. The compiled selection (native.py) finds them in one pass
  with a running bound; without it, numpy takes a threshold from group maxima (no sort of the
  catalog: the k-th largest maximum of disjoint groups is at most the k-th largest logit);
- the candidates are re-scored in float64 and ranked on those exact logits, so the top k and
  their order are the formula's own, not float32's;
- the normaliser: either the user's log-normaliser precomputed at publish time (exact, float64),
  or every item's float32 term with the chosen items' terms swapped for their exact ones.
"""

from __future__ import annotations

import threading

import numpy as np

from personalize_core.serving import native

#: float32 unit roundoff.
_UNIT_ROUNDOFF = 2.0**-24
#: Below this many items a plain partition is as cheap as the group-maximum threshold.
_SMALL_CATALOG = 32_768
#: Items per block of the batch kernel: one block of logits stays in cache.
_BATCH_ITEM_BLOCK = 8_192
#: Items per tile with the compiled selection: [users, tile] logits stay in cache until read.
_NATIVE_ITEM_BLOCK = 2_048

_scratch = threading.local()


def logsumexp(values: np.ndarray) -> float:
    """log Σ exp(values), without overflow (the max is factored out), accumulated in float64."""
    if values.size == 0:
        return float("-inf")
    peak = float(values.max())
    return peak + float(np.log(np.exp(values - peak).sum(dtype=np.float64)))


def max_row_norm(item_factors: np.ndarray) -> float:
    """The largest L2 norm of a row (the float32 error bound needs it). A loaded model carries it
    (``SolutionVersionModel.item_max_norm``, computed while the matrix streams in); this is for
    matrices that are not a model's."""
    largest = 0.0
    for start in range(0, item_factors.shape[0], 65_536):
        block = item_factors[start : start + 65_536]
        largest = max(largest, float(np.einsum("ij,ij->i", block, block).max(initial=0.0)))
    return float(np.sqrt(largest))


def logit_error_bound(dimensions: int, user_norm: float, item_norm: float) -> float:
    """A bound on |float32 u·i - exact u·i| for any summation order: gamma_d Σ|u_j i_j| <= gamma_d |u||i|."""
    gamma = (dimensions + 2) * _UNIT_ROUNDOFF / (1 - (dimensions + 2) * _UNIT_ROUNDOFF)
    return 1.01 * gamma * user_norm * item_norm


def _buffer(name: str, size: int) -> np.ndarray:
    # A per-thread float32 buffer reused across requests: a fresh 4 MB array per request costs
    # page faults (~0.2 ms at 1M items) that a warm function need not pay.
    current: np.ndarray | None = getattr(_scratch, name, None)
    if current is None or current.shape[0] < size:
        current = np.empty(size, dtype=np.float32)
        setattr(_scratch, name, current)
    return current[:size]


def _threshold(logits: np.ndarray, k: int) -> float:
    """A value at most the k-th largest of ``logits`` (1 <= k <= n), found without sorting them."""
    n = logits.shape[0]
    if n <= _SMALL_CATALOG or 8 * k > n // 64:
        return float(np.partition(logits, n - k)[n - k])
    groups = 1 << max(10, int(8 * k - 1).bit_length())  # >= 8k groups: few candidates pass
    rows = n // groups
    # Group j = items j, j + groups, ...: a column maximum, which numpy reduces row by row (SIMD).
    maxima = logits[: rows * groups].reshape(rows, groups).max(axis=0)
    return float(np.partition(maxima, groups - k)[groups - k])


def _candidates(logits: np.ndarray, k: int, slack: float) -> np.ndarray:
    """Every item whose exact logit may be among the k largest (-inf items never are)."""
    threshold = _threshold(logits, k) - slack
    if threshold == -np.inf:
        return np.flatnonzero(logits > -np.inf)
    return np.flatnonzero(logits >= threshold)


def _exact_logits(item_factors: np.ndarray, user_vector: np.ndarray, indices: np.ndarray) -> np.ndarray:
    exact: np.ndarray = item_factors[indices].astype(np.float64) @ np.asarray(user_vector, np.float64)
    return exact


def softmax_scores(exact_logits: np.ndarray, log_normaliser: float | np.ndarray) -> np.ndarray:
    """exp(logit - log Σ exp), kept in [0, 1]: rounding in the normaliser can put a dominant item's
    score a few ulps above 1, which no softmax value is."""
    scores: np.ndarray = np.minimum(np.exp(exact_logits - log_normaliser), 1.0)
    return scores


def user_top_k(
    item_factors: np.ndarray,
    user_vector: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
    *,
    log_normaliser: float | None = None,
    max_norm: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items for a user with their catalog-wide softmax scores.

    ``user_vector`` is taken at its own precision (float64 when context shifted it): the scan runs
    on a float32 copy, and the bound covers that rounding too, so the top k and the scores are the
    formula's for the vector as given. ``allowed`` (bool per item) restricts which items may be
    returned; the softmax still runs over the whole catalog, as Personalize's scores do.
    ``log_normaliser`` is log Σ_j exp(u·j) over the whole catalog, when the solution version carries
    it (then no exp runs over the catalog). ``max_norm``: the largest row norm of ``item_factors``
    (a model carries it; computed here when not given).
    """
    num_items, dims = item_factors.shape
    k = min(k, num_items)
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    user64 = np.asarray(user_vector, dtype=np.float64)
    user32 = user64.astype(np.float32)
    largest = max_row_norm(item_factors) if max_norm is None else max_norm
    # |fl32(u32·i) - u·i| <= gamma_d |u32| |i| + |u32 - u| |i|: the scan's error, whatever u's precision.
    rounding = float(np.linalg.norm(user32.astype(np.float64) - user64)) * largest
    slack = 2 * (logit_error_bound(dims, float(np.linalg.norm(user32)), largest) + rounding)
    logits = _buffer("logits", num_items)
    np.matmul(item_factors, user32, out=logits)
    eligible = logits
    if allowed is not None:
        eligible = _buffer("eligible", num_items)
        eligible.fill(-np.inf)
        np.copyto(eligible, logits, where=allowed)
    kernels = native.kernels() if num_items > _SMALL_CATALOG else None
    if kernels is None:
        candidates = _candidates(eligible, k, slack)
    else:
        selection = kernels.selection(1, k, np.array([slack]))
        selection.feed(eligible.reshape(1, num_items), 0)
        _, candidates, _ = selection.take()
    if kernels is not None and rounding == 0.0:
        exact = kernels.exact_logits(
            item_factors, user32.reshape(1, dims), np.zeros_like(candidates), candidates
        )
    else:
        exact = _exact_logits(item_factors, user64, candidates)
    order = np.lexsort((candidates, -exact))[:k]
    chosen, chosen_exact = candidates[order].astype(np.int64), exact[order]
    if log_normaliser is not None:
        return chosen, softmax_scores(chosen_exact, log_normaliser)
    # Normaliser: every item's exp(logit - peak), with the chosen items' float32 terms swapped for
    # their exact ones (they carry most of the mass, so this is what makes scores exact).
    peak = float(logits.max())
    np.subtract(logits, peak, out=logits)
    np.exp(logits, out=logits)
    mass = (
        logits.sum(dtype=np.float64)
        - logits[chosen].sum(dtype=np.float64)
        + np.exp(chosen_exact - peak).sum()
    )
    return chosen, softmax_scores(chosen_exact, peak + float(np.log(mass)))


def log_normalisers(item_factors: np.ndarray, user_factors: np.ndarray, block: int = 512) -> np.ndarray:
    """log Σ_j exp(u·j) over the whole catalog for every user, in float64 (computed at publish time)."""
    items64 = np.asarray(item_factors, dtype=np.float64)
    out = np.empty(user_factors.shape[0], dtype=np.float64)
    for start in range(0, user_factors.shape[0], block):
        logits = user_factors[start : start + block].astype(np.float64) @ items64.T
        peaks = logits.max(axis=1, keepdims=True)
        np.subtract(logits, peaks, out=logits)
        np.exp(logits, out=logits)
        out[start : start + block] = peaks[:, 0] + np.log(logits.sum(axis=1))
    return out


def rank_items(
    item_factors: np.ndarray, user_vector: np.ndarray, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Order ``indices`` for a user; scores are a softmax over these items only (they sum to 1)."""
    logits = _exact_logits(item_factors, user_vector, indices)
    scores = softmax_scores(logits, logsumexp(logits))
    order = np.lexsort((np.arange(len(indices)), -logits))
    return indices[order], scores[order]


def cosine_error_bound(dimensions: int) -> float:
    """A bound on |float32 cosine - exact cosine| for the scan below (in cosine units, so it holds for
    any norms): the dot product's gamma_d |q||i|, divided by |q||i|, plus the float32 norms' and the
    division's roundings, with room to spare."""
    gamma = (dimensions + 2) * _UNIT_ROUNDOFF / (1 - (dimensions + 2) * _UNIT_ROUNDOFF)
    return 2.0 * (3 * gamma + 4 * _UNIT_ROUNDOFF)


def related_top_k(
    item_factors: np.ndarray, item_norms: np.ndarray, item: int, k: int, allowed: np.ndarray | None = None
) -> np.ndarray:
    """The k items most similar to ``item`` by cosine similarity, the item itself excluded.

    Exact like ``user_top_k``: a float32 scan, every item within twice its error bound of the k-th
    largest similarity kept, and those re-scored in float64 and ranked (ties in catalog order). An
    item with no length (a zero vector) has similarity 0 to everything.
    """
    num_items, dims = item_factors.shape
    query = item_factors[item]
    similarity = item_factors @ query
    norms = item_norms * item_norms[item]
    np.divide(similarity, norms, out=similarity, where=norms > 0)
    similarity[norms == 0] = 0.0
    if allowed is not None:
        similarity[~allowed] = -np.inf
    similarity[item] = -np.inf
    k = min(k, int(np.count_nonzero(similarity > -np.inf)))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    kth = float(np.partition(similarity, num_items - k)[num_items - k])
    candidates = np.flatnonzero(similarity >= kth - 2 * cosine_error_bound(dims))
    rows = item_factors[candidates].astype(np.float64)
    query64 = query.astype(np.float64)
    lengths = np.sqrt(np.einsum("ij,ij->i", rows, rows)) * float(np.sqrt(query64 @ query64))
    exact = np.zeros(len(candidates))
    np.divide(rows @ query64, lengths, out=exact, where=lengths > 0)
    return candidates[np.lexsort((candidates, -exact))[:k]].astype(np.int64)


def popular_top_k(popular_order: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """The k most popular items (``popular_order`` is precomputed at load)."""
    candidates: np.ndarray = popular_order if allowed is None else popular_order[allowed[popular_order]]
    return candidates[:k]


def batch_user_top_k(
    item_factors: np.ndarray,
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
    num_items = item_factors.shape[0]
    k = min(k, num_items)
    users = user_vectors.shape[0]
    indices = np.empty((users, k), dtype=np.int64)
    scores = np.empty((users, k), dtype=np.float64)
    if k == 0:
        return indices, scores
    largest = max_row_norm(item_factors) if max_norm is None else max_norm

    def score(start: int) -> None:
        stop = min(users, start + block)
        lognorm = None if log_normalisers is None else np.asarray(log_normalisers[start:stop], np.float64)
        indices[start:stop], scores[start:stop] = _batch_block(
            item_factors, np.asarray(user_vectors[start:stop], dtype=np.float32), k, lognorm, largest
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
    item_factors: np.ndarray,
    vectors: np.ndarray,
    k: int,
    log_normalisers: np.ndarray | None,
    max_norm: float,
) -> tuple[np.ndarray, np.ndarray]:
    kernels = native.kernels()
    if kernels is not None:
        return _batch_block_native(kernels, item_factors, vectors, k, log_normalisers, max_norm)
    num_items, dims = item_factors.shape
    rows = vectors.shape[0]
    item_major = item_factors.T  # [d, items]: C-contiguous when the model keeps it dimension-major
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
        logits = vectors @ item_major[:, first : first + item_block]  # [rows, block] float32
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
        "md,md->m", item_factors[hit_items].astype(np.float64), vectors[hit_rows].astype(np.float64)
    )
    # Every row has at least k candidates (no masks here), grouped by row.
    order = np.lexsort((hit_items, -exact, hit_rows))
    starts = np.concatenate(([0], np.cumsum(np.bincount(hit_rows, minlength=rows))[:-1]))
    picked = order[starts[:, None] + np.arange(k)]
    return _scores(picked, hit_items, values, exact, log_normalisers, peaks, mass)


def _batch_block_native(
    kernels: native.Kernels,
    item_factors: np.ndarray,
    vectors: np.ndarray,
    k: int,
    log_normalisers: np.ndarray | None,
    max_norm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``_batch_block`` with the compiled selection: each tile of logits is read once, while in
    cache, against every user's running bound; candidates are re-scored in float64 in C."""
    num_items, dims = item_factors.shape
    rows = vectors.shape[0]
    item_major = item_factors.T
    norms = np.linalg.norm(vectors, axis=1).astype(np.float64)
    selection = kernels.selection(rows, k, 2 * logit_error_bound(dims, 1.0, max_norm) * norms)
    tile = np.empty((rows, min(num_items, _NATIVE_ITEM_BLOCK)), dtype=np.float32)
    peaks = np.full(rows, -np.inf)
    mass = np.zeros(rows)
    for first in range(0, num_items, tile.shape[1]):
        logits = tile[:, : min(tile.shape[1], num_items - first)]
        np.matmul(vectors, item_major[:, first : first + logits.shape[1]], out=logits)
        if log_normalisers is None:  # online log-sum-exp per row, in float64 (the slow path)
            peaks = _fold_log_sum_exp(peaks, mass, logits)
        selection.feed(logits, first)
    hit_rows, hit_items, values = selection.take()
    exact = kernels.exact_logits(item_factors, vectors, hit_rows, hit_items)
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
