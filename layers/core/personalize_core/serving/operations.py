"""The runtime operations as plain functions: a validated request and a store in, items out.

Filters, promotions, context and item metadata are applied here; the parsing and evaluation of
filters live in ``filter_language`` and ``filters``.

Nothing here knows about HTTP; ``http`` turns results and exceptions into responses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from personalize_core.edge.requests import RankingRequest, RecommendationsRequest
from personalize_core.errors import InvalidInputException
from personalize_core.modelstore.attributes import Column
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.model import SolutionVersionModel
from personalize_core.modelstore.store import ModelStore
from personalize_core.serving.scoring import popular_top_k, rank_items, related_top_k, user_top_k

if TYPE_CHECKING:
    from personalize_core.serving.filter_store import FilterStore

PredictedItem = dict[str, Any]


class Answer(NamedTuple):
    items: list[PredictedItem]
    #: The one solution version that computed every item of the answer.
    solution_version_arn: str


PROMOTED_REASON = "Promoted item"
#: (indices, scores or None): the top items of a mask for the request's recipe.
Ranker = Callable[[np.ndarray | None, int], tuple[np.ndarray, np.ndarray | None]]


# -- the request's options against the model --------------------------------------------------------


def _metadata_columns(model: SolutionVersionModel, columns: tuple[str, ...]) -> list[tuple[str, Column]]:
    table = model.extras.items
    chosen = []
    for name in columns:
        column = table.columns.get(name.upper()) if table is not None else None
        if column is None:
            known = (
                ", ".join(sorted(table.columns)) if table is not None else "none (published without --items)"
            )
            raise InvalidInputException(
                f"metadataColumns.ITEMS: {name[:150]} is not an item column of solution version "
                f"{model.arn}; its columns: {known}"
            )
        chosen.append((name, column))
    return chosen


def _context_shift(model: SolutionVersionModel, context: Mapping[str, str]) -> np.ndarray | None:
    """The sum of the vectors the model publishes for the request's (field, value) pairs."""
    if not context:
        return None
    declared = model.extras.context
    for name in context:
        if declared is None or name not in declared.fields:
            known = ", ".join(sorted(declared.fields)) if declared else "none"
            raise InvalidInputException(
                f"context field {name[:150]} is not declared by solution version {model.arn} "
                f"(declared fields: {known})"
            )
    assert declared is not None
    # A value the model has no vector for shifts nothing (as an unseen value would in training).
    rows = [declared.fields[name][value] for name, value in context.items() if value in declared.fields[name]]
    if not rows:
        return None
    shift: np.ndarray = declared.vectors[rows].sum(axis=0, dtype=np.float32)
    return shift


def _user_vector(
    model: SolutionVersionModel, user_id: str | None, shift: np.ndarray | None
) -> np.ndarray | None:
    user = model.user_index.get(user_id) if user_id is not None else None
    if user is None or model.user_factors is None or model.item_factors is None:
        return None
    vector: np.ndarray = model.user_factors[user]
    if shift is None:
        return vector
    shifted: np.ndarray = (vector + shift).astype(np.float32)
    return shifted


def _filter_store(store: ModelStore, given: FilterStore | None) -> Callable[[], FilterStore]:
    """The filter store, made on first use: filters (and their parser) are imported by the first
    request that names one, not by every cold start."""

    def get() -> FilterStore:
        from personalize_core.serving.filter_store import filter_store_for  # noqa: PLC0415

        return given or filter_store_for(store)

    return get


def _allowed(
    filters: Callable[[], FilterStore],
    model: SolutionVersionModel,
    filter_arn: str | None,
    filter_values: Mapping[str, str],
    user_id: str | None,
    item_id: str | None,
    field: str,
) -> np.ndarray | None:
    if filter_arn is None:
        if filter_values:
            raise InvalidInputException(f"{field.replace('filterArn', 'filterValues')} needs a filterArn")
        return None
    from personalize_core.serving.filters import allowed_items  # noqa: PLC0415 - see _filter_store

    compiled = filters().get(filter_arn, field)
    if item_id is None and any(e.uses_current_item for e in compiled.program.expressions):
        raise InvalidInputException(f"{field} {filter_arn} uses CurrentItem, which needs an itemId")
    current_item = model.item_index.get(item_id) if item_id is not None else None
    return allowed_items(
        model, compiled.program, filter_values, user_id, current_item, f"{field} {filter_arn}"
    )


def _items(
    model: SolutionVersionModel,
    indices: np.ndarray,
    scores: np.ndarray | None = None,
    metadata: list[tuple[str, Column]] | None = None,
) -> list[PredictedItem]:
    ids = model.item_ids
    rows = indices.tolist()
    if scores is None:
        items: list[PredictedItem] = [{"itemId": ids[i]} for i in rows]
    else:
        items = [{"itemId": ids[i], "score": s} for i, s in zip(rows, scores.tolist(), strict=True)]
    if metadata:
        for item, row in zip(items, rows, strict=True):
            item["metadata"] = {name: column.text(row) for name, column in metadata}
    return items


def _wrong_operation(arn: str, recipe: Recipe, operation: str) -> InvalidInputException:
    return InvalidInputException(f"Campaign {arn} serves a {recipe.value} solution, which {operation}")


def spread_positions(promoted: int, total: int) -> list[int]:
    """Where ``promoted`` items go among ``total``: evenly spread, the first after a few regular ones."""
    return [int((j + 0.5) * total / promoted) for j in range(promoted)] if promoted else []


# -- GetRecommendations -----------------------------------------------------------------------------


