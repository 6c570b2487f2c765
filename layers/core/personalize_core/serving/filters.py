"""Filters against a model: checking a parsed filter, evaluating it as a numpy mask, and the filter records.

``allowed_items`` is the one entry point the serving functions and batch jobs use: it turns a
parsed filter, the request's ``filterValues``, its user and (for related items) its current item
into a bool mask over the model's items, or None when nothing restricts the answer.
Semantics: union of the active INCLUDE expressions (everything when there is none) minus the
union of the active EXCLUDE expressions. An INCLUDE whose parameter is missing is an
InvalidInputException; an EXCLUDE whose parameter is missing, or any expression whose ``IF`` does
not hold for the user, is skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from personalize_core.errors import (
    InvalidInputException,
)
from personalize_core.modelstore.attributes import (
    RECENT_PER_EVENT_TYPE,
    Column,
    DataSchema,
    Table,
    schema_of_extras,
)
from personalize_core.serving.filter_language import (
    COMPARISONS,
    Action,
    Condition,
    Dataset,
    Expression,
    FilterProgram,
    UserCondition,
    Value,
    parse_filter_value,
)
from personalize_core.serving.overlay import MetadataOverlay, record_number

if TYPE_CHECKING:
    from personalize_core.modelstore.model import SolutionVersionModel
    from personalize_core.serving.live import Live


# -- checking a filter against what a model holds ---------------------------------------------------


def check_filter(program: FilterProgram, schema: DataSchema, where: str) -> None:
    """Every column the filter names exists in ``schema`` (numeric where compared); else InvalidInput."""

    def fail(message: str, position: int) -> InvalidInputException:
        return InvalidInputException(f"Invalid filter expression at position {position}: {message} ({where})")

    def column(columns: dict[str, bool], dataset: str, name: str, numeric: bool, position: int) -> None:
        if name not in columns:
            known = ", ".join(sorted(columns)) or "none"
            raise fail(
                f"{dataset}.{name} is not a column of the model (its {dataset} columns: {known})", position
            )
        if numeric and not columns[name]:
            raise fail(f"{dataset}.{name} is not numeric, so it cannot be compared with <, >, =", position)

    for expression in program.expressions:
        for condition in expression.conditions:
            numeric = condition.operator in COMPARISONS
            if condition.dataset is Dataset.INTERACTIONS:
                if not schema.has_interactions:
                    raise fail(
                        "Interactions filters need the model's recent interactions "
                        "(publish with an Interactions CSV holding USER_ID, ITEM_ID, TIMESTAMP)",
                        condition.position,
                    )
                continue
            column(schema.item_columns, "Items", condition.column, numeric, condition.position)
            if condition.current_item_column is not None:
                column(
                    schema.item_columns,
                    "CurrentItem",
                    condition.current_item_column,
                    numeric,
                    condition.position,
                )
        for user_condition in expression.user_conditions:
            column(
                schema.user_columns,
                "CurrentUser",
                user_condition.column,
                user_condition.operator in COMPARISONS and user_condition.operator != "=",
                user_condition.position,
            )


# -- evaluation ------------------------------------------------------------------------------------

_STATIC_CACHE_SIZE = 64
_static_masks: dict[tuple[str, str, int, int, str], np.ndarray] = {}
_static_lock = threading.Lock()


def _compare(values: np.ndarray, operator: str, other: float | np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        match operator:
            case "=":
                return np.asarray(values == other)
            case "<":
                return np.asarray(values < other)
            case "<=":
                return np.asarray(values <= other)
            case ">":
                return np.asarray(values > other)
            case _:
                return np.asarray(values >= other)


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidInputException(f"{what} must be a number, not {text[:60]!r}") from None


class _Evaluation:
    def __init__(
        self,
        model: SolutionVersionModel,
        filter_values: Mapping[str, tuple[str, ...]],
        user_id: str | None,
        current_item: int | None,
        where: str,
        live: Live | None = None,
    ) -> None:
        self.model = model
        self.values = filter_values
        self.user_id = user_id
        self.current_item = current_item
        self.where = where
        self.rows = model.num_items
        self.live = live
        self.overlay: MetadataOverlay | None = live.overlay if live is not None else None

    def strings(self, values: tuple[Value, ...]) -> list[str] | None:
        """The literal strings of a value list; None stands for ``*`` (anything)."""
        out: list[str] = []
        for value in values:
            if value.kind == "star":
                return None
            texts = self.values[value.text] if value.kind == "param" else (value.text,)
            if "*" in texts and value.kind == "param":
                return None
            out.extend(texts)
        return out

    def item_column(self, name: str, dataset: str = "Items") -> Column:
        table = self.model.extras.items
        found = table.columns.get(name) if table else None
        if found is None:
            raise InvalidInputException(
                f"filter {self.where} names {dataset}.{name}, which solution version {self.model.arn} lacks"
            )
        return found

    def condition(self, condition: Condition) -> np.ndarray:
        if condition.dataset is Dataset.INTERACTIONS:
            mask = np.zeros(self.rows, dtype=bool)
            if self.user_id is not None:
                event_types = self.strings(condition.values)
                mask[self.interaction_rows(event_types, condition.operator == "NOT IN")] = True
            return mask
        column = self.item_column(condition.column)
        if condition.current_item_column is not None:
            return self.current_item_condition(condition, column)
        if condition.operator in COMPARISONS:
            value = condition.values[0]
            texts = self.values[value.text] if value.kind == "param" else (value.text,)
            if len(texts) != 1:
                raise InvalidInputException(
                    f"filterValues.{value.text} must be one number for {condition.column}"
                )
            assert column.numbers is not None  # checked at CreateFilter and against the model
            bound, operator = _number(texts[0], f"filterValues.{value.text}"), condition.operator
            compared = _compare(column.numbers, operator, bound)
            if self.overlay is None:
                return compared
            return self.overlay.patch(
                compared, column, lambda _, n: bool(_compare(np.array([n]), operator, bound)[0])
            )
        wanted = self.strings(condition.values) or []
        negate = condition.operator == "NOT IN"
        mask = column.rows_with_any(wanted, self.rows)
        mask = ~mask if negate else mask
        if self.overlay is None:
            return mask
        chosen = set(wanted)
        return self.overlay.patch(mask, column, lambda values, _: bool(chosen.intersection(values)) != negate)

    def interaction_rows(self, event_types: list[str] | None, negate: bool) -> np.ndarray:
        """Items of the user's 100 most recent interactions per event type of ``event_types`` (None:
        any type; ``negate``: the other types): the live events first, then the version's own."""
        stored = self.model.extras.interactions
        live = self.live
        if stored is None and (live is None or not live.tracked):
            raise InvalidInputException(
                f"filter {self.where} uses Interactions, but solution version {self.model.arn} "
                "was published without recent interactions"
            )
        assert self.user_id is not None
        if live is None or not live.events:
            assert stored is not None
            return stored.items_of(self.user_id, event_types, negate)
        wanted = None if event_types is None else {t.lower() for t in event_types}

        def selected(kind: str) -> bool:
            return (not negate) if wanted is None else (kind in wanted) != negate

        index = self.model.item_index
        rows: list[int] = []
        taken: dict[str, int] = {}
        for event in live.events:  # newest first, at most 100 per type
            kind = event.event_type.lower()
            if selected(kind):
                taken[kind] = taken.get(kind, 0) + 1
                row = index.get(event.item_id) if event.item_id is not None else None
                if row is not None:
                    rows.append(row)
        found = [np.asarray(rows, dtype=np.int64)]
        user = stored.user_index.get(self.user_id) if stored is not None else None
        if stored is not None and user is not None:
            start, end = int(stored.indptr[user]), int(stored.indptr[user + 1])
            items, events = stored.items[start:end], stored.events[start:end]
            for code in np.unique(events).tolist():
                kind = stored.event_types[code]
                if selected(kind):
                    room = max(0, RECENT_PER_EVENT_TYPE - taken.get(kind, 0))
                    found.append(items[events == code][:room].astype(np.int64))
        return np.concatenate(found)

    def current_item_condition(self, condition: Condition, column: Column) -> np.ndarray:
        assert condition.current_item_column is not None
        current = self.item_column(condition.current_item_column, "CurrentItem")
        if self.current_item is None:
            return np.zeros(self.rows, dtype=bool)
        overlay, at = self.overlay, self.current_item
        if condition.operator in COMPARISONS:
            assert column.numbers is not None
            assert current.numbers is not None
            operator = condition.operator
            bound = overlay.item_number(at, current) if overlay else float(current.numbers[at])
            compared = _compare(column.numbers, operator, bound)
            if overlay is None:
                return compared
            return overlay.patch(
                compared, column, lambda _, n: bool(_compare(np.array([n]), operator, bound)[0])
            )
        values = overlay.item_values(at, current) if overlay else current.values_of(at)
        negate = condition.operator == "NOT IN"
        mask = column.rows_with_any(values, self.rows)
        mask = ~mask if negate else mask
        if overlay is None:
            return mask
        chosen = set(values)
        return overlay.patch(mask, column, lambda held, _: bool(chosen.intersection(held)) != negate)

    def static(self, condition: Condition) -> bool:
        return (
            condition.dataset is Dataset.ITEMS
            and not condition.params
            and condition.current_item_column is None
        )

    def cached_condition(self, program_key: str, index: int, condition: Condition) -> np.ndarray:
        # Conditions without parameters or per-request inputs give the same mask for every request
        # to a model: computed once per (filter, model).
        if not self.static(condition):
            return self.condition(condition)
        overlay = self.overlay.key if self.overlay is not None and self.overlay.items else ""
        key = (program_key, self.model.arn, id(self.model), index, overlay)
        with _static_lock:
            mask = _static_masks.get(key)
        if mask is None:
            mask = self.condition(condition)
            mask.setflags(write=False)
            with _static_lock:
                if len(_static_masks) >= _STATIC_CACHE_SIZE:
                    _static_masks.pop(next(iter(_static_masks)))
                _static_masks[key] = mask
        return mask

    def user_holds(self, conditions: tuple[UserCondition, ...]) -> bool:
        if not conditions:
            return True
        table: Table | None = self.model.extras.users
        record = self.overlay.users.get(self.user_id) if self.overlay and self.user_id is not None else None
        row = table.index.get(self.user_id) if table and table.index and self.user_id is not None else None
        if table is None or (row is None and record is None):
            return False
        for condition in conditions:
            column = table.columns.get(condition.column)
            if column is None:
                raise InvalidInputException(
                    f"filter {self.where} names CurrentUser.{condition.column}, "
                    f"which solution version {self.model.arn} lacks"
                )
            if record is not None:  # a PutUsers record replaces the user's row
                value = record.get(column.name, "")
                held, number = (value.split("|") if value else []), record_number(value)
            else:
                assert row is not None
                held = column.values_of(row)
                number = float(column.numbers[row]) if column.numbers is not None else float("nan")
            if not self.user_condition(condition, held, number):
                return False
        return True

    def user_condition(self, condition: UserCondition, held: list[str], number: float) -> bool:
        """A CurrentUser condition on the user's values (tokens) and number (NaN: none)."""
        if condition.operator in ("IN", "NOT IN"):
            wanted = set(self.strings(condition.values) or [])
            hit = bool(wanted.intersection(held))
            return hit if condition.operator == "IN" else not hit
        value = condition.values[0]
        texts = self.values[value.text] if value.kind == "param" else (value.text,)
        if condition.operator == "=" and value.kind == "string":
            return texts[0] in held
        if np.isnan(number):
            return False
        return bool(_compare(np.array([number]), condition.operator, _number(texts[0], "value"))[0])


