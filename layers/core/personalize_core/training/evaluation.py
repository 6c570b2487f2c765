"""Offline metrics, computed as Personalize's guide describes its evaluation.

The training set is 90% of the users with all their interactions; the testing set is the other
10% of users (chosen by a hash of the user id, so the split is the same every run). After
training, each test user's oldest 90% of interactions are the input (their vector is folded in
from them) and the newest 10% are what the recommendations are compared with:

    precision_at_K                               hits in the top K / K
    normalized_discounted_cumulative_gain_at_K   sum 1/log2(1 + rank) over hits / its best possible value
    mean_reciprocal_rank_at_25                   1 / rank of the first hit in the top 25 (0 if none)
    coverage                                     distinct items recommended to the test users / catalog

averaged over the test users, for K = 5, 10, 25. Items of a user's input are not recommended to
that user (they are known already), and held-out items that are also in the input are not counted.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from personalize_core.serving import native

TOP = 25
CUTS = (5, 10, 25)
TEST_SHARE = 10  # one user in ten
METRIC_NAMES = (
    "coverage",
    "mean_reciprocal_rank_at_25",
    "normalized_discounted_cumulative_gain_at_5",
    "normalized_discounted_cumulative_gain_at_10",
    "normalized_discounted_cumulative_gain_at_25",
    "precision_at_5",
    "precision_at_10",
    "precision_at_25",
)


def is_test_user(user_id: str) -> bool:
    return zlib.crc32(user_id.encode("utf-8")) % TEST_SHARE == 0


class Split(NamedTuple):
    """Row masks over the interaction rows: train (training users), input and holdout (test users)."""

    train: np.ndarray
    test_input: np.ndarray
    holdout: np.ndarray
    test_users: np.ndarray  # user codes of the test users that have both an input and a holdout


def split(user_ids: list[str], users: np.ndarray, timestamps: np.ndarray) -> Split:
    """Personalize's split (module docstring); ``users`` and ``timestamps`` are per interaction row."""
    test_user = np.fromiter((is_test_user(u) for u in user_ids), dtype=bool, count=len(user_ids))
    rows = users.size
    is_test = test_user[users] if rows else np.zeros(0, dtype=bool)
    holdout = np.zeros(rows, dtype=bool)
    test_rows = np.flatnonzero(is_test)
    # Each test user's rows, oldest first (ties in row order), then the newest tenth of them held out.
    order = test_rows[np.lexsort((test_rows, timestamps[test_rows], users[test_rows]))]
    if order.size:
        owner = users[order]
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        counts = np.diff(np.r_[starts, order.size])
        held = np.where(counts >= 2, np.maximum(1, counts // TEST_SHARE), 0)
        position = np.arange(order.size) - np.repeat(starts, counts)
        holdout[order[position >= np.repeat(counts - held, counts)]] = True
        evaluated = owner[starts][held > 0]
    else:
        evaluated = np.zeros(0, dtype=users.dtype)
    return Split(~is_test, is_test & ~holdout, holdout, evaluated.astype(np.int64))


#: Top items for a block of test users: (users, known) -> int [len(users), TOP] (-1: fewer found).
Recommender = Callable[[np.ndarray], np.ndarray]


_EXCLUDED = np.finfo(np.float32).min


def top_items(
    scores: np.ndarray, exclude_rows: np.ndarray, exclude_items: np.ndarray, k: int = TOP
) -> np.ndarray:
    """The k best items per row of ``scores`` (excluded (row, item) pairs never), best first, equal
    scores by item; -1 where a row has fewer. The holdout's largest cost (test users x catalog)."""
    logits = np.array(scores, dtype=np.float32)  # a copy: the excluded pairs are overwritten
    k = min(k, logits.shape[1])
    kernels = native.kernels()
    if kernels is None or k == 0:
        logits[exclude_rows, exclude_items] = -np.inf
        return top_items_numpy(logits, k)
    # The lowest finite float32, not -inf: the selection keeps finite values only, and every row
    # must have k candidates.
    logits[exclude_rows, exclude_items] = _EXCLUDED
    rows = logits.shape[0]
    # The serving kernels' selection (slack 0: the k-th value's ties are all candidates), ~10x
    # numpy's argpartition over a 50k-item catalog.
    selection = kernels.selection(rows, k, np.zeros(rows))
    selection.feed(logits, 0)
    hit_rows, hit_items, values = selection.take()
    picked = kernels.best(hit_rows, hit_items, values.astype(np.float64), rows, k)
    ranked: np.ndarray = hit_items[picked]
    ranked[values[picked] == _EXCLUDED] = -1
    return ranked


def top_items_numpy(logits: np.ndarray, k: int) -> np.ndarray:
    """``top_items`` without the compiled kernels, on float32 logits with -inf for the excluded."""
    negated = np.negative(logits)
    part = np.argpartition(negated, k - 1, axis=1)[:, :k]
    # Best first, equal scores by item.
    order = np.lexsort((part, np.take_along_axis(negated, part, axis=1)), axis=1)
    ranked = np.take_along_axis(part, order, axis=1)
    ranked[np.take_along_axis(negated, ranked, axis=1) == np.inf] = -1
    return ranked


def metrics(recommended: list[np.ndarray], relevant: list[set[int]], catalog: int) -> dict[str, float]:
    """Personalize's metric names over per-user top lists and held-out item sets."""
    if not recommended:
        return {}
    totals = dict.fromkeys(METRIC_NAMES, 0.0)
    discounts = 1.0 / np.log2(np.arange(2, TOP + 2))
    seen: set[int] = set()
    for found, wanted in zip(recommended, relevant, strict=True):
        items = found[found >= 0]
        seen.update(items.tolist())
        hits = np.fromiter((i in wanted for i in items.tolist()), dtype=bool, count=items.size)
        first = np.flatnonzero(hits)
        totals["mean_reciprocal_rank_at_25"] += 1.0 / (int(first[0]) + 1) if first.size else 0.0
        for k in CUTS:
            top = hits[:k]
            totals[f"precision_at_{k}"] += int(top.sum()) / k
            ideal = discounts[: min(len(wanted), k)].sum()
            totals[f"normalized_discounted_cumulative_gain_at_{k}"] += (
                float(discounts[: top.size][top].sum() / ideal) if ideal else 0.0
            )
    count = len(recommended)
    out = {name: round(float(value) / count, 6) for name, value in totals.items() if name != "coverage"}
    out["coverage"] = round(len(seen) / catalog, 6) if catalog else 0.0
    return dict(sorted(out.items()))


def evaluate(
    recommend: Callable[[np.ndarray], np.ndarray],
    test_users: np.ndarray,
    input_pairs: tuple[np.ndarray, np.ndarray],
    holdout_pairs: tuple[np.ndarray, np.ndarray],
    catalog: int,
    block: int = 1024,
) -> dict[str, float]:
    """Metrics of ``recommend(users) -> [len(users), TOP]`` item indices (it excludes each user's
    input itself); ``*_pairs`` are (user codes, item indices) of the input and holdout rows."""
    known: dict[int, set[int]] = {}
    for user, item in zip(*input_pairs, strict=True):
        known.setdefault(int(user), set()).add(int(item))
    wanted: dict[int, set[int]] = {}
    for user, item in zip(*holdout_pairs, strict=True):
        if int(item) not in known.get(int(user), ()):
            wanted.setdefault(int(user), set()).add(int(item))
    users = np.array([u for u in test_users.tolist() if u in wanted], dtype=np.int64)
    recommended: list[np.ndarray] = []
    for start in range(0, users.size, block):
        recommended.extend(recommend(users[start : start + block]))
    return metrics(recommended, [wanted[u] for u in users.tolist()], catalog)
