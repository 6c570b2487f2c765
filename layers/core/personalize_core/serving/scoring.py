"""Scoring kernels. Exact, vectorised, and numerically stable.

Personalize's score for USER_PERSONALIZATION is a softmax over the whole catalog,
``exp(u·i) / Σ_j exp(u·j)``; for PERSONALIZED_RANKING the sum runs over the input list.

The item matrix is served as two bfloat16-half planes (modelstore/item_matrix.py: the high halves
are a bfloat16 copy of the matrix, both halves together the float32 matrix in its own memory).
How ``user_top_k`` stays exact while reading half the matrix's bytes:
- one scan of the high plane (compiled: native.py; else numpy), which reads 2 bytes per value;
- candidates: every item within twice a rigorous bound on that scan's error (the bfloat16
  truncation, < 2^-7 of each value, and float32's rounding) of the k-th largest scanned logit,
  so the exact top k are among them. The compiled scan hands each block of logits to a selection
  with a running bound while the block is in cache; numpy takes a threshold from group maxima;
- the candidates are re-scored in float64 from both planes and ranked on those exact logits, so
  the top k and their order are the formula's own, ties in catalog order;
- the normaliser is the user's log-normaliser precomputed at publish time (exact, float64). A
  vector without one (context moved it, or an older version) is scanned from both planes instead
  (the float32 matrix's bytes, as before): every item's float32 term, with the chosen items'
  terms swapped for their exact ones.
A float32 [items, d] matrix is accepted wherever an ``ItemMatrix`` is (encoded on the spot: for
tests and tools).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from personalize_core.modelstore.item_matrix import ItemMatrix
from personalize_core.serving import native

#: float32 unit roundoff.
_UNIT_ROUNDOFF = 2.0**-24
#: A high half is its float32 truncated toward zero: |x - hi(x)| < 2^-7 |hi(x)| for a normal x ...
_TRUNCATION = 2.0**-7
#: ... and < 2^-133 (bfloat16's subnormal spacing) below float32's normal range.
_TRUNCATION_FLOOR = 2.0**-133
#: Below this many items a plain partition is as cheap as the group-maximum threshold.
_SMALL_CATALOG = 32_768

_scratch = threading.local()

Items = ItemMatrix | np.ndarray


def as_item_matrix(items: Items) -> ItemMatrix:
    """The served layout of ``items`` (a float32 [items, d] matrix is encoded: tests, tools)."""
    return items if isinstance(items, ItemMatrix) else ItemMatrix.from_matrix(np.asarray(items, np.float32))


def logsumexp(values: np.ndarray) -> float:
    """log Σ exp(values), without overflow (the max is factored out), accumulated in float64."""
    if values.size == 0:
        return float("-inf")
    peak = float(values.max())
    return peak + float(np.log(np.exp(values - peak).sum(dtype=np.float64)))


def _gamma(dimensions: int) -> float:
    return (dimensions + 2) * _UNIT_ROUNDOFF / (1 - (dimensions + 2) * _UNIT_ROUNDOFF)


def squared_norms(items: ItemMatrix, exact: bool) -> np.ndarray:
    """float32 squared row norms (of the high halves when not ``exact``), non-finite for a row
    holding a NaN or an infinity: the load's check and its norms in one pass."""
    kernels = native.kernels()
    return items.squared_norms(exact) if kernels is None else kernels.squared_norms(items, exact)


def max_norm_bound(largest_squared: float, dims: int, of_high_halves: bool) -> float:
    """An upper bound on the largest row norm from the largest float32 squared norm (of the values,
    or of their high halves): the float32 sum's rounding and, for high halves, the truncation."""
    if largest_squared <= 0.0:
        return math.sqrt(dims) * _TRUNCATION_FLOOR if of_high_halves else 0.0
    norm = math.sqrt(largest_squared / (1 - _gamma(dims))) * (1 + 1e-12)
    if not of_high_halves:
        return norm
    return norm * (1 + _TRUNCATION) + math.sqrt(dims) * _TRUNCATION_FLOOR


def max_row_norm(items: Items) -> float:
    """An upper bound on the largest L2 norm of a row (the error bounds need it). A loaded model
    carries it (``SolutionVersionModel.item_max_norm``, computed while it loads); this is for
    matrices that are not a model's."""
    matrix = as_item_matrix(items)
    largest = float(squared_norms(matrix, exact=False).max(initial=0.0))
    return max_norm_bound(largest, matrix.dims, of_high_halves=True)


def logit_error_bound(dimensions: int, user_norm: float, item_norm: float) -> float:
    """A bound on |float32 u·i - exact u·i| for any summation order: gamma_d Σ|u_j i_j| <= gamma_d |u||i|."""
    return 1.01 * _gamma(dimensions) * user_norm * item_norm


def high_scan_error_bound(dimensions: int, user_norm: float, item_norm: float) -> float:
    """A bound on |float32 u·hi(i) - exact u·i| (the scan of the high halves) for |i| <= item_norm:
    float32's rounding, gamma_d |u||hi(i)|, plus the truncation, |u||i - hi(i)|, where
    |i - hi(i)| < 2^-7 |hi(i)| + sqrt(d) 2^-133 and |hi(i)| <= |i|."""
    truncation = _TRUNCATION * item_norm + math.sqrt(dimensions) * _TRUNCATION_FLOOR
    return 1.01 * (_gamma(dimensions) * item_norm + truncation) * user_norm


def buffer(name: str, size: int) -> np.ndarray:
    """A per-thread float32 buffer reused across requests: a fresh 4 MB array per request costs
    page faults (~0.2 ms at 1M items) that a warm function need not pay."""
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


