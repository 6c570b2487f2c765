"""What each recipe answers for one query: the one set of rules that GetRecommendations,
GetPersonalizedRanking and batch inference all call.

- ``check_query`` says which operation serves a recipe and which ids it needs;
- ``user_vector`` turns a user (their recent events, and a request's context) into the vector that
  scores them: the stored row, a fold-in of their events (serving/foldin.py), or the cold vector;
- ``allowed_items`` turns a filter and its values into an item mask;
- ``recommend`` answers GetRecommendations' recipes (USER_PERSONALIZATION, RELATED_ITEMS,
  POPULAR_ITEMS) for a mask and a count;
- ``rank`` answers PERSONALIZED_RANKING for an input list.

Batch inference scores many known users with one matrix product (``batch_user_top_k``); it takes
that path only for the users whose ``user_vector`` is their stored row, which is the same vector
and normaliser ``recommend`` would use, so the answers are the same by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from personalize_core.errors import InvalidInputException
from personalize_core.modelstore.layout import DEFAULT_FOLD_IN, Recipe
from personalize_core.modelstore.model import SolutionVersionModel
from personalize_core.modelstore.users import StoredUser
from personalize_core.serving.foldin import confidences, fold_in
from personalize_core.serving.related import co_occurring_items
from personalize_core.serving.scoring import popular_top_k, rank_items, related_top_k, user_top_k

if TYPE_CHECKING:  # filters are imported by the first query that names one, not by every cold start
    from personalize_core.events.items import RecentEvent
    from personalize_core.serving.filter_store import CompiledFilter
    from personalize_core.serving.live import Live

#: (item indices, scores or None): the best items of a mask, for a count.
Ranker = Callable[[np.ndarray | None, int], tuple[np.ndarray, np.ndarray | None]]
#: Personalize's reason for a placeholder popular item: it has no relevance score for the query.
POPULAR_REASON = "Popular item"


class Operation:
    """The runtime operations, as the errors name them."""

    RECOMMENDATIONS = "GetRecommendations"
    RANKING = "GetPersonalizedRanking"


def check_query(
    model: SolutionVersionModel, operation: str, user_id: str | None, item_id: str | None
) -> None:
    """The recipe answers ``operation``, and the query has the id it needs."""
    recipe, arn = model.manifest.recipe, model.arn
    if (recipe is Recipe.PERSONALIZED_RANKING) != (operation == Operation.RANKING):
        serves = Operation.RANKING if recipe is Recipe.PERSONALIZED_RANKING else Operation.RECOMMENDATIONS
        raise InvalidInputException(
            f"Solution version {arn} is a {recipe.value} solution, which answers {serves}, not {operation}"
        )
    if recipe in (Recipe.USER_PERSONALIZATION, Recipe.PERSONALIZED_RANKING) and user_id is None:
        raise InvalidInputException(f"userId is required for a {recipe.value} campaign")
    if recipe is Recipe.RELATED_ITEMS and item_id is None:
        raise InvalidInputException("itemId is required for a RELATED_ITEMS campaign")


# -- users ------------------------------------------------------------------------------------------


class UserLookup(Protocol):
    """Where ``user_vector`` finds stored users: ``model.users``, or a batch's prefetched ones."""

    def get(self, user_id: str, /) -> StoredUser | None: ...


class UserVector(NamedTuple):
    #: The vector that scores the user: the stored float32 row, the cold-user vector (float64), or
    #: float64 when context moved either.
    vector: np.ndarray
    #: log Σ_j exp(vector·j) over the catalog, when known for this vector (stored, or computed on
    #: the user's first use and cached with the vector).
    log_normaliser: float | None
    #: The user's row in the version's user list, when ``vector`` is exactly their stored vector.
    row: int | None = None
    #: The model does not know the user: the cold-user vector scores them.
    cold: bool = False


def context_shift(model: SolutionVersionModel, context: Mapping[str, str]) -> np.ndarray | None:
    """The sum of the vectors the model publishes for the request's (field, value) pairs, in float64."""
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
    shift: np.ndarray = declared.vectors[rows].astype(np.float64).sum(axis=0)
    return shift


