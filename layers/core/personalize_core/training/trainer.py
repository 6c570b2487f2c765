"""Training a solution version: interactions in, the files serving reads out (through the one writer).

    weigh      the solution's event types, weights and thresholds (solutionConfig) -> one weight a row
    split      Personalize's holdout (evaluation.py): 90% of users train, 10% are tested
    fit        implicit's ALS on the training users (USER_PERSONALIZATION, PERSONALIZED_RANKING,
               RELATED_ITEMS); popularity counts (POPULAR_ITEMS). RELATED_ITEMS is also measured by
               item-item co-occurrence; the better on the holdout serves
    evaluate   the test users' vectors folded in from their oldest 90%, ranked against their newest 10%
    finish     the test users folded in again from all their interactions; items, users and recent
               interactions for filters and metadata; ``prepare_version`` writes it all

The catalog is the items with at least one weighed interaction (an item nobody touched has no
learnt factors to rank it by).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from personalize_core.datasets.data import Interactions
from personalize_core.modelstore import recent
from personalize_core.modelstore.co_occurrence import encode_co_occurrence
from personalize_core.modelstore.layout import FoldIn, Recipe
from personalize_core.modelstore.writer import PreparedVersion, prepare_extras, prepare_version
from personalize_core.training.config import TrainingConfig
from personalize_core.training.evaluation import TOP, evaluate, split, top_items

#: The metric that decides how a RELATED_ITEMS version relates items.
RELATED_BY = "normalized_discounted_cumulative_gain_at_10"


class TrainingFailed(Exception):
    """The data cannot train this solution; the message is the version's failureReason."""


class TrainingStopped(Exception):
    """StopSolutionVersionCreation was called while the version trained."""


class TrainingInput(NamedTuple):
    interactions: Interactions
    #: Items dataset: (ids, column -> values), or None without one (the same for users).
    items: tuple[list[str], dict[str, list[str]]] | None = None
    users: tuple[list[str], dict[str, list[str]]] | None = None


class Trained(NamedTuple):
    prepared: PreparedVersion
    metrics: dict[str, float]
    #: The popularity baseline's metrics on the same holdout (Personalize's guide recommends one).
    baseline: dict[str, float]
    interactions: int
    seconds: dict[str, float]
    #: RELATED_ITEMS: each way of relating items with its holdout metrics (the better one serves).
    compared: Mapping[str, Mapping[str, float]] = MappingProxyType({})


def weigh(interactions: Interactions, config: TrainingConfig) -> np.ndarray:
    """One weight per interaction row (0: left out) from the solution's event configuration."""
    types = [t.lower() for t in interactions.event_types]
    codes, values = interactions.event_codes, interactions.event_values
    weights = np.ones(interactions.rows, dtype=np.float32)
    if config.event_type is not None:
        wanted = [i for i, t in enumerate(types) if t == config.event_type.lower()]
        weights[~np.isin(codes, wanted)] = 0
    if config.events:
        by_type = np.zeros(len(types) + 1, dtype=np.float32)  # the last slot: rows without a type
        thresholds = np.full(len(types) + 1, -np.inf, dtype=np.float32)
        for event in config.events:
            for i, t in enumerate(types):
                if t == event.event_type.lower():
                    by_type[i] = event.weight
                    thresholds[i] = -np.inf if event.threshold is None else event.threshold
        slot = np.where(codes >= 0, codes, len(types))
        weights *= by_type[slot]
        weights[values < thresholds[slot]] = 0  # NaN (no value) compares False: kept
    if config.value_threshold is not None:
        weights[values < config.value_threshold] = 0
    return weights


def fold_in_of(config: TrainingConfig) -> FoldIn:
    """What serving needs to fold a user's events into this training's vectors: the same alpha,
    regularization and event rules (``weigh``'s, applied per event)."""
    return FoldIn(
        alpha=config.alpha,
        regularization=config.regularization,
        weights=tuple((e.event_type.lower(), e.weight, e.threshold) for e in config.events),
        value_threshold=config.value_threshold,
        event_type=config.event_type,
    )


