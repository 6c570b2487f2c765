"""The filter expression parser and Personalize's filterValues format."""

from __future__ import annotations

import pytest

from personalize_core.errors import InvalidInputException
from personalize_core.serving.filter_language import (
    Action,
    Dataset,
    FilterSyntaxError,
    parse_filter,
    parse_filter_value,
)


def test_every_form_parses() -> None:
    # Given an expression using every construct of the grammar
    expression = (
        'INCLUDE ItemID WHERE Items.GENRE IN ("comedy", $GENRES) AND Items.PRICE <= 10.5 '
        "OR Items.PRICE > CurrentItem.PRICE IF CurrentUser.AGE >= 18 AND CurrentUser.TIER IN ($TIER)"
        ' | exclude itemid where interactions.event_type in ("*") '
        '| EXCLUDE ItemID WHERE Items.BRAND IN CurrentItem.BRAND AND Items.COLOR NOT IN ("red")'
    )
    # When it is parsed
    program = parse_filter(expression)
    # Then AND binds tighter than OR, and each part is what was written
    include, interactions, related = program.expressions
    assert include.action is Action.INCLUDE
    assert [[c.column for c in clause] for clause in include.clauses] == [["GENRE", "PRICE"], ["PRICE"]]
    assert include.params == ("GENRES", "TIER")
    assert include.clauses[1][0].current_item_column == "PRICE"
    assert [u.operator for u in include.user_conditions] == [">=", "IN"]
    assert interactions.dataset is Dataset.INTERACTIONS
    assert interactions.action is Action.EXCLUDE
    assert interactions.conditions[0].values[0].kind == "star"
    assert related.uses_current_item
    assert related.conditions[1].operator == "NOT IN"


@pytest.mark.parametrize(
    ("expression", "position"),
    [
        ("INCLUDE ItemID WHERE Items.X NOT IN ($P)", 38),
        ('EXCLUDE ItemID WHERE Items.X NOT IN ("a", $P)', 43),
        ("EXCLUDE ItemID WHERE Interactions.EVENT_TYPE NOT IN ($TYPES)", 54),
        ('INCLUDE ItemID WHERE Items.X IN ("a") IF CurrentUser.TIER NOT IN ($T)', 67),
    ],
)
def test_a_parameter_with_not_in_is_refused(expression: str, position: int) -> None:
    # Personalize's guide: placeholder parameters cannot be used with NOT IN (use IN with the
    # opposite action instead)
    with pytest.raises(FilterSyntaxError, match=r"cannot be used with NOT IN") as caught:
        parse_filter(expression)
    assert caught.value.position == position
    # ... while the same parameter with IN is accepted
    parse_filter(expression.replace("NOT IN", "IN"))


@pytest.mark.parametrize(
    ("expression", "position", "expected"),
    [
        ('INCLUDE ItemID WERE Items.GENRE IN ("a")', 16, '"WHERE"'),
        ('INCLUDE ItemID WHERE Items.GENRE IS ("a")', 34, '"IN"'),
        ("INCLUDE ItemID WHERE Items.GENRE IN (comedy)", 38, "quoted string"),
        ('INCLUDE ItemID WHERE Items.GENRE IN ("a"', 41, '")"'),
        ('INCLUDE ItemID WHERE Items.GENRE IN ("a") | ', 45, "INCLUDE"),
        ('INCLUDE ItemID WHERE Items.PRICE < "10"', 36, "number"),
        ('INCLUDE ItemID WHERE Items.GENRE IN ("*")x', 42, "end of the expression"),
        ("INCLUDE ItemID WHERE Items.GENRE IN (*)", 38, "quoted string"),
        ('INCLUDE ItemID WHERE Interactions.ITEM_ID IN ("a")', 22, "EVENT_TYPE"),
        ('INCLUDE ItemID WHERE Items.A IN ("a") AND Interactions.EVENT_TYPE IN ("b")', 43, "same dataset"),
        ('INCLUDE ItemID WHERE Items.A IN ("a") ; EXCLUDE', 39, "unexpected character"),
    ],
)
def test_syntax_errors_name_their_position(expression: str, position: int, expected: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter(expression)
    assert caught.value.position == position
    assert f"position {position}" in caught.value.message
    assert expected in caught.value.message


def test_expression_length_limits() -> None:
    with pytest.raises(InvalidInputException, match="1-2500"):
        parse_filter("")
    with pytest.raises(InvalidInputException, match="1-2500"):
        parse_filter('INCLUDE ItemID WHERE Items.A IN ("' + "x" * 2500 + '")')


@pytest.mark.parametrize(
    ("raw", "values"),
    [
        ('"comedy"', ("comedy",)),
        ('"comedy","drama"', ("comedy", "drama")),
        ('"comedy" , "drama" ', ("comedy", "drama")),
        ('"say \\"hi\\"","a,b"', ('say "hi"', "a,b")),
        ("10", ("10",)),
        ('"10.5"', ("10.5",)),
    ],
)
def test_filter_values_are_quoted_and_comma_separated(raw: str, values: tuple[str, ...]) -> None:
    assert parse_filter_value("P", raw) == values


@pytest.mark.parametrize("raw", ["comedy", '"comedy",', '"comedy" "drama"', '"open', ""])
def test_malformed_filter_values_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInputException, match=r"filterValues\.P"):
        parse_filter_value("P", raw)