def allowed_items(
    model: SolutionVersionModel,
    program: FilterProgram,
    filter_values: Mapping[str, str],
    user_id: str | None,
    current_item: int | None = None,
    where: str = "",
    live: Live | None = None,
) -> np.ndarray | None:
    """The items a filter lets through, as a bool mask over the model's items; None = all of them.

    ``current_item`` is the item index of a RELATED_ITEMS request (for ``CurrentItem.<column>``);
    ``live``: the user's recent events and the group's PutItems / PutUsers records.
    """
    where = where or "filter"
    parsed = {name: parse_filter_value(name, raw) for name, raw in filter_values.items()}
    evaluation = _Evaluation(model, parsed, user_id, current_item, where, live)
    include: np.ndarray | None = None
    exclude: np.ndarray | None = None
    index = 0
    for expression in program.expressions:
        start, index = index, index + len(expression.conditions)
        missing = [p for p in expression.params if p not in parsed]
        if missing:
            if expression.action is Action.INCLUDE:
                raise InvalidInputException(
                    f"filterValues has no value for ${missing[0]}, which {where} needs (INCLUDE expression)"
                )
            continue  # an EXCLUDE without its values is not applied
        if not evaluation.user_holds(expression.user_conditions):
            continue
        mask = _expression_mask(evaluation, program.expression, start, expression)
        if expression.action is Action.INCLUDE:
            include = mask if include is None else include | mask
        else:
            exclude = mask if exclude is None else exclude | mask
    if include is None and exclude is None:
        return None
    allowed = include.copy() if include is not None else np.ones(model.num_items, dtype=bool)
    if exclude is not None:
        allowed &= ~exclude
    return allowed


def _expression_mask(
    evaluation: _Evaluation, program_key: str, start: int, expression: Expression
) -> np.ndarray:
    result: np.ndarray | None = None
    index = start
    for clause in expression.clauses:
        clause_mask: np.ndarray | None = None
        for condition in clause:
            mask = evaluation.cached_condition(program_key, index, condition)
            index += 1
            clause_mask = (
                mask.copy() if clause_mask is None else np.logical_and(clause_mask, mask, out=clause_mask)
            )
        assert clause_mask is not None
        result = clause_mask if result is None else np.logical_or(result, clause_mask, out=result)
    assert result is not None
    return result


def check_filter_for_model(program: FilterProgram, model: SolutionVersionModel, where: str) -> None:
    check_filter(program, schema_of_extras(model.extras), where)
