"""RELATED_ITEMS by item-item co-occurrence: the items most often interacted with by the same users.

The similarity of item j to the query item q is the cosine of their user sets,
``|users(q) ∩ users(j)| / sqrt(|users(q)| |users(j)|)``, computed exactly from the version's
co-occurrence data (modelstore/co_occurrence.py) in one pass over the query's users' items.
Equal similarities (integer counts make them common) go to the more popular item, then to
catalog order; items that share no user with the query follow in popularity order, so the answer
has ``k`` items whenever the filter lets ``k`` through.
"""

from __future__ import annotations

import numpy as np

from personalize_core.modelstore.co_occurrence import CoOccurrence


def co_occurring_items(
    co: CoOccurrence,
    popular_order: np.ndarray,
    item: int,
    k: int,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """The k items most related to ``item``, the item itself excluded (``allowed``: bool per item)."""
    num_items = popular_order.size
    users = co.item_users[co.item_indptr[item] : co.item_indptr[item + 1]]
    starts, ends = co.user_indptr[users], co.user_indptr[users + 1]
    lengths = ends - starts
    # Every item of every user of the query (a CSR gather without a Python loop).
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
    shared = np.bincount(co.user_items[offsets], minlength=num_items)
    shared[item] = 0
    if allowed is not None:
        shared[~allowed] = 0
    related = np.flatnonzero(shared)
    counts = co.item_counts
    similarity = shared[related] / np.sqrt(float(counts[item]) * counts[related])
    rank_of = np.empty(num_items, dtype=np.int64)
    rank_of[popular_order] = np.arange(num_items)  # popularity rank: ties in catalog order already
    ranked = related[np.lexsort((rank_of[related], -similarity))][:k]
    if ranked.size == k:
        return ranked.astype(np.int64)
    # Fewer co-occurring items than asked for: the most popular of the rest, in order.
    rest = np.ones(num_items, dtype=bool) if allowed is None else allowed.copy()
    rest[related] = False
    rest[item] = False
    fill = popular_order[rest[popular_order]][: k - ranked.size]
    return np.concatenate((ranked, fill)).astype(np.int64)
