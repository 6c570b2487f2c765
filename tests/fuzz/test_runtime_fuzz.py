"""Generated bad input at the runtime operations: always 200 or a Personalize-shaped 4xx, never a 5xx.

CI runs a few hundred cases per operation; `make fuzz` runs many more (FUZZ_EXAMPLES).
"""

from __future__ import annotations

import json
import os
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_personalize.local_api import proxy_event
from tests.utils import campaign_arn, invoke, response_headers

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

OPERATIONS = {
    "get_recommendations": (
        "/recommendations",
        [
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
        ],
    ),
    "get_personalized_ranking": (
        "/personalize-ranking",
        ["campaignArn", "userId", "inputList", "context", "filterArn", "filterValues", "metadataColumns"],
    ),
}
REAL_CAMPAIGNS = [
    campaign_arn(n)
    for n in (
        "demo-user-personalization",
        "demo-related-items",
        "demo-popular-items",
        "demo-personalized-ranking",
    )
]

#: Text with lone UTF-16 surrogates mixed in (botocore sends them as the JSON escape "\\ud800").
invalid_text = st.text(
    alphabet=st.characters(categories=["Cs"]) | st.characters(codec="utf-8"), min_size=1, max_size=40
).filter(lambda text: any("\ud800" <= c <= "\udfff" for c in text))
odd_text = (
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
    | invalid_text
    | st.sampled_from(
        [
            "",
            "\ud800",
            "user-3\udfff",
            "\u0000",
            "\ud7ff" * 10,
            "é" * 257,
            "../../etc/passwd",
            "user-3",
            "item-5",
            "x" * 1001,
            "*",
            '"a","b"',
        ]
    )
)
numbers = st.integers(min_value=-(10**30), max_value=10**30) | st.floats(allow_nan=True, allow_infinity=True)
scalars = st.none() | st.booleans() | numbers | odd_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(odd_text, inner, max_size=6),
    max_leaves=30,
)


def field_values(name: str) -> st.SearchStrategy[Any]:
    """Mostly plausible values for a field, often wrong ones."""
    plausible: dict[str, st.SearchStrategy[Any]] = {
        "campaignArn": st.sampled_from(REAL_CAMPAIGNS) | odd_text,
        "userId": st.sampled_from(["user-3", "user-9", "nobody"]) | odd_text,
        "itemId": st.sampled_from(["item-5", "item-1", "ghost"]) | odd_text,
        "numResults": st.integers(min_value=-5, max_value=600) | numbers,
        "inputList": st.lists(st.sampled_from(["item-1", "item-2", "ghost"]) | odd_text, max_size=600),
        "context": st.dictionaries(
            st.text(string.ascii_letters + "_", min_size=1, max_size=10), odd_text, max_size=3
        ),
    }
    return plausible.get(name, json_values) | json_values


def bodies(fields: list[str]) -> st.SearchStrategy[bytes]:
    known = st.fixed_dictionaries({}, optional={f: field_values(f) for f in fields})
    with_extra = st.tuples(known, st.dictionaries(odd_text, json_values, max_size=2)).map(
        lambda t: {**t[1], **t[0]}
    )

    def encode(value: Any) -> bytes:
        return json.dumps(value, allow_nan=True).encode()

    raw = st.binary(max_size=200) | st.sampled_from(
        [
            b"",
            b"[" * 5000,
            b"{" * 50000,
            b"null",
            b"{}",
            b"1e999",
            b'{"numResults": 1e400}',
            b"\xef\xbb\xbf{}",
        ]
    )
    return (known | with_extra).map(encode) | json_values.map(encode) | raw


def assert_personalize_shaped(result: dict[str, Any]) -> None:
    status = result["statusCode"]
    headers = response_headers(result)
    assert status < 500, result["body"]
    result["body"].encode("utf-8")  # every answer can be written (none echoes invalid Unicode)
    assert headers["x-amzn-RequestId"]
    body = json.loads(result["body"])
    if status == 200:
        assert "recommendationId" in body
    else:
        assert status in (400, 404)
        assert headers["x-amzn-ErrorType"] in ("InvalidInputException", "ResourceNotFoundException")
        assert isinstance(body["message"], str)
        assert body["message"]


@pytest.mark.usefixtures("serving_env")
@pytest.mark.parametrize("function", sorted(OPERATIONS))
def test_generated_bodies_never_break_the_contract(function: str) -> None:
    path, fields = OPERATIONS[function]
    content_types = st.sampled_from(
        ["application/json", "text/plain", "application/x-amz-json-1.1", "", "image/png"]
    )

    tried: list[int] = []

    @FUZZ
    @given(body=bodies(fields), content_type=content_types)
    def run(body: bytes, content_type: str) -> None:
        tried.append(1)
        headers = {"Content-Type": content_type} if content_type else {}
        assert_personalize_shaped(invoke(function, proxy_event("POST", path, headers, body)))

    run()
    # Then hypothesis really tried every case asked for
    print(f"{function}: {len(tried)} cases")
    assert len(tried) >= EXAMPLES
