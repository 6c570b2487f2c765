"""GetRecommendations and GetPersonalizedRanking as plain functions: a validated request and a
store in, Personalize's predicted items out.

What each recipe answers lives in ``recipes`` (shared with batch inference); what only the
real-time API has lives here: promotions, item metadata in the answer, and the campaign's model
taken once per request so that one solution version answers it all. Nothing here knows about
HTTP; ``edge.api`` turns results and exceptions into responses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from personalize_core.edge.requests import Promotion, RankingRequest, RecommendationsRequest
from personalize_core.errors import InvalidInputException, ModelUnavailableError
from personalize_core.modelstore.attributes import Column
from personalize_core.modelstore.bucket_records import CampaignPointer
from personalize_core.modelstore.model import SolutionVersionModel
from personalize_core.modelstore.store import ModelStore
from personalize_core.modelstore.user_pages import UserPageError
from personalize_core.serving import recipes
from personalize_core.serving.live import Live, LiveStore, get_live
from personalize_core.serving.overlay import MetadataOverlay
from personalize_core.serving.recipes import Operation

if TYPE_CHECKING:
    from personalize_core.serving.filter_store import CompiledFilter, FilterStore

PredictedItem = dict[str, Any]
PROMOTED_REASON = "Promoted item"


class Answer(NamedTuple):
    items: list[PredictedItem]
    #: The one solution version that computed every item of the answer.
    solution_version_arn: str


def metadata_columns(model: SolutionVersionModel, columns: tuple[str, ...]) -> list[tuple[str, Column]]:
    """The item columns a request's ``metadataColumns`` names (InvalidInput for one the model lacks)."""
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


def predicted_items(
    model: SolutionVersionModel,
    indices: np.ndarray,
    scores: np.ndarray | None = None,
    metadata: list[tuple[str, Column]] | None = None,
    reason: str | None = None,
    overlay: MetadataOverlay | None = None,
) -> list[PredictedItem]:
    ids = model.item_ids
    rows = indices.tolist()
    if scores is None:
        items: list[PredictedItem] = [{"itemId": ids[i]} for i in rows]
    else:
        items = [{"itemId": ids[i], "score": s} for i, s in zip(rows, scores.tolist(), strict=True)]
    if metadata:
        text = overlay.item_text if overlay is not None else (lambda row, column: column.text(row))
        for item, row in zip(items, rows, strict=True):
            item["metadata"] = {name: text(row, column) for name, column in metadata}
    if reason is not None:
        for item in items:
            item["reason"] = [reason]
    return items


def spread_positions(promoted: int, total: int) -> list[int]:
    """Where ``promoted`` items go among ``total``: evenly spread, the first after a few regular ones."""
    return [int((j + 0.5) * total / promoted) for j in range(promoted)] if promoted else []


class _Filters:
    """The request's filters, compiled on first use: a cold start without filters imports none."""

    def __init__(self, store: ModelStore, given: FilterStore | None) -> None:
        self.store, self.given = store, given

    def get(self, filter_arn: str | None, field: str) -> CompiledFilter | None:
        if filter_arn is None:
            return None
        from personalize_core.serving.filter_store import filter_store_for  # noqa: PLC0415

        return (self.given or filter_store_for(self.store)).get(filter_arn, field)


def one_version(
    store: ModelStore,
    pointer: CampaignPointer,
    model: SolutionVersionModel,
    answer: Callable[[SolutionVersionModel], Answer],
) -> Answer:
    """``answer(model)``; when a user page of ``model`` is missing or corrupt, the whole answer
    again from the campaign's last good version (the store refuses the broken one), so that every
    answer still comes from exactly one version."""
    try:
        return answer(model)
    except UserPageError as exc:
        fallback = store.fall_back(pointer, model, exc)
    try:
        return answer(fallback)
    except UserPageError as exc:
        raise ModelUnavailableError(f"Solution version {fallback.arn} cannot answer now: {exc}") from exc


def get_recommendations(
    request: RecommendationsRequest,
    store: ModelStore,
    filters: FilterStore | None = None,
    live: LiveStore | None = None,
    recommendation_id: str | None = None,
) -> Answer:
    """``recommendation_id``: the answer's id, under which a tracked group keeps its items."""
    if request.recommender_arn is not None:  # a recommender is served as a campaign is
        pointer, model = store.recommender(request.recommender_arn)
    else:
        assert request.campaign_arn is not None
        pointer, model = store.campaign(request.campaign_arn)
    served = _Served(store, filters, live, recommendation_id)
    return one_version(store, pointer, model, lambda one: _recommendations(request, one, served))