def user_vector(
    model: SolutionVersionModel,
    user_id: str | None,
    context: Mapping[str, str],
    events: Sequence[RecentEvent] = (),
    users: UserLookup | None = None,
) -> UserVector | None:
    """The vector that scores ``user_id`` (None: the recipe scores no users).

    - A user the model knows: their stored vector, from ``model.users`` (a cache hit, or one ranged
      GET of the user's page: modelstore/users.py) or from ``users`` (the same users, fetched ahead
      for a batch); moved by their ``events`` received after the version was trained (folded in
      with the stored vector as the prior, serving/foldin.py).
    - A user (or a session passed as userId) the model does not know, with events: a vector folded
      in from the events against the version's item factors.
    - Unknown, without events the version can use: the version's cold-user vector (the mean user
      vector), so every USER_PERSONALIZATION and PERSONALIZED_RANKING answer carries scores, as
      Personalize's do.
    Context adds its vectors to the user's, in float64 (the scorer keeps that precision); the stored
    normaliser then no longer applies, nor for a folded vector: the scorer computes the vector's own.
    """
    shift = context_shift(model, context)  # checked for every request, known user or not
    if model.item_factors is None:
        return None
    lookup = users if users is not None else model.users
    # The one place a stored user vector is read (the fold-in's prior too).
    found = lookup.get(user_id) if lookup is not None and user_id is not None else None
    stored = found.vector if found is not None else None
    folded = _folded(model, stored, events) if events else None
    if folded is not None:
        return UserVector(folded + shift if shift is not None else folded, None, cold=stored is None)
    if found is not None:
        if shift is None:
            return UserVector(found.vector, found.log_normaliser, found.row)
        return UserVector(found.vector.astype(np.float64) + shift, None)
    if model.cold_user_vector is None:
        return None
    if shift is None:
        return UserVector(model.cold_user_vector, model.cold_user_log_normaliser, cold=True)
    return UserVector(model.cold_user_vector + shift, None, cold=True)


def _folded(
    model: SolutionVersionModel, stored: np.ndarray | None, events: Sequence[RecentEvent]
) -> np.ndarray | None:
    """The user's vector folded in from ``events`` against the item factors (a known user's, with
    their ``stored`` vector as the prior, from the events received after the version was trained),
    or None when no event names an item the version can use."""
    assert model.item_factors is not None
    rules = model.manifest.fold_in or DEFAULT_FOLD_IN
    since = model.manifest.created_at if stored is not None else None
    rows, confidence = confidences(events, model.item_index, rules, since)
    if rows.size == 0:
        return None
    return fold_in(model.item_factors, model.item_gram(), rows, confidence, rules.regularization, stored)


# -- filters ----------------------------------------------------------------------------------------


def allowed_items(
    model: SolutionVersionModel,
    compiled: CompiledFilter | None,
    filter_values: Mapping[str, str],
    user_id: str | None,
    item_id: str | None,
    field: str = "filterArn",
    owner: str = "a filterArn",
    live: Live | None = None,
) -> np.ndarray | None:
    """The items a query may be answered with (bool per item), or None for all of them.

    ``compiled`` is the filter the query names in ``field`` (None: no filter; then filterValues
    need ``owner``). Interactions filters read ``user_id``'s recent interactions: the version's and
    ``live``'s events; Items and CurrentUser conditions read ``live``'s PutItems / PutUsers records
    over the version's metadata. ``CurrentItem`` needs the query's ``item_id``.
    """
    if compiled is None:
        if filter_values:
            raise InvalidInputException(f"{field.replace('filterArn', 'filterValues')} needs {owner}")
        return None
    from personalize_core.serving.filters import allowed_items as filter_mask  # noqa: PLC0415

    where = f"{field} {compiled.record.filter_arn}"
    compiled.record.check_applies_to(model.manifest, where)
    if item_id is None and any(e.uses_current_item for e in compiled.program.expressions):
        raise InvalidInputException(f"{where} uses CurrentItem, which needs an itemId")
    current_item = model.item_index.get(item_id) if item_id is not None else None
    return filter_mask(model, compiled.program, filter_values, user_id, current_item, where, live)


