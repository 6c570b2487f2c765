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

from .errors import InvalidInputException
from .names import ARN_MAX, ARN_PATTERN, NAME_MAX, NAME_PATTERN

ID_MAX = 256
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


def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


class _Fields:
    """Typed access to a JSON object's fields, with Personalize-style messages."""

    def __init__(self, body: Any, where: str, allowed: frozenset[str]) -> None:
        if not isinstance(body, dict):
            raise InvalidInputException(f"{where or 'The request body'} must be a JSON object")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise InvalidInputException(f"Unknown field {where}{unknown[0][:60]}")
        self.body = body
        self.where = where

    def name(self, key: str) -> str:
        return f"{self.where}{key}"

    def string(
        self,
        key: str,
        *,
        max_len: int,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
        min_len: int = 0,
    ) -> str | None:
        value = self.body.get(key)
        if value is None:
            if required:
                raise InvalidInputException(f"{self.name(key)} is required")
            return None
        if not isinstance(value, str):
            raise InvalidInputException(f"{self.name(key)} must be a string, not a {_type_name(value)}")
        if len(value) > max_len:
            raise InvalidInputException(f"{self.name(key)} must be at most {max_len} characters")
        if len(value) < min_len:
            raise InvalidInputException(f"{self.name(key)} must be at least {min_len} characters")
        if pattern is not None and pattern.fullmatch(value) is None:
            raise InvalidInputException(f"{self.name(key)} {value!r} does not match {pattern.pattern}")
        return value

    def identifier(self, key: str, *, required: bool = False) -> str | None:
        return self.string(key, max_len=ID_MAX, required=required, min_len=1)

    def arn(self, key: str, *, required: bool = False) -> str | None:
        return self.string(key, max_len=ARN_MAX, required=required, pattern=ARN_PATTERN)

    def integer(self, key: str, *, minimum: int, maximum: int) -> int | None:
        value = self.body.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputException(f"{self.name(key)} must be an integer, not a {_type_name(value)}")
        if not minimum <= value <= maximum:
            raise InvalidInputException(f"{self.name(key)} must be between {minimum} and {maximum}")
        return value

    def string_map(
        self, key: str, *, max_entries: int, key_pattern: re.Pattern[str], key_max: int, value_max: int
    ) -> dict[str, str]:
        value = self.body.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise InvalidInputException(f"{self.name(key)} must be an object, not a {_type_name(value)}")
        if len(value) > max_entries:
            raise InvalidInputException(f"{self.name(key)} may have at most {max_entries} entries")
        for k, v in value.items():
            if len(k) > key_max or key_pattern.fullmatch(k) is None:
                raise InvalidInputException(
                    f"{self.name(key)} key {k[:60]!r} must be 1-{key_max} characters "
                    f"matching {key_pattern.pattern}"
                )
            if not isinstance(v, str):
                raise InvalidInputException(f"{self.name(key)}.{k} must be a string, not a {_type_name(v)}")
            if len(v) > value_max:
                raise InvalidInputException(f"{self.name(key)}.{k} must be at most {value_max} characters")
        return dict(value)

    def string_list(
        self, key: str, *, max_items: int, item_max: int, required: bool = False
    ) -> list[str] | None:
        value = self.body.get(key)
        if value is None:
            if required:
                raise InvalidInputException(f"{self.name(key)} is required")
            return None
        if not isinstance(value, list):
            raise InvalidInputException(f"{self.name(key)} must be a list, not a {_type_name(value)}")
        if len(value) > max_items:
            raise InvalidInputException(f"{self.name(key)} may have at most {max_items} entries")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise InvalidInputException(
                    f"{self.name(key)}[{i}] must be a string, not a {_type_name(item)}"
                )
            if not 0 < len(item) <= item_max:
                raise InvalidInputException(f"{self.name(key)}[{i}] must be 1-{item_max} characters")
        return list(value)


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


def _filter_values(fields: _Fields) -> dict[str, str]:
    return fields.string_map(
        "filterValues",
        max_entries=FILTER_VALUES_MAX_ENTRIES,
        key_pattern=FILTER_KEY,
        key_max=FILTER_KEY_MAX,
        value_max=FILTER_VALUE_MAX,
    )


def _options(fields: _Fields) -> RequestOptions:
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
        filter_values=_filter_values(fields),
        metadata_columns=_metadata_columns(fields),
    )


def _metadata_columns(fields: _Fields) -> tuple[str, ...]:
    value = fields.body.get("metadataColumns")
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InvalidInputException(f"metadataColumns must be an object, not a {_type_name(value)}")
    unknown = sorted(set(value) - METADATA_DATASETS)
    if unknown:
        raise InvalidInputException(
            f"metadataColumns key {unknown[0][:60]!r} is not a dataset type; use ITEMS"
        )
    columns = _Fields(value, "metadataColumns.", METADATA_DATASETS).string_list(
        "ITEMS", max_items=METADATA_COLUMNS_MAX, item_max=METADATA_COLUMN_MAX
    )
    return tuple(dict.fromkeys(columns or ()))


def _promotions(fields: _Fields) -> tuple[Promotion, ...]:
    value = fields.body.get("promotions")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInputException(f"promotions must be a list, not a {_type_name(value)}")
    if len(value) > PROMOTIONS_MAX:
        raise InvalidInputException(f"promotions may have at most {PROMOTIONS_MAX} entry")
    promotions = []
    for i, raw in enumerate(value):
        promo = _Fields(
            raw, f"promotions[{i}].", frozenset({"name", "percentPromotedItems", "filterArn", "filterValues"})
        )
        name = promo.string("name", max_len=NAME_MAX, min_len=1, pattern=NAME_PATTERN, required=True)
        percent = promo.integer("percentPromotedItems", minimum=1, maximum=100)
        if percent is None:
            raise InvalidInputException(f"promotions[{i}].percentPromotedItems is required")
        filter_arn = promo.arn("filterArn", required=True)
        assert name is not None
        promotions.append(Promotion(name, percent, filter_arn, _filter_values(promo)))
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
        fields = _Fields(body, "", RECOMMENDATIONS_FIELDS)
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
        fields = _Fields(body, "", RANKING_FIELDS)
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
