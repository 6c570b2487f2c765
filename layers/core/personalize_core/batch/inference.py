"""Scoring a shard's lines: each output line is what the real-time API answers for the same input.

USER_PERSONALIZATION scores every known user of the shard at once (``batch_user_top_k``: blocked
matrix products); the other recipes reuse the real-time kernels line by line (their cost is one
pass over the catalog or less). A line that cannot be answered becomes an error line and the
shard goes on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from personalize_core.edge.fields import ID_MAX, Fields
from personalize_core.edge.requests import INPUT_LIST_MAX, filter_values
from personalize_core.errors import InvalidInputException
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.model import SolutionVersionModel
from personalize_core.serving.filter_store import CompiledFilter
from personalize_core.serving.filters import allowed_items as filter_mask
from personalize_core.serving.scoring import (
    batch_user_top_k,
    popular_top_k,
    rank_items,
    related_top_k,
    user_top_k,
)
from personalize_core.text import check_text, dumps

#: What a line of each recipe holds (any line may carry filterValues).
LINE_FIELDS = {
    Recipe.USER_PERSONALIZATION: frozenset({"userId", "filterValues"}),
    Recipe.POPULAR_ITEMS: frozenset({"userId", "filterValues"}),
    Recipe.RELATED_ITEMS: frozenset({"itemId", "filterValues"}),
    Recipe.PERSONALIZED_RANKING: frozenset({"userId", "itemList", "filterValues"}),
}


@dataclass(slots=True)
class Line:
    """One input line: its parsed request, or the error that replaces its answer."""

    given: Any
    user_id: str | None = None
    item_id: str | None = None
    item_list: list[str] = field(default_factory=list)
    filter_values: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    output: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        line = {"input": self.given, "output": None if self.error else self.output, "error": self.error}
        return dumps(line).encode("utf-8")


def parse_line(raw: bytes, recipe: Recipe) -> Line:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Line(given=raw.decode("utf-8", "replace"), error="The line is not valid UTF-8")
    try:
        given = json.loads(text)
    except ValueError:
        return Line(given=text, error="The line is not valid JSON")
    line = Line(given=given)
    try:
        check_text(given)
        fields = Fields(given, "", LINE_FIELDS[recipe])
        if recipe is Recipe.RELATED_ITEMS:
            line.item_id = fields.string("itemId", max_len=ID_MAX, min_len=1, required=True)
        else:
            line.user_id = fields.string("userId", max_len=ID_MAX, min_len=1, required=True)
        if recipe is Recipe.PERSONALIZED_RANKING:
            line.item_list = (
                fields.string_list("itemList", max_items=INPUT_LIST_MAX, item_max=ID_MAX, required=True) or []
            )
            if not line.item_list:
                raise InvalidInputException("itemList must contain at least one item")
        line.filter_values = filter_values(fields)
    except InvalidInputException as exc:
        line.error = exc.message
    return line


def allowed_items(
    model: SolutionVersionModel, job_filter: CompiledFilter | None, line: Line
) -> np.ndarray | None:
    """The items a line may be answered with (bool per item), or None for all of them.

    The one place a filter applies to batch lines: the job's filter with the line's filterValues,
    evaluated exactly as the real-time API evaluates a request's filterArn and filterValues.
    """
    if job_filter is None:
        if line.filter_values:
            raise InvalidInputException("filterValues needs the job's filterArn")
        return None
    where = f"filterArn {job_filter.record.filter_arn}"
    if line.item_id is None and any(e.uses_current_item for e in job_filter.program.expressions):
        raise InvalidInputException(f"{where} uses CurrentItem, which needs an itemId")
    current_item = model.item_index.get(line.item_id) if line.item_id is not None else None
    return filter_mask(model, job_filter.program, line.filter_values, line.user_id, current_item, where)


def _ids(model: SolutionVersionModel, indices: np.ndarray) -> list[str]:
    return [model.item_ids[i] for i in indices.tolist()]


def _popular(model: SolutionVersionModel, k: int, allowed: np.ndarray | None) -> dict[str, Any]:
    return {"recommendedItems": _ids(model, popular_top_k(model.popular_order, k, allowed))}


def answer_lines(
    model: SolutionVersionModel, lines: list[Line], k: int, job_filter: CompiledFilter | None = None
) -> None:
    """Fill in every line's ``output`` (or ``error``); lines already in error stay as they are."""
    recipe = model.manifest.recipe
    # Users scored together: known users without a filter, by position in ``lines``.
    batched: list[int] = []
    for position, line in enumerate(lines):
        if line.error:
            continue
        try:
            allowed = allowed_items(model, job_filter, line)
            if recipe is Recipe.USER_PERSONALIZATION:
                user = model.user_index.get(line.user_id or "")
                if user is None or model.user_factors is None or model.item_factors is None:
                    line.output = _popular(model, k, allowed)  # cold start, as the real-time API
                elif allowed is None:
                    batched.append(position)
                else:
                    chosen, scores = user_top_k(
                        model.item_factors,
                        model.user_factors[user],
                        k,
                        allowed,
                        log_normaliser=model.log_normaliser(user),
                    )
                    line.output = {"recommendedItems": _ids(model, chosen), "scores": scores.tolist()}
            elif recipe is Recipe.RELATED_ITEMS:
                item = model.item_index.get(line.item_id or "")
                if item is None or model.item_factors is None or model.item_norms is None:
                    line.output = _popular(model, k, allowed)
                else:
                    related = related_top_k(model.item_factors, model.item_norms, item, k, allowed)
                    line.output = {"recommendedItems": _ids(model, related)}
            elif recipe is Recipe.POPULAR_ITEMS:
                line.output = _popular(model, k, allowed)
            else:
                line.output = _rank(model, line, allowed)
        except InvalidInputException as exc:
            line.error = exc.message
    if batched and model.user_factors is not None and model.item_factors is not None:
        users = np.array([model.user_index[lines[p].user_id or ""] for p in batched], dtype=np.int64)
        normalisers = None if model.user_log_normalisers is None else model.user_log_normalisers[users]
        chosen, scores = batch_user_top_k(
            model.item_factors, model.user_factors[users], k, log_normalisers=normalisers
        )
        for row, position in enumerate(batched):
            lines[position].output = {
                "recommendedItems": _ids(model, chosen[row]),
                "scores": scores[row].tolist(),
            }


def _rank(model: SolutionVersionModel, line: Line, allowed: np.ndarray | None) -> dict[str, Any]:
    """GetPersonalizedRanking for one line: known items ranked, unknown ones last without a score.

    With a filter, items it excludes are left out, and so are unknown items (they cannot be
    checked against it), as the real-time API does.
    """
    wanted = list(dict.fromkeys(line.item_list))
    known = np.array([model.item_index[i] for i in wanted if i in model.item_index], dtype=np.int64)
    unknown = [i for i in wanted if i not in model.item_index]
    if allowed is not None:
        known, unknown = known[allowed[known]], []
    user = model.user_index.get(line.user_id or "")
    if user is None or model.user_factors is None or model.item_factors is None or known.size == 0:
        by_popularity = known[np.argsort(-model.popularity[known].astype(np.float64), kind="stable")]
        return {"recommendedItems": _ids(model, by_popularity) + unknown}
    ranked, scores = rank_items(model.item_factors, model.user_factors[user], known)
    # scores stay aligned with recommendedItems: items the model does not know have none (null).
    return {
        "recommendedItems": _ids(model, ranked) + unknown,
        "scores": scores.tolist() + [None] * len(unknown),
    }