def _matrix(users: np.ndarray, items: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> Any:
    from scipy.sparse import coo_matrix  # the training layer's: the control plane never imports it

    return coo_matrix((weights, (users, items)), shape=shape, dtype=np.float32).tocsr()


def train(
    data: TrainingInput,
    config: TrainingConfig,
    recipe: Recipe,
    *,
    solution: str,
    version: str,
    region: str,
    account: str,
    dataset_group_arn: str | None = None,
    threads: int = 0,
    checkpoint: Callable[[], None] = lambda: None,
) -> Trained:
    """Train and encode a solution version. ``checkpoint`` is called between steps and after every
    ALS iteration; it raises TrainingStopped to stop."""
    clock = {"start": time.perf_counter()}
    interactions = data.interactions
    weights = weigh(interactions, config)
    rows = np.flatnonzero(weights > 0)
    if rows.size == 0:
        raise TrainingFailed(
            "No interactions are left to train on after the solution's event type and weights"
        )
    # Compact: only users and items with weighed interactions.
    user_codes, users = np.unique(interactions.user_codes[rows], return_inverse=True)
    item_codes, items = np.unique(interactions.item_codes[rows], return_inverse=True)
    user_ids = [interactions.user_ids[c] for c in user_codes.tolist()]
    item_ids = [interactions.item_ids[c] for c in item_codes.tolist()]
    weights, stamps = weights[rows], interactions.timestamps[rows]
    shape = (len(user_ids), len(item_ids))
    parts = split(user_ids, users, stamps)
    checkpoint()

    popularity_train = np.bincount(items[parts.train], weights[parts.train], minlength=shape[1])
    input_matrix = _matrix(users[parts.test_input], items[parts.test_input], weights[parts.test_input], shape)

    order = np.argsort(-popularity_train, kind="stable")

    def popular(block: np.ndarray) -> np.ndarray:
        # One order for everyone: each user's top is its first items that are not in the input.
        rows = input_matrix[block]
        out = np.full((block.size, TOP), -1, dtype=np.int64)
        for row in range(block.size):
            known = rows.indices[rows.indptr[row] : rows.indptr[row + 1]]
            head = order[: TOP + known.size]
            picked = head[~np.isin(head, known)][:TOP]
            out[row, : picked.size] = picked
        return out

    pairs = (users[parts.test_input], items[parts.test_input]), (users[parts.holdout], items[parts.holdout])
    baseline = evaluate(popular, parts.test_users, pairs[0], pairs[1], catalog=shape[1])
    clock["prepare"] = time.perf_counter()

    item_factors = user_factors = None
    co_files: dict[str, bytes] = {}
    compared: dict[str, dict[str, float]] = {}
    if recipe is Recipe.POPULAR_ITEMS:
        metrics = baseline
    else:
        fit = _Fit(users, items, weights, stamps, shape, parts, input_matrix, pairs)
        item_factors, user_factors, metrics = _fit(fit, config, recipe, threads, checkpoint, clock)
        if recipe is Recipe.RELATED_ITEMS:
            # Both measured on the holdout every time; the better by NDCG@10 (the ranking metric
            # Personalize's guide leads with) is what serves.
            compared = {"item factors": metrics, "co-occurrence": _co_occurrence_metrics(fit)}
            if compared["co-occurrence"][RELATED_BY] > compared["item factors"][RELATED_BY]:
                metrics = compared["co-occurrence"]
                co_files = encode_co_occurrence(users, items, shape[0], shape[1])
    clock["evaluate"] = time.perf_counter()
    checkpoint()

    extras = (
        prepare_extras(
            item_ids,
            item_factors.shape[1] if item_factors is not None else 0,
            items=_aligned(data.items, item_ids),
            users=data.users,
            interactions=recent.from_arrays(
                user_ids,
                users,
                items,
                stamps,
                interactions.event_types,
                interactions.event_codes[rows],
            ),
        )
        | co_files
    )
    prepared = prepare_version(
        solution=solution,
        recipe=recipe,
        region=region,
        account=account,
        item_ids=item_ids,
        item_factors=item_factors,
        user_ids=user_ids if recipe.needs_user_factors else (),
        user_factors=user_factors if recipe.needs_user_factors else None,
        popularity=np.bincount(items, weights, minlength=shape[1]).astype(np.float32),
        version=version,
        extra_files=extras,
        dataset_group_arn=dataset_group_arn,
        fold_in=fold_in_of(config),
    )
    clock["encode"] = time.perf_counter()
    steps = list(clock.items())
    seconds = {name: round(at - steps[i - 1][1], 3) for i, (name, at) in enumerate(steps) if i}
    return Trained(prepared, metrics, baseline, int(rows.size), seconds, compared)


class _Fit(NamedTuple):
    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    stamps: np.ndarray
    shape: tuple[int, int]
    parts: Any
    input_matrix: Any
    pairs: Any


def _fit(
    data: _Fit,
    config: TrainingConfig,
    recipe: Recipe,
    threads: int,
    checkpoint: Callable[[], None],
    clock: dict[str, float],
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """ALS on the training users (timed as ``fit``); the holdout metrics; every user's vector (test
    users folded in)."""
    from implicit.cpu.als import AlternatingLeastSquares  # the training layer's
    from threadpoolctl import threadpool_limits

    users, items, weights, shape, parts = data.users, data.items, data.weights, data.shape, data.parts
    train_rows = parts.train
    # implicit's solver threads do the work; BLAS inside them must not start threads of its own.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=config.alpha,
            iterations=config.iterations,
            num_threads=threads,
            random_state=20240531,
        )
        model.fit(
            _matrix(users[train_rows], items[train_rows], weights[train_rows], shape),
            show_progress=False,
            callback=lambda *_: checkpoint(),
        )
        clock["fit"] = time.perf_counter()
        item_factors = np.asarray(model.item_factors, dtype=np.float32)
        input_matrix = data.input_matrix
        if recipe is Recipe.RELATED_ITEMS:
            recommend = _related(_cosine(item_factors), input_matrix, users, items, data.stamps, parts)
        else:

            def recommend(block: np.ndarray) -> np.ndarray:
                vectors = model.recalculate_user(block, input_matrix[block])
                known = input_matrix[block].tocoo()
                return top_items(vectors @ item_factors.T, known.row, known.col)

        metrics = evaluate(recommend, parts.test_users, data.pairs[0], data.pairs[1], catalog=shape[1])
        # The test users' vectors, folded in from all their interactions (they were not trained).
        user_factors = np.asarray(model.user_factors, dtype=np.float32).copy()
        test_rows = ~parts.train
        tested = np.unique(users[test_rows])
        if tested.size:
            full = _matrix(users[test_rows], items[test_rows], weights[test_rows], shape)
            user_factors[tested] = model.recalculate_user(tested, full[tested])
    return item_factors, user_factors, metrics


def _aligned(
    table: tuple[list[str], dict[str, list[str]]] | None, item_ids: list[str]
) -> dict[str, list[str]] | None:
    if table is None:
        return None
    ids, columns = table
    row_of = {item: row for row, item in enumerate(ids)}
    rows = [row_of.get(item) for item in item_ids]
    return {name: [values[r] if r is not None else "" for r in rows] for name, values in columns.items()}


def _latest_input_items(
    users: np.ndarray, items: np.ndarray, stamps: np.ndarray, parts: Any
) -> dict[int, int]:
    """Each test user's latest input item: the query of RELATED_ITEMS on the holdout."""
    rows = np.flatnonzero(parts.test_input)
    order = rows[np.lexsort((stamps[rows], users[rows]))]
    return dict(zip(users[order].tolist(), items[order].tolist(), strict=True))  # the last one wins


def _cosine(item_factors: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Similarities of query items to every item by the item factors' cosine."""
    norms = np.linalg.norm(item_factors, axis=1)
    unit = item_factors / np.where(norms > 0, norms, 1)[:, None]

    def similar(query: np.ndarray) -> np.ndarray:
        scores: np.ndarray = unit[query] @ unit.T
        return scores

    return similar


def _co_occurrence(
    users: np.ndarray, items: np.ndarray, shape: tuple[int, int]
) -> Callable[[np.ndarray], np.ndarray]:
    """Similarities of query items to every item by co-occurrence: the cosine of their user sets, as
    serving computes it (serving/related.py; there equal similarities go to the more popular item,
    here to catalog order, as for every recommender measured)."""
    binary = _matrix(users, items, np.ones(users.size, dtype=np.float32), shape)
    binary.data[:] = 1.0  # a user who interacted twice with an item counts once
    scale = 1.0 / np.sqrt(np.maximum(np.asarray(binary.sum(axis=0)).ravel(), 1.0))
    item_users = binary.T.tocsr()

    def similar(query: np.ndarray) -> np.ndarray:
        shared = (item_users[query] @ binary).toarray()
        scores: np.ndarray = shared * scale[None, :] * scale[query][:, None]
        return scores

    return similar


def _related(
    similar: Callable[[np.ndarray], np.ndarray],
    input_matrix: Any,
    users: np.ndarray,
    items: np.ndarray,
    stamps: np.ndarray,
    parts: Any,
) -> Callable[[np.ndarray], np.ndarray]:
    """RELATED_ITEMS on the holdout: the items most similar to each test user's latest input item."""
    latest = _latest_input_items(users, items, stamps, parts)

    def related(block: np.ndarray) -> np.ndarray:
        query = np.array([latest[u] for u in block.tolist()])
        scores = similar(query)
        scores[np.arange(query.size), query] = -np.inf  # never the query itself
        known = input_matrix[block].tocoo()
        return top_items(scores, known.row, known.col, TOP)

    return related


def _co_occurrence_metrics(data: _Fit) -> dict[str, float]:
    """RELATED_ITEMS by co-occurrence (of the training users), on the holdout the factors faced."""
    train = data.parts.train
    similar = _co_occurrence(data.users[train], data.items[train], data.shape)
    recommend = _related(similar, data.input_matrix, data.users, data.items, data.stamps, data.parts)
    return evaluate(recommend, data.parts.test_users, data.pairs[0], data.pairs[1], catalog=data.shape[1])