def item_rows(items: ItemMatrix, indices: np.ndarray) -> np.ndarray:
    """The exact float32 rows of ``indices`` ([m, d])."""
    kernels = native.kernels()
    return items.rows(indices) if kernels is None else kernels.rows(items, indices)


def _exact_logits(items: ItemMatrix, user_vector: np.ndarray, indices: np.ndarray) -> np.ndarray:
    exact: np.ndarray = item_rows(items, indices).astype(np.float64) @ np.asarray(user_vector, np.float64)
    return exact


def scan(items: ItemMatrix, user32: np.ndarray, exact: bool, out: np.ndarray) -> np.ndarray:
    """u · item for every item in float32, from both planes (``exact``) or the high ones alone."""
    kernels = native.kernels()
    if kernels is None:
        return items.scan(user32, exact, out)
    kernels.scan(items, user32, exact, out=out)
    return out


def softmax_scores(exact_logits: np.ndarray, log_normaliser: float | np.ndarray) -> np.ndarray:
    """exp(logit - log Σ exp), kept in [0, 1]: rounding in the normaliser can put a dominant item's
    score a few ulps above 1, which no softmax value is."""
    scores: np.ndarray = np.minimum(np.exp(exact_logits - log_normaliser), 1.0)
    return scores


def user_top_k(
    item_factors: Items,
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
    it (then only the high halves are scanned, and no exp runs over the catalog). ``max_norm``: an
    upper bound on the largest row norm (the model's ``item_max_norm``; computed when not given).
    """
    items = as_item_matrix(item_factors)
    num_items, dims = items.shape
    k = min(k, num_items)
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    user64 = np.asarray(user_vector, dtype=np.float64)
    user32 = np.asarray(user_vector, dtype=np.float32)
    largest = max_row_norm(items) if max_norm is None else max_norm
    widened = user32.astype(np.float64)
    user_norm = math.sqrt(float(widened @ widened))
    # |scan(u32, i) - u·i| <= (the scan's error for u32) + |u32 - u| |i|: whatever u's precision
    # (none for a stored row, which is float32 already).
    rounding = 0.0
    if np.asarray(user_vector).dtype != np.float32:
        difference = widened - user64
        rounding = math.sqrt(float(difference @ difference)) * largest
    exact_scan = log_normaliser is None  # the normaliser needs every item's float32 logit
    bound = logit_error_bound if exact_scan else high_scan_error_bound
    slack = 2 * (bound(dims, user_norm, largest) + rounding)
    kernels = native.kernels()
    logits = buffer("logits", num_items) if exact_scan or kernels is None else None
    if kernels is not None:  # the scan, the candidates, their re-rank: one call
        chosen, chosen_exact = kernels.top_k(items, user64, k, slack, exact_scan, allowed, out=logits)
    else:
        assert logits is not None
        items.scan(user32, exact_scan, logits)
        eligible = logits
        if allowed is not None:
            eligible = buffer("eligible", num_items)
            eligible.fill(-np.inf)
            np.copyto(eligible, logits, where=allowed)
        candidates = _candidates(eligible, k, slack)
        exact = _exact_logits(items, user64, candidates)
        order = np.lexsort((candidates, -exact))[:k]
        chosen, chosen_exact = candidates[order].astype(np.int64), exact[order]
    if log_normaliser is not None:
        return chosen, softmax_scores(chosen_exact, log_normaliser)
    # Normaliser: every item's exp(logit - peak), with the chosen items' float32 terms swapped for
    # their exact ones (they carry most of the mass, so this is what makes scores exact).
    assert logits is not None
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
    """log Σ_j exp(u·j) over the whole catalog for every user, in float64 (computed at publish time
    from the float32 [items, d] matrix)."""
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
    item_factors: Items, user_vector: np.ndarray, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Order ``indices`` for a user; scores are a softmax over these items only (they sum to 1)."""
    logits = _exact_logits(as_item_matrix(item_factors), user_vector, indices)
    scores = softmax_scores(logits, logsumexp(logits))
    order = np.lexsort((np.arange(len(indices)), -logits))
    return indices[order], scores[order]


def cosine_error_bound(dimensions: int) -> float:
    """A bound on |float32 cosine - exact cosine| for the scan below (in cosine units, so it holds for
    any norms): the dot product's gamma_d |q||i|, divided by |q||i|, plus the float32 norms' and the
    division's roundings, with room to spare."""
    return 2.0 * (3 * _gamma(dimensions) + 4 * _UNIT_ROUNDOFF)


def related_top_k(
    item_factors: Items, item_norms: np.ndarray, item: int, k: int, allowed: np.ndarray | None = None
) -> np.ndarray:
    """The k items most similar to ``item`` by cosine similarity, the item itself excluded.

    Exact like ``user_top_k``: a float32 scan of both planes, every item within twice its error
    bound of the k-th largest similarity kept, and those re-scored in float64 and ranked (ties in
    catalog order). An item with no length (a zero vector) has similarity 0 to everything.
    """
    items = as_item_matrix(item_factors)
    num_items, dims = items.shape
    query = item_rows(items, np.array([item]))[0]
    similarity = scan(items, query, True, np.empty(num_items, dtype=np.float32))
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
    rows = item_rows(items, candidates).astype(np.float64)
    query64 = query.astype(np.float64)
    lengths = np.sqrt(np.einsum("ij,ij->i", rows, rows)) * float(np.sqrt(query64 @ query64))
    exact = np.zeros(len(candidates))
    np.divide(rows @ query64, lengths, out=exact, where=lengths > 0)
    return candidates[np.lexsort((candidates, -exact))[:k]].astype(np.int64)


def popular_top_k(popular_order: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """The k most popular items (``popular_order`` is precomputed at load)."""
    candidates: np.ndarray = popular_order if allowed is None else popular_order[allowed[popular_order]]
    return candidates[:k]
