"""A user's vector from their events: the ALS fold-in of Hu, Koren & Volinsky (ICDM 2008, eq. 4)
against a version's fixed item factors Y:

    x_u = (YᵀY + Yᵀ(Cᵘ - I)Y + λI)⁻¹ YᵀCᵘp(u)

with p_ui = 1 for the items the user's events name and c_ui = alpha * r_ui, r_ui the sum of those
events' weights (implicit's convention, which trained the version: its ``recalculate_user`` is the
same formula, and the tests check the two agree). YᵀY is computed once per version
(``SolutionVersionModel.item_gram``); a fold-in then costs O(f² n_u + f³).

A user the version knows starts from a prior: their stored vector x₀ held with the precision of
an ALS user with no interactions, A₀ = YᵀY + λI. Their events since the version was trained enter
exactly as above:

    x_u = (A₀ + Yᵀ(Cᵘ - I)Y)⁻¹ (A₀ x₀ + YᵀCᵘp(u))

With no events this is x₀; with x₀ = 0 it is eq. 4. A₀ leaves out the user's training-time
confidences (the version does not keep them), so the prior weighs less than in a full retraining
and new events move the vector somewhat more than retraining would: they show at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from personalize_core.events.items import RecentEvent
from personalize_core.modelstore.item_matrix import BLOCK_ITEMS, ItemMatrix
from personalize_core.modelstore.layout import FoldIn

#: Items per block when YᵀY is accumulated (float32 products, summed in float64).
GRAM_BLOCK = 1 << 16


def item_gram(item_factors: ItemMatrix | np.ndarray) -> np.ndarray:
    """YᵀY, float64 [d, d], over blocks of the catalog (no float64 copy of the matrix)."""
    num_items, dims = item_factors.shape
    gram = np.zeros((dims, dims), dtype=np.float64)
    for start in range(0, num_items, GRAM_BLOCK):
        if isinstance(item_factors, ItemMatrix):  # the served layout: exact float32 tiles, [d, block]
            tile = item_factors.columns(start // BLOCK_ITEMS, GRAM_BLOCK // BLOCK_ITEMS)
        else:
            tile = item_factors[start : start + GRAM_BLOCK].T
        gram += (tile @ tile.T).astype(np.float64)
    return gram


def confidences(
    events: Iterable[RecentEvent],
    item_index: Mapping[str, int],
    rules: FoldIn,
    since: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, c = alpha * summed weights) of the events' items the version knows; events
    received before ``since`` (already in a known user's training) are left out."""
    summed: dict[int, float] = {}
    for event in events:
        if event.item_id is None or (since is not None and event.received_at <= since):
            continue
        row = item_index.get(event.item_id)
        if row is None:
            continue
        weight = rules.weight(event.event_type, event.value)
        if weight > 0:
            summed[row] = summed.get(row, 0.0) + weight
    if not summed:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    rows = np.fromiter(summed, dtype=np.int64, count=len(summed))
    weights = np.fromiter(summed.values(), dtype=np.float64, count=len(summed))
    return rows, rules.alpha * weights


def fold_in(
    item_factors: ItemMatrix | np.ndarray,
    gram: np.ndarray,
    rows: np.ndarray,
    confidence: np.ndarray,
    regularization: float,
    prior: np.ndarray | None = None,
) -> np.ndarray:
    """The user's float64 vector from (rows, confidence) (see the module's formula)."""
    dims = gram.shape[0]
    base = gram + regularization * np.eye(dims)
    rows = np.asarray(rows, dtype=np.int64)
    exact = item_factors.rows(rows) if isinstance(item_factors, ItemMatrix) else item_factors[rows]
    y = exact.astype(np.float64)  # [n, d]
    system = base + (y.T * (confidence - 1.0)) @ y
    target = y.T @ confidence
    if prior is not None:
        target = target + base @ np.asarray(prior, dtype=np.float64)
    vector: np.ndarray = np.linalg.solve(system, target)
    return vector