class _Served(NamedTuple):
    """What a request is answered with, whichever version answers it (``one_version``)."""

    store: ModelStore
    filters: FilterStore | None
    live: LiveStore | None
    recommendation_id: str | None


def _recommendations(request: RecommendationsRequest, model: SolutionVersionModel, served: _Served) -> Answer:
    store, filters, live, recommendation_id = served
    recipes.check_query(model, Operation.RECOMMENDATIONS, request.user_id, request.item_id)
    compiled, options, k = _Filters(store, filters), request.options, request.num_results
    metadata = metadata_columns(model, options.metadata_columns)
    live_store = live or get_live()
    now = live_store.read(model, request.user_id)
    user = recipes.user_vector(model, request.user_id, options.context, now.events)
    recommender = recipes.recommend(model, user, request.item_id)

    def allowed(filter_arn: str | None, values: Any, field: str) -> np.ndarray | None:
        return recipes.allowed_items(
            model, compiled.get(filter_arn, field), values, request.user_id, request.item_id, field, live=now
        )

    mask = allowed(options.filter_arn, options.filter_values, "filterArn")
    if not request.promotions:
        chosen, scores = recommender.rank(mask, k)
        items = predicted_items(model, chosen, scores, metadata, recommender.reason, now.overlay)
    else:
        promotion = request.promotions[0]
        promotable = allowed(promotion.filter_arn, promotion.filter_values, "promotions[0].filterArn")
        items = _promote(model, recommender, mask, promotable, k, promotion, metadata, now)
    _record(live_store, now, recommendation_id, items)
    return Answer(items, model.arn)


def _record(live: LiveStore, now: Live, recommendation_id: str | None, items: list[PredictedItem]) -> None:
    if recommendation_id is not None and now.tracked:
        live.record(now, recommendation_id, [item["itemId"] for item in items])


def _promote(
    model: SolutionVersionModel,
    recommender: recipes.Recommender,
    allowed: np.ndarray | None,
    promotable: np.ndarray | None,
    k: int,
    promotion: Promotion,
    metadata: list[tuple[str, Column]],
    live: Live,
) -> list[PredictedItem]:
    """``ceil(k * percent / 100)`` items from the promotion's filter, spread evenly among the
    others (which the request's filter governs); never the same item twice."""
    rank = recommender.rank
    promoted, promoted_scores = rank(promotable, math.ceil(k * promotion.percent_promoted_items / 100))
    regular_allowed = np.ones(model.num_items, dtype=bool) if allowed is None else allowed.copy()
    regular_allowed[promoted] = False
    regular, regular_scores = rank(regular_allowed, k - len(promoted))
    promoted_items = predicted_items(model, promoted, promoted_scores, metadata, overlay=live.overlay)
    for item in promoted_items:
        item["promotionName"] = promotion.name
        item["reason"] = [PROMOTED_REASON]
    regular_items = predicted_items(
        model, regular, regular_scores, metadata, recommender.reason, live.overlay
    )
    total = len(promoted_items) + len(regular_items)
    slots = set(spread_positions(len(promoted_items), total))
    promoted_iter, regular_iter = iter(promoted_items), iter(regular_items)
    return [next(promoted_iter) if at in slots else next(regular_iter) for at in range(total)]


def get_personalized_ranking(
    request: RankingRequest,
    store: ModelStore,
    filters: FilterStore | None = None,
    live: LiveStore | None = None,
    recommendation_id: str | None = None,
) -> Answer:
    pointer, model = store.campaign(request.campaign_arn)
    served = _Served(store, filters, live, recommendation_id)
    return one_version(store, pointer, model, lambda one: _ranking(request, one, served))


def _ranking(request: RankingRequest, model: SolutionVersionModel, served: _Served) -> Answer:
    store, filters, live, recommendation_id = served
    recipes.check_query(model, Operation.RANKING, request.user_id, None)
    options = request.options
    metadata = metadata_columns(model, options.metadata_columns)
    live_store = live or get_live()
    now = live_store.read(model, request.user_id)
    user = recipes.user_vector(model, request.user_id, options.context, now.events)
    compiled = _Filters(store, filters).get(options.filter_arn, "filterArn")
    mask = recipes.allowed_items(model, compiled, options.filter_values, request.user_id, None, live=now)
    ranking = recipes.rank(model, user, request.input_list, mask)
    items = predicted_items(model, ranking.items, ranking.scores, metadata, overlay=now.overlay)
    score = {"score": recipes.UNKNOWN_ITEM_SCORE} if ranking.scores is not None else {}
    answer = items + [{"itemId": i, **score} for i in ranking.unknown]
    _record(live_store, now, recommendation_id, answer)
    return Answer(answer, model.arn)