def get_recommendations(
    request: RecommendationsRequest, store: ModelStore, filters: FilterStore | None = None
) -> Answer:
    if request.recommender_arn is not None:  # a recommender is served as a campaign is
        _, model = store.recommender(request.recommender_arn)
    else:
        assert request.campaign_arn is not None
        _, model = store.campaign(request.campaign_arn)
    filter_store = _filter_store(store, filters)
    recipe, k, options = model.manifest.recipe, request.num_results, request.options
    if recipe is Recipe.PERSONALIZED_RANKING:
        raise _wrong_operation(
            request.campaign_arn or "", recipe, "answers GetPersonalizedRanking, not GetRecommendations"
        )
    if recipe is Recipe.USER_PERSONALIZATION and request.user_id is None:
        raise InvalidInputException("userId is required for a USER_PERSONALIZATION campaign")
    if recipe is Recipe.RELATED_ITEMS and request.item_id is None:
        raise InvalidInputException("itemId is required for a RELATED_ITEMS campaign")
    metadata = _metadata_columns(model, options.metadata_columns)
    shift = _context_shift(model, options.context)

    rank = _ranker(model, request, shift)
    allowed = _allowed(
        filter_store,
        model,
        options.filter_arn,
        options.filter_values,
        request.user_id,
        request.item_id,
        "filterArn",
    )
    if not request.promotions:
        chosen, scores = rank(allowed, k)
        return Answer(_items(model, chosen, scores, metadata), model.arn)

    promotion = request.promotions[0]
    field = "promotions[0].filterArn"
    promotable = _allowed(
        filter_store,
        model,
        promotion.filter_arn,
        promotion.filter_values,
        request.user_id,
        request.item_id,
        field,
    )
    promoted, promoted_scores = rank(promotable, math.ceil(k * promotion.percent_promoted_items / 100))
    regular_allowed = np.ones(model.num_items, dtype=bool) if allowed is None else allowed.copy()
    regular_allowed[promoted] = False  # never the same item twice
    regular, regular_scores = rank(regular_allowed, k - len(promoted))

    promoted_items = _items(model, promoted, promoted_scores, metadata)
    for item in promoted_items:
        item["promotionName"] = promotion.name
        item["reason"] = [PROMOTED_REASON]
    regular_items = _items(model, regular, regular_scores, metadata)
    total = len(promoted_items) + len(regular_items)
    slots = set(spread_positions(len(promoted_items), total))
    promoted_iter, regular_iter = iter(promoted_items), iter(regular_items)
    merged = [next(promoted_iter) if at in slots else next(regular_iter) for at in range(total)]
    return Answer(merged, model.arn)


def _ranker(model: SolutionVersionModel, request: RecommendationsRequest, shift: np.ndarray | None) -> Ranker:
    recipe = model.manifest.recipe
    if recipe is Recipe.USER_PERSONALIZATION:
        user_vector = _user_vector(model, request.user_id, shift)
        if user_vector is not None and model.item_factors is not None:
            item_factors = model.item_factors
            # The published normaliser holds for the user's own vector; context moves the vector.
            user = model.user_index[request.user_id or ""]
            log_normaliser = model.log_normaliser(user) if shift is None else None

            def by_score(allowed: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray | None]:
                return user_top_k(item_factors, user_vector, k, allowed, log_normaliser=log_normaliser)

            return by_score
    if recipe is Recipe.RELATED_ITEMS:
        item = model.item_index.get(request.item_id or "")
        if item is not None and model.item_factors is not None and model.item_norms is not None:
            item_factors, norms = model.item_factors, model.item_norms

            def by_similarity(allowed: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray | None]:
                return related_top_k(item_factors, norms, item, k, allowed), None

            return by_similarity

    def by_popularity(allowed: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray | None]:
        return popular_top_k(model.popular_order, k, allowed), None  # popular items, and cold start

    return by_popularity


# -- GetPersonalizedRanking -------------------------------------------------------------------------


def get_personalized_ranking(
    request: RankingRequest, store: ModelStore, filters: FilterStore | None = None
) -> Answer:
    _, model = store.campaign(request.campaign_arn)
    filter_store = _filter_store(store, filters)
    if model.manifest.recipe is not Recipe.PERSONALIZED_RANKING:
        raise _wrong_operation(
            request.campaign_arn, model.manifest.recipe, "does not answer GetPersonalizedRanking"
        )
    options = request.options
    metadata = _metadata_columns(model, options.metadata_columns)
    shift = _context_shift(model, options.context)
    allowed = _allowed(
        filter_store, model, options.filter_arn, options.filter_values, request.user_id, None, "filterArn"
    )

    # An item listed twice is ranked once, where it first appears.
    wanted = list(dict.fromkeys(request.input_list))
    known = np.array([model.item_index[i] for i in wanted if i in model.item_index], dtype=np.int64)
    # Items the model does not know cannot be checked against a filter, so a filter drops them.
    unknown = [{"itemId": i} for i in wanted if i not in model.item_index] if allowed is None else []
    user_vector = _user_vector(model, request.user_id, shift)
    if user_vector is None or model.item_factors is None or known.size == 0:
        # Cold start: the known items by popularity, no scores (there is no user vector to score with).
        ranked = known[np.argsort(-model.popularity[known].astype(np.float64), kind="stable")]
        scores = None
    else:
        # Scores are a softmax over the whole input list; a filter then removes items from the answer.
        ranked, scores = rank_items(model.item_factors, user_vector, known)
    if allowed is not None:
        keep = allowed[ranked]
        ranked = ranked[keep]
        scores = scores[keep] if scores is not None else None
    return Answer(_items(model, ranked, scores, metadata) + unknown, model.arn)
