"""The control plane's dispatcher, through an unchanged boto3 ``personalize`` client (JSON 1.1)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambda_personalize.local_api import proxy_event
from tests.utils import invoke, load_function, response_headers


def test_an_unregistered_operation_is_unknown(personalize: Any) -> None:
    with pytest.raises(ClientError) as caught:
        personalize.describe_algorithm(algorithmArn="arn:aws:personalize:::algorithm/aws-hrnn")
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize("body", [b"{oops", b"[]", b"\xff"])
def test_malformed_bodies_are_json_1_1_invalid_input(body: bytes) -> None:
    # Given a target with an operation behind it, and a body that is not a JSON object
    headers = {"X-Amz-Target": "AmazonPersonalize.ListFilters", "Content-Type": "application/x-amz-json-1.1"}
    assert "ListFilters" in load_function("control_plane").plane.operations
    result = invoke("control_plane", proxy_event("POST", "/", headers, body))
    # Then the answer is a JSON 1.1 InvalidInputException
    assert result["statusCode"] == 400
    assert json.loads(result["body"])["__type"] == "InvalidInputException"
    assert response_headers(result)["Content-Type"] == "application/x-amz-json-1.1"
