"""Personalize's recipes and solution configuration, as this product trains them.

Custom recipes (CreateSolution) and domain recipes (CreateRecommender) map onto this product's
four recipes; every one of them is trained with implicit's ALS, or counted (popularity).
``TrainingConfig`` is what a training run reads from a solution's ``solutionConfig``.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from personalize_core.edge.fields import Fields
from personalize_core.errors import InvalidInputException
from personalize_core.modelstore.layout import Recipe

RECIPE_ARN = re.compile(r"arn:aws[a-z-]*:personalize:::recipe/(?P<name>[a-zA-Z0-9\-_.]+)")
CUSTOM_RECIPES: dict[str, Recipe] = {
    "aws-user-personalization": Recipe.USER_PERSONALIZATION,
    "aws-user-personalization-v2": Recipe.USER_PERSONALIZATION,
    "aws-similar-items": Recipe.RELATED_ITEMS,
    "aws-sims": Recipe.RELATED_ITEMS,
    "aws-popularity-count": Recipe.POPULAR_ITEMS,
    "aws-personalized-ranking": Recipe.PERSONALIZED_RANKING,
    "aws-personalized-ranking-v2": Recipe.PERSONALIZED_RANKING,
}


class DomainRecipe(NamedTuple):
    domain: str
    recipe: Recipe
    #: The event type the use case learns from (None: every event type), matched without case.
    event_type: str | None = None


DOMAIN_RECIPES: dict[str, DomainRecipe] = {
    "aws-ecomm-recommended-for-you": DomainRecipe("ECOMMERCE", Recipe.USER_PERSONALIZATION),
    "aws-ecomm-customers-who-viewed-x-also-viewed": DomainRecipe("ECOMMERCE", Recipe.RELATED_ITEMS, "View"),
    "aws-ecomm-frequently-bought-together": DomainRecipe("ECOMMERCE", Recipe.RELATED_ITEMS, "Purchase"),
    "aws-ecomm-popular-items-by-purchases": DomainRecipe("ECOMMERCE", Recipe.POPULAR_ITEMS, "Purchase"),
    "aws-ecomm-popular-items-by-views": DomainRecipe("ECOMMERCE", Recipe.POPULAR_ITEMS, "View"),
    "aws-vod-top-picks": DomainRecipe("VIDEO_ON_DEMAND", Recipe.USER_PERSONALIZATION),
    "aws-vod-because-you-watched-x": DomainRecipe("VIDEO_ON_DEMAND", Recipe.RELATED_ITEMS, "Watch"),
    "aws-vod-more-like-x": DomainRecipe("VIDEO_ON_DEMAND", Recipe.RELATED_ITEMS),
    "aws-vod-most-popular": DomainRecipe("VIDEO_ON_DEMAND", Recipe.POPULAR_ITEMS, "Watch"),
    "aws-vod-trending-now": DomainRecipe("VIDEO_ON_DEMAND", Recipe.POPULAR_ITEMS),
}


def _recipe_name(arn: str, field: str) -> str:
    match = RECIPE_ARN.fullmatch(arn)
    if match is None:
        raise InvalidInputException(
            f"{field} {arn[:120]!r} is not a recipe ARN (arn:aws:personalize:::recipe/<name>)"
        )
    return match["name"]


def custom_recipe(arn: str) -> Recipe:
    name = _recipe_name(arn, "recipeArn")
    if name not in CUSTOM_RECIPES:
        known = ", ".join(sorted(CUSTOM_RECIPES))
        raise InvalidInputException(f"Recipe {name} is not supported by this deployment; supported: {known}")
    return CUSTOM_RECIPES[name]


def domain_recipe(arn: str) -> DomainRecipe:
    name = _recipe_name(arn, "recipeArn")
    if name not in DOMAIN_RECIPES:
        known = ", ".join(sorted(DOMAIN_RECIPES))
        raise InvalidInputException(f"Recipe {name} is not a supported domain recipe; supported: {known}")
    return DOMAIN_RECIPES[name]


class EventWeight(NamedTuple):
    event_type: str
    weight: float
    threshold: float | None


class TrainingConfig(NamedTuple):
    # Defaults measured on the demo catalog (docs/DESIGN.md, "Training").
    factors: int = 32
    regularization: float = 1.0
    iterations: int = 15
    alpha: float = 5.0
    #: Only these event types are trained on, with these weights (empty: every event weighs 1).
    events: tuple[EventWeight, ...] = ()
    #: Events whose EVENT_VALUE is below this are left out (solutionConfig.eventValueThreshold).
    value_threshold: float | None = None
    #: The solution's eventType: only events of this type (None: all).
    event_type: str | None = None


#: algorithmHyperParameters this product reads: name -> (field, type, minimum, maximum).
HYPERPARAMETERS: dict[str, tuple[str, type, float, float]] = {
    "factors": ("factors", int, 1, 1024),
    "hidden_dimension": ("factors", int, 1, 1024),  # Personalize's name for the same thing
    "regularization": ("regularization", float, 0.0, 1e6),
    "iterations": ("iterations", int, 1, 200),
    "alpha": ("alpha", float, 1e-6, 1e6),
}
#: Hyperparameters of Personalize's own recipes that have no meaning for ALS: accepted, not used,
#: so that scripts written for Personalize run unchanged.
PERSONALIZE_ONLY = frozenset(
    {
        "bptt",
        "recency_mask",
        "min_user_history_length_percentile",
        "max_user_history_length_percentile",
        "exploration_weight",
        "exploration_item_age_cut_off",
        "popularity_discount_factor",
        "min_cointeraction_count",
        "num_hidden_layers",
        "hidden_layer_sizes",
    }
)
SOLUTION_CONFIG_FIELDS = frozenset(
    {
        "eventValueThreshold",
        "hpoConfig",
        "algorithmHyperParameters",
        "featureTransformationParameters",
        "autoMLConfig",
        "eventsConfig",
        "optimizationObjective",
        "trainingDataConfig",
        "autoTrainingConfig",
    }
)
SCHEDULING_EXPRESSION = re.compile(r"rate\((?P<n>\d+) days?\)")


def _number(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInputException(f"{where} must be a number, not {str(value)[:40]!r}") from None


def training_config(config: dict[str, Any] | None, event_type: str | None = None) -> TrainingConfig:
    """The training run a solutionConfig asks for; InvalidInputException for what cannot be honoured."""
    if not config:
        return TrainingConfig(event_type=event_type)
    fields = Fields(config, "solutionConfig.", SOLUTION_CONFIG_FIELDS)
    for unsupported in ("hpoConfig", "autoMLConfig", "optimizationObjective"):
        if fields.body.get(unsupported):
            raise InvalidInputException(f"solutionConfig.{unsupported} is not supported by this deployment")
    values: dict[str, Any] = {}
    hyperparameters = fields.body.get("algorithmHyperParameters") or {}
    if not isinstance(hyperparameters, dict):
        raise InvalidInputException("solutionConfig.algorithmHyperParameters must be an object")
    for name, raw in hyperparameters.items():
        if name in PERSONALIZE_ONLY:
            continue
        if name not in HYPERPARAMETERS:
            known = ", ".join(sorted(HYPERPARAMETERS))
            raise InvalidInputException(
                f"solutionConfig.algorithmHyperParameters.{name[:60]} is not a hyperparameter of this "
                f"product's training (implicit ALS): {known}"
            )
        target, kind, low, high = HYPERPARAMETERS[name]
        where = f"solutionConfig.algorithmHyperParameters.{name}"
        number = _number(raw, where)
        if not low <= number <= high or (kind is int and number != int(number)):
            raise InvalidInputException(f"{where} must be {kind.__name__} between {low:g} and {high:g}")
        values[target] = int(number) if kind is int else number
    events = []
    events_config = fields.body.get("eventsConfig") or {}
    listed = Fields(
        events_config, "solutionConfig.eventsConfig.", frozenset({"eventParametersList"})
    ).body.get("eventParametersList")
    if listed is not None and not isinstance(listed, list):
        raise InvalidInputException("solutionConfig.eventsConfig.eventParametersList must be a list")
    for i, raw in enumerate(listed or []):
        where = f"solutionConfig.eventsConfig.eventParametersList[{i}]"
        entry = Fields(raw, where + ".", frozenset({"eventType", "eventValueThreshold", "weight"}))
        kind_name = entry.required_string("eventType", max_len=256)
        weight = _number(entry.body.get("weight", 1.0), where + ".weight")
        if not 0 <= weight <= 1:
            raise InvalidInputException(f"{where}.weight must be between 0 and 1")
        threshold = entry.body.get("eventValueThreshold")
        events.append(
            EventWeight(
                kind_name,
                weight,
                None if threshold is None else _number(threshold, where + ".eventValueThreshold"),
            )
        )
    threshold = fields.body.get("eventValueThreshold")
    return TrainingConfig(
        **values,
        events=tuple(events),
        value_threshold=None
        if threshold is None
        else _number(threshold, "solutionConfig.eventValueThreshold"),
        event_type=event_type,
    )


def scheduling_expression(config: dict[str, Any] | None) -> str:
    """The solution's automatic-training rate (Personalize's default: every 7 days)."""
    auto = (config or {}).get("autoTrainingConfig") or {}
    expression = Fields(
        auto, "solutionConfig.autoTrainingConfig.", frozenset({"schedulingExpression"})
    ).string("schedulingExpression", max_len=16, min_len=1)
    if expression is None:
        return "rate(7 days)"
    match = SCHEDULING_EXPRESSION.fullmatch(expression)
    if match is None or not 1 <= int(match["n"]) <= 30:
        raise InvalidInputException(
            "solutionConfig.autoTrainingConfig.schedulingExpression must be rate(<1-30> days)"
        )
    return expression
