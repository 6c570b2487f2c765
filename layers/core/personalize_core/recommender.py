"""The runtime operations as plain functions: a validated request and a store in, items out.

Nothing here knows about HTTP; ``http`` turns results and exceptions into responses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .artifacts import Recipe
from .errors import InvalidInputException
from .model import SolutionVersionModel
from .requests import Promotion, RankingRequest, RecommendationsRequest, RequestOptions
from .scoring import popular_top_k, rank_items, related_top_k, user_top_k
from .store import ModelStore

PredictedItem = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    items: list[PredictedItem]
    #: The one solution version that computed every item of the answer.
    solution_version_arn: str


def _refuse_unsupported(options: RequestOptions, promotions: tuple[Promotion, ...] = ()) -> None:
    # Refused loudly rather than ignored: an answer must never silently drop part of a request.
    for present, what in (
        (options.filter_arn is not None or bool(options.filter_values), "filterArn/filterValues"),
        (bool(options.context), "context"),
        (bool(options.metadata_columns), "metadataColumns"),
        (bool(promotions), "promotions"),
    ):
        if present:
            raise InvalidInputException(f"{what} is not supported by this deployment yet")


def _items(
    model: SolutionVersionModel, indices: np.ndarray, scores: np.ndarray | None = None
) -> list[PredictedItem]:
    ids = model.item_ids
    if scores is None:
        return [{"itemId": ids[i]} for i in indices.tolist()]
    return [{"itemId": ids[i], "score": s} for i, s in zip(indices.tolist(), scores.tolist(), strict=True)]


def _wrong_operation(arn: str, recipe: Recipe, operation: str) -> InvalidInputException:
    return InvalidInputException(f"Campaign {arn} serves a {recipe.value} solution, which {operation}")


def get_recommendations(request: RecommendationsRequest, store: ModelStore) -> Answer:
    if request.recommender_arn is not None:
        raise InvalidInputException("recommenderArn is not supported: recommenders are served as campaigns")
    assert request.campaign_arn is not None
    _refuse_unsupported(request.options, request.promotions)
    _, model = store.campaign(request.campaign_arn)
    recipe, k = model.manifest.recipe, request.num_results

    if recipe is Recipe.USER_PERSONALIZATION:
        if request.user_id is None:
            raise InvalidInputException("userId is required for a USER_PERSONALIZATION campaign")
        user = model.user_index.get(request.user_id)
        if user is None or model.user_factors is None or model.item_factors is None:
            return Answer(_items(model, popular_top_k(model.popular_order, k)), model.arn)  # cold start
        chosen, scores = user_top_k(
            model.item_factors, model.user_factors[user], k, log_normaliser=model.log_normaliser(user)
        )
        return Answer(_items(model, chosen, scores), model.arn)

    if recipe is Recipe.RELATED_ITEMS:
        if request.item_id is None:
            raise InvalidInputException("itemId is required for a RELATED_ITEMS campaign")
        item = model.item_index.get(request.item_id)
        if item is None or model.item_factors is None or model.item_norms is None:
            return Answer(_items(model, popular_top_k(model.popular_order, k)), model.arn)
        return Answer(_items(model, related_top_k(model.item_factors, model.item_norms, item, k)), model.arn)

    if recipe is Recipe.POPULAR_ITEMS:
        return Answer(_items(model, popular_top_k(model.popular_order, k)), model.arn)

    raise _wrong_operation(
        request.campaign_arn, recipe, "answers GetPersonalizedRanking, not GetRecommendations"
    )


def get_personalized_ranking(request: RankingRequest, store: ModelStore) -> Answer:
    _refuse_unsupported(request.options)
    _, model = store.campaign(request.campaign_arn)
    if model.manifest.recipe is not Recipe.PERSONALIZED_RANKING:
        raise _wrong_operation(
            request.campaign_arn, model.manifest.recipe, "does not answer GetPersonalizedRanking"
        )

    # An item listed twice is ranked once, where it first appears.
    wanted = list(dict.fromkeys(request.input_list))
    known = np.array([model.item_index[i] for i in wanted if i in model.item_index], dtype=np.int64)
    unknown = [{"itemId": i} for i in wanted if i not in model.item_index]
    user = model.user_index.get(request.user_id)
    if user is None or model.user_factors is None or model.item_factors is None or known.size == 0:
        # Cold start: the known items by popularity, no scores (there is no user vector to score with).
        by_popularity = known[np.argsort(-model.popularity[known].astype(np.float64), kind="stable")]
        return Answer(_items(model, by_popularity) + unknown, model.arn)
    ranked, scores = rank_items(model.item_factors, model.user_factors[user], known)
    return Answer(_items(model, ranked, scores) + unknown, model.arn)
