"""Runtime requests, validated at the edge against every limit of Personalize's model.

Each violation is an InvalidInputException whose message names the field, e.g.
``numResults must be at most 500``. Unknown fields are refused rather than ignored, so a
request never silently loses a part of its meaning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from personalize_core.arns import NAME_MAX, NAME_PATTERN
from personalize_core.edge.fields import ID_MAX, Fields, type_name
from personalize_core.errors import InvalidInputException

NUM_RESULTS_DEFAULT = 25
NUM_RESULTS_MAX = 500
NUM_RESULTS_MAX_WITH_METADATA = 50
INPUT_LIST_MAX = 500
INPUT_LIST_MAX_WITH_METADATA = 50
CONTEXT_MAX_ENTRIES = 150
CONTEXT_KEY = re.compile(r"[A-Za-z\d_]+")
CONTEXT_KEY_MAX = 150
CONTEXT_VALUE_MAX = 1000
FILTER_VALUES_MAX_ENTRIES = 25
FILTER_KEY = re.compile(r"[A-Za-z0-9_]+")
FILTER_KEY_MAX = 50
FILTER_VALUE_MAX = 1000
METADATA_COLUMNS_MAX = 10
METADATA_COLUMN_MAX = 150
METADATA_DATASETS = frozenset({"ITEMS"})
PROMOTIONS_MAX = 1
#: The default of a request's absent string maps (read only, shared by every request).
_NO_STRINGS: Mapping[str, str] = MappingProxyType({})


class Promotion(NamedTuple):
    name: str
    percent_promoted_items: int
    filter_arn: str | None
    filter_values: dict[str, str]


class RequestOptions(NamedTuple):
    """The parts shared by both runtime operations."""

    context: Mapping[str, str] = _NO_STRINGS
    filter_arn: str | None = None
    filter_values: Mapping[str, str] = _NO_STRINGS
    metadata_columns: tuple[str, ...] = ()


def filter_values(fields: Fields) -> dict[str, str]:
    return fields.string_map(
        "filterValues",
        max_entries=FILTER_VALUES_MAX_ENTRIES,
        key_pattern=FILTER_KEY,
        key_max=FILTER_KEY_MAX,
        value_max=FILTER_VALUE_MAX,
    )


def _options(fields: Fields) -> RequestOptions:
    context = fields.string_map(
        "context",
        max_entries=CONTEXT_MAX_ENTRIES,
        key_pattern=CONTEXT_KEY,
        key_max=CONTEXT_KEY_MAX,
        value_max=CONTEXT_VALUE_MAX,
    )
    return RequestOptions(
        context=context,
        filter_arn=fields.arn("filterArn"),
        filter_values=filter_values(fields),
        metadata_columns=_metadata_columns(fields),
    )


def _metadata_columns(fields: Fields) -> tuple[str, ...]:
    value = fields.body.get("metadataColumns")
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InvalidInputException(f"metadataColumns must be an object, not a {type_name(value)}")
    unknown = sorted(set(value) - METADATA_DATASETS)
    if unknown:
        raise InvalidInputException(
            f"metadataColumns key {unknown[0][:60]!r} is not a dataset type; use ITEMS"
        )
    columns = Fields(value, "metadataColumns.", METADATA_DATASETS).string_list(
        "ITEMS", max_items=METADATA_COLUMNS_MAX, item_max=METADATA_COLUMN_MAX
    )
    return tuple(dict.fromkeys(columns or ()))


def _promotions(fields: Fields) -> tuple[Promotion, ...]:
    value = fields.body.get("promotions")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInputException(f"promotions must be a list, not a {type_name(value)}")
    if len(value) > PROMOTIONS_MAX:
        raise InvalidInputException(f"promotions may have at most {PROMOTIONS_MAX} entry")
    promotions = []
    for i, raw in enumerate(value):
        promo = Fields(
            raw, f"promotions[{i}].", frozenset({"name", "percentPromotedItems", "filterArn", "filterValues"})
        )
        name = promo.string("name", max_len=NAME_MAX, min_len=1, pattern=NAME_PATTERN, required=True)
        percent = promo.integer("percentPromotedItems", minimum=1, maximum=100)
        if percent is None:
            raise InvalidInputException(f"promotions[{i}].percentPromotedItems is required")
        filter_arn = promo.arn("filterArn", required=True)
        assert name is not None
        promotions.append(Promotion(name, percent, filter_arn, filter_values(promo)))
    return tuple(promotions)


#: The fields a GetRecommendations body may have.
RECOMMENDATIONS_FIELDS = frozenset(
    {
        "campaignArn",
        "recommenderArn",
        "userId",
        "itemId",
        "numResults",
        "context",
        "filterArn",
        "filterValues",
        "promotions",
        "metadataColumns",
    }
)


class RecommendationsRequest(NamedTuple):
    campaign_arn: str | None
    recommender_arn: str | None
    user_id: str | None
    item_id: str | None
    num_results: int
    options: RequestOptions
    promotions: tuple[Promotion, ...]

    @classmethod
    def parse(cls, body: Any) -> RecommendationsRequest:
        fields = Fields(body, "", RECOMMENDATIONS_FIELDS)
        campaign_arn = fields.arn("campaignArn")
        recommender_arn = fields.arn("recommenderArn")
        if (campaign_arn is None) == (recommender_arn is None):
            raise InvalidInputException("Exactly one of campaignArn and recommenderArn is required")
        options = _options(fields)
        limit = NUM_RESULTS_MAX_WITH_METADATA if options.metadata_columns else NUM_RESULTS_MAX
        num_results = fields.integer("numResults", minimum=0, maximum=limit)
        return cls(
            campaign_arn=campaign_arn,
            recommender_arn=recommender_arn,
            user_id=fields.identifier("userId"),
            item_id=fields.identifier("itemId"),
            num_results=NUM_RESULTS_DEFAULT if num_results is None else num_results,
            options=options,
            promotions=_promotions(fields),
        )


#: The fields a GetPersonalizedRanking body may have.
RANKING_FIELDS = frozenset(
    {"campaignArn", "userId", "inputList", "context", "filterArn", "filterValues", "metadataColumns"}
)


class RankingRequest(NamedTuple):
    campaign_arn: str
    user_id: str
    input_list: tuple[str, ...]
    options: RequestOptions

    @classmethod
    def parse(cls, body: Any) -> RankingRequest:
        fields = Fields(body, "", RANKING_FIELDS)
        campaign_arn = fields.arn("campaignArn", required=True)
        user_id = fields.identifier("userId", required=True)
        options = _options(fields)
        limit = INPUT_LIST_MAX_WITH_METADATA if options.metadata_columns else INPUT_LIST_MAX
        input_list = fields.string_list("inputList", max_items=limit, item_max=ID_MAX, required=True)
        assert campaign_arn is not None
        assert user_id is not None
        assert input_list is not None
        if not input_list:
            raise InvalidInputException("inputList must contain at least one item")
        return cls(campaign_arn, user_id, tuple(input_list), options)
