"""Scoring kernels. Exact, vectorised, and numerically stable.

Personalize's score for USER_PERSONALIZATION is a softmax over the whole catalog,
``exp(u·i) / Σ_j exp(u·j)``; for PERSONALIZED_RANKING the sum runs over the input list.
Candidates are chosen on float32 logits (one BLAS pass over the item matrix); the scores of
the chosen items are then recomputed in float64, so they are exact to ~1e-7 relative.
"""

from __future__ import annotations

import numpy as np


def logsumexp(values: np.ndarray) -> float:
    """log Σ exp(values), without overflow (the max is factored out), accumulated in float64."""
    if values.size == 0:
        return float("-inf")
    peak = float(values.max())
    return peak + float(np.log(np.exp(values - peak).sum(dtype=np.float64)))


def top_k_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first; ties in index order; -inf never chosen."""
    n = values.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    candidates = np.argpartition(values, n - k)[n - k :] if k < n else np.arange(n)
    # lexsort's last key is the primary one: descending value, then ascending index.
    order = candidates[np.lexsort((candidates, -values[candidates]))]
    return order[values[order] > -np.inf].astype(np.int64)


def user_top_k(
    item_factors: np.ndarray, user_vector: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items for a user with their catalog-wide softmax scores.

    ``allowed`` (bool per item) restricts which items may be returned; the softmax still runs over
    the whole catalog, as Personalize's scores do.
    """
    logits = item_factors @ user_vector
    peak = float(logits.max())
    candidates = logits if allowed is None else np.where(allowed, logits, -np.inf)
    chosen = top_k_indices(candidates, k)
    exact = item_factors[chosen].astype(np.float64) @ user_vector.astype(np.float64)
    # Normaliser: every item's exp(logit - peak), with the chosen items' float32 terms swapped for
    # their exact ones (they carry most of the mass, so this is what makes scores exact).
    np.subtract(logits, peak, out=logits)
    np.exp(logits, out=logits)
    mass = logits.sum(dtype=np.float64) - logits[chosen].sum(dtype=np.float64) + np.exp(exact - peak).sum()
    return chosen, np.exp(exact - peak - np.log(mass))


def rank_items(
    item_factors: np.ndarray, user_vector: np.ndarray, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Order ``indices`` for a user; scores are a softmax over these items only (they sum to 1)."""
    logits = item_factors[indices].astype(np.float64) @ user_vector.astype(np.float64)
    scores = np.exp(logits - logsumexp(logits))
    order = np.lexsort((np.arange(len(indices)), -logits))
    return indices[order], scores[order]


def related_top_k(
    item_factors: np.ndarray, item_norms: np.ndarray, item: int, k: int, allowed: np.ndarray | None = None
) -> np.ndarray:
    """The k items most similar to ``item`` by cosine similarity, the item itself excluded."""
    query = item_factors[item]
    similarity = item_factors @ query
    norms = item_norms * item_norms[item]
    np.divide(similarity, norms, out=similarity, where=norms > 0)
    similarity[norms == 0] = 0.0
    if allowed is not None:
        similarity[~allowed] = -np.inf
    similarity[item] = -np.inf
    return top_k_indices(similarity, k)


def popular_top_k(popular_order: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """The k most popular items (``popular_order`` is precomputed at load)."""
    candidates: np.ndarray = popular_order if allowed is None else popular_order[allowed[popular_order]]
    return candidates[:k]


def batch_user_top_k(
    item_factors: np.ndarray, user_vectors: np.ndarray, k: int, block: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """``user_top_k`` for many users at once: blocked matrix products instead of a loop of matvecs.

    Returns ``(indices, scores)``, both ``[users, min(k, items)]``; row r equals
    ``user_top_k(item_factors, user_vectors[r], k)`` (same items, same order, same scores).
    """
    num_items = item_factors.shape[0]
    k = min(k, num_items)
    users = user_vectors.shape[0]
    indices = np.empty((users, k), dtype=np.int64)
    scores = np.empty((users, k), dtype=np.float64)
    if k == 0:
        return indices, scores
    for start in range(0, users, block):
        vectors = user_vectors[start : start + block]
        logits = vectors @ item_factors.T  # [b, items] float32
        peaks = logits.max(axis=1)
        candidates = np.argpartition(logits, num_items - k, axis=1)[:, num_items - k :]
        values = np.take_along_axis(logits, candidates, axis=1)
        # Per row: descending value, then ascending index (as top_k_indices orders them).
        chosen = np.take_along_axis(candidates, np.lexsort((candidates, -values), axis=1), axis=1)
        exact = np.einsum(
            "bkd,bd->bk", item_factors[chosen].astype(np.float64), vectors.astype(np.float64), optimize=True
        )
        logits -= peaks[:, None]
        np.exp(logits, out=logits)
        mass = (
            logits.sum(axis=1, dtype=np.float64)
            - np.take_along_axis(logits, chosen, axis=1).sum(axis=1, dtype=np.float64)
            + np.exp(exact - peaks[:, None]).sum(axis=1)
        )
        indices[start : start + len(vectors)] = chosen
        scores[start : start + len(vectors)] = np.exp(exact - peaks[:, None] - np.log(mass)[:, None])
    return indices, scores
