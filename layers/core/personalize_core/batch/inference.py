"""Scoring a shard's lines: each output line is what the real-time API answers for the same input.

Every line is answered by the serving recipes (``serving.recipes``), the rules GetRecommendations
and GetPersonalizedRanking use. Batching adds fast paths and no rule: the lines' users are fetched
together (``UserVectors.get_many``: one ranged GET per page file, normalisers in one product), and
USER_PERSONALIZATION users whose vector is their stored one and whose line has no filter are scored
together (``batch_user_top_k``: blocked matrix products), which gives what ``recipes.recommend``
gives for each of them. A line that cannot be answered becomes an error line and the shard goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from personalize_core.edge.fields import ID_MAX, Fields
from personalize_core.edge.requests import INPUT_LIST_MAX, filter_values
from personalize_core.errors import InvalidInputException
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.model import SolutionVersionModel
from personalize_core.serving import recipes
from personalize_core.serving.batch_scoring import batch_user_top_k
from personalize_core.serving.filter_store import CompiledFilter
from personalize_core.serving.live import NO_LIVE, Live
from personalize_core.serving.recipes import Operation
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
    #: The recipe answers with scores (an error line then carries an empty ``scores`` too).
    scored: bool = False

    def to_json(self) -> bytes:
        # An error line keeps the output's shape, empty, beside its error, as Personalize writes
        # it: client loops over line["output"]["recommendedItems"] never meet a null.
        output = self.output
        if self.error or output is None:
            output = {"recommendedItems": [], **({"scores": []} if self.scored else {})}
        line = {"input": self.given, "output": output, "error": self.error}
        return dumps(line).encode("utf-8")


def parse_line(raw: bytes, recipe: Recipe) -> Line:
    scored = recipe in (Recipe.USER_PERSONALIZATION, Recipe.PERSONALIZED_RANKING)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Line(given=raw.decode("utf-8", "replace"), error="The line is not valid UTF-8", scored=scored)
    try:
        given = json.loads(text)
    except ValueError:
        return Line(given=text, error="The line is not valid JSON", scored=scored)
    line = Line(given=given, scored=scored)
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


def _ids(model: SolutionVersionModel, indices: np.ndarray) -> list[str]:
    return [model.item_ids[i] for i in indices.tolist()]


def _output(model: SolutionVersionModel, indices: np.ndarray, scores: np.ndarray | None) -> dict[str, Any]:
    output: dict[str, Any] = {"recommendedItems": _ids(model, indices)}
    if scores is not None:
        output["scores"] = scores.tolist()
    return output


def answer_lines(
    model: SolutionVersionModel,
    lines: list[Line],
    k: int,
    job_filter: CompiledFilter | None = None,
    live: Callable[[str | None], Live] | None = None,
) -> None:
    """Fill in every line's ``output`` (or ``error``); lines already in error stay as they are.

    ``live(user_id)``: the user's recent events and the group's PutItems / PutUsers records, as the
    real-time API reads them (``LiveStore.read_many``); a user whose events move their vector is
    scored on their own, like any user the batched product does not cover."""
    recipe = model.manifest.recipe
    operation = Operation.RANKING if recipe is Recipe.PERSONALIZED_RANKING else Operation.RECOMMENDATIONS
    # The lines' users at once: their pages fetched together, their normalisers in one product.
    users = None
    if model.users is not None:
        asked = [line.user_id for line in lines if line.user_id is not None and not line.error]
        users = model.users.get_many(asked)
    batched: list[tuple[int, recipes.UserVector]] = []  # (position in lines, user) scored together
    for position, line in enumerate(lines):
        if line.error:
            continue
        try:
            recipes.check_query(model, operation, line.user_id, line.item_id)
            now = live(line.user_id) if live is not None else NO_LIVE
            allowed = recipes.allowed_items(
                model,
                job_filter,
                line.filter_values,
                line.user_id,
                line.item_id,
                owner="the job's filterArn",
                live=now,
            )
            user = recipes.user_vector(model, line.user_id, {}, now.events, users)
            if recipe is Recipe.PERSONALIZED_RANKING:
                ranking = recipes.rank(model, user, line.item_list, allowed)
                line.output = _output(model, ranking.items, ranking.scores)
                line.output["recommendedItems"] += ranking.unknown
                if ranking.scores is not None:  # aligned with recommendedItems
                    line.output["scores"] += [recipes.UNKNOWN_ITEM_SCORE] * len(ranking.unknown)
            elif (
                recipe is Recipe.USER_PERSONALIZATION
                and user is not None
                and user.row is not None
                and allowed is None
            ):
                batched.append((position, user))
            else:
                line.output = _output(model, *recipes.recommend(model, user, line.item_id).rank(allowed, k))
        except InvalidInputException as exc:
            line.error = exc.message
    if batched and model.item_factors is not None:
        vectors = np.stack([user.vector for _, user in batched])
        given = [user.log_normaliser for _, user in batched]
        normalisers = None if None in given else np.array(given, dtype=np.float64)
        chosen, scores = batch_user_top_k(
            model.item_factors, vectors, k, log_normalisers=normalisers, max_norm=model.item_max_norm
        )
        for at, (position, _) in enumerate(batched):
            lines[position].output = _output(model, chosen[at], scores[at])
