"""Generated bad input at every control-plane operation: always 200 or a JSON 1.1 Personalize 4xx.

The fields of each operation come from botocore's own model of Personalize (the shapes a real
client sends), so every operation registered on functions/control_plane/app.py's ``plane`` is
fuzzed with its own fields: mostly plausible values (real ARNs, names, limits' edges), often wrong
ones (types, oversize, odd and invalid unicode, huge numbers, nesting), plus unknown targets, missing targets,
wrong content types and bodies that are not JSON objects at all.

CI runs FUZZ_EXAMPLES // 3 cases per operation (50); `make fuzz` runs many more.
"""

from __future__ import annotations

import json
import os
from typing import Any

import botocore.session
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_personalize.local_api import proxy_event
from personalize_core.control.registry import TARGET_PREFIX
from personalize_core.errors import PersonalizeError
from tests.fuzz.test_runtime_fuzz import invalid_text, json_values, odd_text
from tests.utils import ACCOUNT, REGION, invoke, load_function, response_headers

EXAMPLES = max(1, int(os.environ.get("FUZZ_EXAMPLES", "150")) // 3)
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SERVICE = botocore.session.get_session().get_service_model("personalize")
OPERATIONS = sorted(load_function("control_plane").plane.operations)
ERROR_CODES = {cls.__name__ for cls in PersonalizeError.__subclasses__()} | {"InternalServerError"}
ARN = f"arn:aws:personalize:{REGION}:{ACCOUNT}"
PLAUSIBLE_ARNS = [
    f"{ARN}:campaign/demo-user-personalization",
    f"{ARN}:campaign/fuzzed",
    f"{ARN}:filter/fuzzed",
    f"{ARN}:dataset-group/demo-user-personalization",
    f"{ARN}:solution/demo-popular-items",
    f"{ARN}:solution/demo-batch/v1",
    f"{ARN}:batch-inference-job/fuzzed",
    f"arn:aws:iam::{ACCOUNT}:role/personalize-batch-fuzz",
    f"{ARN}:campaign/../filters/x",
    f"{ARN}:campaign/a/b",
]
PLAUSIBLE_STRINGS = ["fuzzed", "demo-user-personalization", "s3://bucket/in.jsonl", "INCLUDE ItemID"]


def test_every_registered_operation_is_in_botocores_model() -> None:
    # Then the fuzz covers every operation, each with its real input shape
    assert len(OPERATIONS) >= 14
    assert set(OPERATIONS) <= set(SERVICE.operation_names)


def shape_values(shape: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values a real client could send for a botocore shape (within or at its limits)."""
    kind = shape.type_name
    meta = shape.metadata
    if kind == "string":
        if shape.enum:
            return st.sampled_from(shape.enum)
        size = st.text(min_size=meta.get("min", 0), max_size=min(meta.get("max", 64), 300))
        return st.sampled_from(PLAUSIBLE_ARNS + PLAUSIBLE_STRINGS) | size | invalid_text
    if kind in ("integer", "long"):
        return st.integers(min_value=meta.get("min", -(2**31)) - 1, max_value=meta.get("max", 2**31) + 1)
    if kind in ("float", "double"):
        return st.floats(allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "timestamp":
        return st.integers(min_value=0, max_value=2**33)
    if depth > 3:
        return json_values
    if kind == "list":
        return st.lists(shape_values(shape.member, depth + 1), max_size=5)
    if kind == "map":
        return st.dictionaries(
            shape_values(shape.key, depth + 1), shape_values(shape.value, depth + 1), max_size=4
        )
    if kind == "structure":
        return st.fixed_dictionaries(
            {}, optional={name: field_values(member, depth + 1) for name, member in shape.members.items()}
        )
    return json_values


def field_values(shape: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Mostly a value of the field's shape, often anything at all."""
    return shape_values(shape, depth) | shape_values(shape, depth) | json_values


def bodies(operation: str) -> st.SearchStrategy[bytes]:
    members = SERVICE.operation_model(operation).input_shape.members
    known = st.fixed_dictionaries({}, optional={n: field_values(s) for n, s in members.items()})
    with_extra = st.tuples(known, st.dictionaries(odd_text, json_values, min_size=1, max_size=2)).map(
        lambda t: {**t[1], **t[0]}
    )
    oversize = st.sampled_from(sorted(members) or ["name"]).map(
        lambda name: {name: "x" * 100_000} if name != "maxResults" else {name: 10**400}
    )

    def encode(value: Any) -> bytes:
        return json.dumps(value, allow_nan=True).encode()

    raw = st.binary(max_size=200) | st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b'"text"',
            b"{" * 50_000,
            b'{"a":' * 20_000,
            b"[" * 100_000,
            b"1e999",
            b'{"maxResults": 1e400}',
            b'{"maxResults": -0.0}',
            b"\xef\xbb\xbf{}",
            b'{"name": "\\ud800"}',
        ]
    )
    return (known | known | with_extra | oversize).map(encode) | json_values.map(encode) | raw


def targets(operation: str) -> st.SearchStrategy[str | None]:
    wrong = st.sampled_from(
        [
            None,
            "",
            operation,
            f"{TARGET_PREFIX}{operation.lower()}",
            f"{TARGET_PREFIX}NoSuchOperation",
            f"AmazonPersonalizeRuntime.{operation}",
            f"{TARGET_PREFIX}",
        ]
    )
    return st.just(f"{TARGET_PREFIX}{operation}") | st.just(f"{TARGET_PREFIX}{operation}") | wrong | odd_text


def assert_json_1_1_shaped(result: dict[str, Any]) -> None:
    status = result["statusCode"]
    headers = response_headers(result)
    assert status < 500, result["body"]
    assert headers["x-amzn-RequestId"]
    result["body"].encode("utf-8")  # every answer can be written (none echoes invalid Unicode)
    body = json.loads(result["body"])
    assert isinstance(body, dict)
    if status != 200:
        assert status == 400, result
        assert headers["Content-Type"] == "application/x-amz-json-1.1"
        assert body["__type"] in ERROR_CODES, body
        assert isinstance(body["message"], str)
        assert body["message"]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_generated_requests_never_break_the_json_1_1_contract(fuzz_plane: str, operation: str) -> None:
    content_types = st.sampled_from(
        ["application/x-amz-json-1.1", "application/json", "text/plain", "", "multipart/form-data"]
    )

    # Given generated bodies, targets and content types for this operation
    tried: list[int] = []

    @FUZZ
    @given(body=bodies(operation), target=targets(operation), content_type=content_types)
    def run(body: bytes, target: str | None, content_type: str) -> None:
        tried.append(1)
        headers = {"Content-Type": content_type} if content_type else {}
        if target is not None:
            headers["X-Amz-Target"] = target
        # When the control plane gets the request
        result = invoke("control_plane", proxy_event("POST", "/", headers, body))
        # Then the answer is a 200 or a JSON 1.1 Personalize error, never a 5xx
        assert_json_1_1_shaped(result)

    run()
    # Then hypothesis really tried every case asked for
    print(f"{operation}: {len(tried)} cases")
    assert len(tried) >= EXAMPLES
