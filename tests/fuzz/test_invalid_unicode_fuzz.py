"""A lone UTF-16 surrogate in every string field of every operation (runtime and control plane).

The fields come from botocore's own input shapes (every string member, map key and value, and list
member, however deep), so a field added to an operation is covered without touching this file.
Each request holds the surrogate in exactly one place, as botocore sends it (the JSON escape
``\\ud800``); the answer must be a 400 InvalidInputException naming that field, in valid UTF-8.
The generated fuzz (test_runtime_fuzz.py, test_control_plane_fuzz.py) mixes surrogates into its
strings as well; this file is the exhaustive, deterministic part.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest

from lambda_personalize.local_api import proxy_event
from tests.fuzz.test_control_plane_fuzz import OPERATIONS as CONTROL_PLANE_OPERATIONS
from tests.utils import invoke, response_headers

LONE = "\ud800"
SESSION = botocore.session.get_session()
RUNTIME = SESSION.get_service_model("personalize-runtime")
PLANE = SESSION.get_service_model("personalize")
RUNTIME_ROUTES = {
    "GetRecommendations": ("get_recommendations", "/recommendations"),
    "GetPersonalizedRanking": ("get_personalized_ranking", "/personalize-ranking"),
}


def placements(shape: Any, path: str = "", depth: int = 0) -> Iterator[tuple[Any, str]]:
    """(a value holding LONE in one place, the field name an answer should give) for every string
    position of ``shape``."""
    kind = shape.type_name
    if kind == "string":
        yield LONE, path
    elif depth > 4:
        return
    elif kind == "structure":
        for name, member in shape.members.items():
            for value, where in placements(member, f"{path}.{name}" if path else name, depth + 1):
                yield {name: value}, where
    elif kind == "list":
        for value, where in placements(shape.member, f"{path}[0]", depth + 1):
            yield [value], where
    elif kind == "map":
        yield {LONE: _plain(shape.value)}, f"a field name of {path}"
        for value, where in placements(shape.value, f"{path}.key", depth + 1):
            yield {"key": value}, where


def _plain(shape: Any) -> Any:
    return {"string": "x", "structure": {}, "list": [], "map": {}}.get(shape.type_name, 1)


def cases() -> list[tuple[str, str, dict[str, Any], str]]:
    found = []
    for operation, (function, path) in RUNTIME_ROUTES.items():
        for body, field in placements(RUNTIME.operation_model(operation).input_shape):
            found.append((operation, f"{function} {path}", body, field))
    for operation in CONTROL_PLANE_OPERATIONS:
        for body, field in placements(PLANE.operation_model(operation).input_shape):
            found.append((operation, "control_plane /", body, field))
    return found


CASES = cases()


def test_the_cases_reach_every_operation_and_nested_fields() -> None:
    operations = {operation for operation, *_ in CASES}
    assert operations == set(RUNTIME_ROUTES) | set(CONTROL_PLANE_OPERATIONS)
    fields = {field for *_, field in CASES}
    # nested structures, maps (key and value) and lists are all reached
    assert {"promotions[0].filterValues.key", "a field name of context", "inputList[0]"} <= fields
    assert "jobInput.s3DataSource.path" in fields
    assert "campaignConfig.itemExplorationConfig.key" in fields


@pytest.mark.usefixtures("serving_env")  # refused before any S3 or DynamoDB call
@pytest.mark.parametrize(
    ("operation", "route", "body", "field"), CASES, ids=[f"{c[0]}:{c[3]}" for c in CASES]
)
def test_every_string_field_of_every_operation_refuses_a_lone_surrogate(
    operation: str, route: str, body: dict[str, Any], field: str
) -> None:
    function, path = route.split(" ")
    headers = {"X-Amz-Target": f"AmazonPersonalize.{operation}"} if path == "/" else {}
    # When the operation gets a body holding a lone surrogate in this one field (botocore's escape)
    result = invoke(function, proxy_event("POST", path, headers, json.dumps(body).encode()))
    # Then it is a 400 InvalidInputException naming the field, written in valid UTF-8
    text = str(result["body"])
    text.encode("utf-8")
    answer = json.loads(text)
    assert result["statusCode"] == 400, answer
    code = answer.get("__type") or response_headers(result).get("x-amzn-ErrorType")
    assert code == "InvalidInputException", answer
    assert (
        answer["message"]
        == f"{field} is not valid Unicode: it holds an unpaired UTF-16 surrogate (e.g. \\ud800)"
    )
