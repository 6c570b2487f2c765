"""Personalize's filter expression language: a tokenizer and parser, and ``filterValues`` parsing.

    filter := expr ("|" expr)*
    expr   := ("INCLUDE"|"EXCLUDE") "ItemID" "WHERE" cond (("AND"|"OR") cond)* ["IF" ucond ("AND" ucond)*]
    cond   := field ("IN"|"NOT IN") "(" value ("," value)* ")"
            | field "IN" "CurrentItem." NAME
            | field ("="|"<"|"<="|">"|">=") (number | $PARAM | "CurrentItem." NAME)
    ucond  := "CurrentUser." NAME (cmp value | ("IN"|"NOT IN") "(" value ("," value)* ")")
    field  := ("Items"|"Interactions") "." NAME

AND binds tighter than OR (as in SQL). Keywords and dataset names are case-insensitive; column
names are kept upper-cased (Personalize's schema field names are matched without case). A syntax
error is a ``FilterSyntaxError`` that names the 1-based character position where parsing stopped.
Nothing here knows about models: ``filters`` evaluates a parsed filter against one.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from personalize_core.errors import InvalidInputException

EXPRESSION_MAX = 2500


class FilterSyntaxError(InvalidInputException):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"Invalid filter expression at position {position}: {message}")
        self.position = position


class Action(enum.StrEnum):
    INCLUDE = "INCLUDE"
    EXCLUDE = "EXCLUDE"


class Dataset(enum.StrEnum):
    ITEMS = "Items"
    INTERACTIONS = "Interactions"


COMPARISONS = ("=", "<", "<=", ">", ">=")
MEMBERSHIP = ("IN", "NOT IN")
EVENT_TYPE = "EVENT_TYPE"


@dataclass(frozen=True, slots=True)
class Value:
    """A literal string, a number, a ``$PARAM`` placeholder, or ``*`` (any event type)."""

    kind: str  # "string" | "number" | "param" | "star"
    text: str
    position: int


@dataclass(frozen=True, slots=True)
class Condition:
    dataset: Dataset
    column: str
    operator: str  # one of MEMBERSHIP or COMPARISONS
    values: tuple[Value, ...]
    #: ``CurrentItem.<column>`` on the right-hand side (related items), instead of values.
    current_item_column: str | None
    position: int

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(v.text for v in self.values if v.kind == "param")


@dataclass(frozen=True, slots=True)
class UserCondition:
    column: str
    operator: str
    values: tuple[Value, ...]
    position: int


@dataclass(frozen=True, slots=True)
class Expression:
    action: Action
    #: OR of AND-groups of conditions.
    clauses: tuple[tuple[Condition, ...], ...]
    user_conditions: tuple[UserCondition, ...]
    position: int

    @property
    def dataset(self) -> Dataset:
        return self.clauses[0][0].dataset

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return tuple(c for clause in self.clauses for c in clause)

    @property
    def params(self) -> tuple[str, ...]:
        names = [p for c in self.conditions for p in c.params]
        names += [v.text for u in self.user_conditions for v in u.values if v.kind == "param"]
        return tuple(dict.fromkeys(names))

    @property
    def uses_current_item(self) -> bool:
        return any(c.current_item_column is not None for c in self.conditions)


@dataclass(frozen=True, slots=True)
class FilterProgram:
    expression: str
    expressions: tuple[Expression, ...]


# -- tokens -----------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<param>\$[A-Za-z0-9_]+)
      | (?P<op><=|>=|=|<|>)
      | (?P<punct>[(),|*])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    position: int  # 1-based

    @property
    def upper(self) -> str:
        return self.text.upper()


def _tokenize(expression: str) -> list[_Token]:
    tokens: list[_Token] = []
    at = 0
    while at < len(expression):
        if expression[at:].strip() == "":
            break
        match = _TOKEN.match(expression, at)
        if match is None or match.lastgroup is None:
            start = at + len(expression[at:]) - len(expression[at:].lstrip())
            raise FilterSyntaxError(f"unexpected character {expression[start]!r}", start + 1)
        kind = match.lastgroup
        tokens.append(_Token(kind, match.group(kind), match.start(kind) + 1))
        at = match.end()
    tokens.append(_Token("end", "", len(expression) + 1))
    return tokens


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


# -- parser -----------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, expression: str) -> None:
        self.tokens = _tokenize(expression)
        self.at = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.at]

    def fail(self, expected: str) -> FilterSyntaxError:
        found = f'"{self.token.text}"' if self.token.kind != "end" else "the end of the expression"
        return FilterSyntaxError(f"expected {expected}, found {found}", self.token.position)

    def keyword(self, *words: str) -> str | None:
        if self.token.kind == "word" and self.token.upper in words:
            word = self.token.upper
            self.at += 1
            return word
        return None

    def expect_keyword(self, word: str) -> None:
        if self.keyword(word) is None:
            raise self.fail(f'"{word}"')

    def punct(self, symbol: str) -> bool:
        if self.token.kind == "punct" and self.token.text == symbol:
            self.at += 1
            return True
        return False

    def expect_punct(self, symbol: str) -> None:
        if not self.punct(symbol):
            raise self.fail(f'"{symbol}"')

    def qualified(self, datasets: dict[str, str], what: str) -> tuple[str, str, int]:
        token = self.token
        prefix, dot, column = token.text.partition(".")
        if token.kind != "word" or not dot or prefix.upper() not in datasets:
            raise self.fail(what)
        self.at += 1
        return datasets[prefix.upper()], column.upper(), token.position

    def parse(self) -> tuple[Expression, ...]:
        expressions = [self.expression()]
        while self.punct("|"):
            expressions.append(self.expression())
        if self.token.kind != "end":
            raise self.fail('"|", "AND", "OR", "IF" or the end of the expression')
        return tuple(expressions)

    def expression(self) -> Expression:
        position = self.token.position
        action = self.keyword("INCLUDE", "EXCLUDE")
        if action is None:
            raise self.fail('"INCLUDE" or "EXCLUDE"')
        if self.keyword("ITEMID") is None:
            raise self.fail('"ItemID"')
        self.expect_keyword("WHERE")
        clauses = [[self.condition()]]
        while (joiner := self.keyword("AND", "OR")) is not None:
            condition = self.condition()
            if joiner == "AND":
                clauses[-1].append(condition)
            else:
                clauses.append([condition])
        datasets = {c.dataset for clause in clauses for c in clause}
        if len(datasets) > 1:
            raise FilterSyntaxError(
                "the conditions of one expression must all use the same dataset "
                "(Items or Interactions); combine datasets with |",
                clauses[-1][-1].position,
            )
        user_conditions: list[UserCondition] = []
        if self.keyword("IF") is not None:
            user_conditions.append(self.user_condition())
            while self.keyword("AND") is not None:
                user_conditions.append(self.user_condition())
        return Expression(Action(action), tuple(tuple(c) for c in clauses), tuple(user_conditions), position)

    def operator(self) -> str:
        if self.token.kind == "op":
            op = self.token.text
            self.at += 1
            return op
        if self.keyword("IN") is not None:
            return "IN"
        if self.keyword("NOT") is not None:
            self.expect_keyword("IN")
            return "NOT IN"
        raise self.fail('"IN", "NOT IN", "=", "<", "<=", ">" or ">="')

    def value_list(self, allow_star: bool) -> tuple[Value, ...]:
        self.expect_punct("(")
        values = [self.value(allow_star, numbers=False)]
        while self.punct(","):
            values.append(self.value(allow_star, numbers=False))
        self.expect_punct(")")
        return tuple(values)

    def value(self, allow_star: bool, numbers: bool) -> Value:
        token = self.token
        if token.kind == "string" and not numbers:
            text = _unquote(token.text)
            value = Value("star" if allow_star and text == "*" else "string", text, token.position)
        elif token.kind == "param":
            value = Value("param", token.text[1:], token.position)
        elif token.kind == "number" and numbers:
            value = Value("number", token.text, token.position)
        elif token.kind == "punct" and token.text == "*" and allow_star:
            value = Value("star", "*", token.position)
        else:
            expected = "a number or a $PARAMETER" if numbers else 'a "quoted string" or a $PARAMETER'
            raise self.fail(expected + (' or "*"' if allow_star else ""))
        self.at += 1
        return value

    def condition(self) -> Condition:
        dataset, column, position = self.qualified(
            {"ITEMS": Dataset.ITEMS, "INTERACTIONS": Dataset.INTERACTIONS},
            "Items.<column> or Interactions.<column>",
        )
        if dataset == Dataset.INTERACTIONS and column != EVENT_TYPE:
            raise FilterSyntaxError(
                f"Interactions conditions can only use EVENT_TYPE, not {column}", position
            )
        operator = self.operator()
        is_event_type = dataset == Dataset.INTERACTIONS
        if operator in MEMBERSHIP:
            if operator == "IN" and self.token.kind == "word" and not is_event_type:
                _, current, _ = self.qualified({"CURRENTITEM": "CurrentItem"}, 'CurrentItem.<column> or "("')
                return Condition(Dataset(dataset), column, operator, (), current, position)
            values = self.value_list(is_event_type)
            _no_parameter_with_not_in(operator, values)
            return Condition(Dataset(dataset), column, operator, values, None, position)
        if is_event_type:
            raise FilterSyntaxError("EVENT_TYPE can only be compared with IN or NOT IN", position)
        if self.token.kind == "word":
            _, current, _ = self.qualified(
                {"CURRENTITEM": "CurrentItem"}, "a number, a $PARAMETER or CurrentItem.<column>"
            )
            return Condition(Dataset(dataset), column, operator, (), current, position)
        return Condition(
            Dataset(dataset), column, operator, (self.value(False, numbers=True),), None, position
        )

    def user_condition(self) -> UserCondition:
        _, column, position = self.qualified({"CURRENTUSER": "CurrentUser"}, "CurrentUser.<column>")
        operator = self.operator()
        if operator in MEMBERSHIP:
            values = self.value_list(False)
            _no_parameter_with_not_in(operator, values)
            return UserCondition(column, operator, values, position)
        value = self.value(False, numbers=True) if self.token.kind != "string" else self.value(False, False)
        if value.kind == "string" and operator != "=":
            raise FilterSyntaxError(f"{operator} needs a number or a $PARAMETER", value.position)
        return UserCondition(column, operator, (value,), position)


def _no_parameter_with_not_in(operator: str, values: tuple[Value, ...]) -> None:
    # Personalize's rule ("you can't use placeholder parameters in a filter expression that uses the
    # NOT IN operator"): the same meaning is IN with the opposite action (EXCLUDE for INCLUDE).
    if operator == "NOT IN":
        for value in values:
            if value.kind == "param":
                raise FilterSyntaxError(
                    f"${value.text} cannot be used with NOT IN (Personalize allows parameters with IN "
                    "only: use IN with the opposite action, EXCLUDE instead of INCLUDE or the reverse)",
                    value.position,
                )


def parse_filter(expression: str) -> FilterProgram:
    """Parse a filter expression; a ``FilterSyntaxError`` (an InvalidInputException) names the position."""
    if not 0 < len(expression) <= EXPRESSION_MAX:
        raise InvalidInputException(f"filterExpression must be 1-{EXPRESSION_MAX} characters")
    return FilterProgram(expression, _Parser(expression).parse())


# -- filterValues -----------------------------------------------------------------------------------

_QUOTED_VALUE = re.compile(r'\s*"((?:[^"\\]|\\.)*)"\s*')


def parse_filter_value(name: str, raw: str) -> tuple[str, ...]:
    """One ``filterValues`` entry: comma-separated values, each in (escaped) double quotes.

    ``"\\"comedy\\",\\"drama\\""`` (the JSON string ``"comedy","drama"``) gives ``("comedy", "drama")``.
    A bare number (``10``) is accepted for numeric comparisons, as Personalize does.
    """
    values: list[str] = []
    at = 0
    if re.fullmatch(r"\s*-?\d+(?:\.\d+)?\s*", raw):
        return (raw.strip(),)
    while True:
        match = _QUOTED_VALUE.match(raw, at)
        if match is None:
            raise InvalidInputException(
                f"filterValues.{name} must be comma-separated values in escaped double quotes, e.g. "
                f'"\\"comedy\\",\\"drama\\""; cannot read it at character {at + 1}'
            )
        values.append(_unquote(f'"{match.group(1)}"'))
        at = match.end()
        if at == len(raw):
            return tuple(values)
        if raw[at] != ",":
            raise InvalidInputException(f"filterValues.{name}: expected a comma at character {at + 1}")
        at += 1