# -- GetRecommendations' recipes -------------------------------------------------------------------


class Recommender(NamedTuple):
    rank: Ranker
    #: The reason every item it ranks carries (Personalize's PredictedItem.reason), if any.
    reason: str | None = None


def recommend(model: SolutionVersionModel, user: UserVector | None, item_id: str | None) -> Recommender:
    """The ranker of a GetRecommendations query: by score for a user (USER_PERSONALIZATION; the
    cold-user vector scores unknown users), by similarity to a known item (RELATED_ITEMS: item-item
    co-occurrence where the version has it, else the item factors' cosine),
    else by popularity, without scores (POPULAR_ITEMS; and RELATED_ITEMS for an item the model
    does not know, whose popular items are placeholders, as Personalize marks them)."""
    recipe = model.manifest.recipe
    if recipe is Recipe.USER_PERSONALIZATION and user is not None and model.item_factors is not None:
        items = model.item_factors

        def by_score(allowed: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray | None]:
            return user_top_k(
                items,
                user.vector,
                k,
                allowed,
                log_normaliser=user.log_normaliser,
                max_norm=model.item_max_norm,
            )

        return Recommender(by_score)
    item = model.item_index.get(item_id) if recipe is Recipe.RELATED_ITEMS and item_id is not None else None
    co = model.extras.co_occurrence
    if item is not None and co is not None:  # a trained version where co-occurrence measured better

        def by_co_occurrence(allowed: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray | None]:
            return co_occurring_items(co, model.popular_order, item, k, allowed), None

        return Recommender(by_co_occurrence)
    if item is not None and model.item_factors is not None and model.item_norms is not None:
        factors, norms = model.item_factors, model.item_norms

        def by_similarity(allowed: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray | None]:
            return related_top_k(factors, norms, item, k, allowed), None

        return Recommender(by_similarity)

    def by_popularity(allowed: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray | None]:
        return popular_top_k(model.popular_order, k, allowed), None

    return Recommender(by_popularity, POPULAR_REASON if recipe is not Recipe.POPULAR_ITEMS else None)


# -- GetPersonalizedRanking ------------------------------------------------------------------------


#: The score of an input item the model does not know (Personalize's guide: "If an item wasn't
#: present during the latest training, it receives a score of 0").
UNKNOWN_ITEM_SCORE = 0.0


class Ranking(NamedTuple):
    #: Known items of the input list, best first.
    items: np.ndarray
    #: Their scores (a softmax over the input list), or None when the user cannot be scored.
    scores: np.ndarray | None
    #: Input ids the model does not know, in input order: they go last, scored UNKNOWN_ITEM_SCORE.
    unknown: list[str]


def rank(
    model: SolutionVersionModel,
    user: UserVector | None,
    input_list: Sequence[str],
    allowed: np.ndarray | None,
) -> Ranking:
    """A user's order of ``input_list`` (an item listed twice is ranked once, where it first appears).

    The scores are a softmax over every known item of the input list, as Personalize's guide gives
    the formula ("identical to GetRecommendations, except that it only considers the input items");
    a filter then removes items from the answer without renormalising, as it does for
    GetRecommendations' catalog-wide softmax. Items the model does not know go last with a score of
    0 (the guide's rule); with a filter they are left out (they cannot be checked against it).
    """
    wanted = list(dict.fromkeys(input_list))
    index = model.item_index
    known = np.array([index[i] for i in wanted if i in index], dtype=np.int64)
    unknown = [i for i in wanted if i not in index] if allowed is None else []
    scores: np.ndarray | None = None
    if user is None or model.item_factors is None or known.size == 0:
        # The cold start: the known items by popularity (no vector to score them with).
        ranked = known[np.argsort(-model.popularity[known].astype(np.float64), kind="stable")]
    else:
        ranked, scores = rank_items(model.item_factors, user.vector, known)
    if allowed is not None:
        keep = allowed[ranked]
        ranked = ranked[keep]
        scores = scores[keep] if scores is not None else None
    return Ranking(ranked, scores, unknown)
