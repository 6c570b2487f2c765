"""The HTTP edge: routing an API Gateway proxy event, and every failure as a Personalize error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambda_personalize.local_api import proxy_event
from personalize_core.edge import api
from personalize_core.errors import ResourceNotFoundException


def make_app(json_1_1: bool = False) -> api.RestApp:
    app = api.create_app(json_1_1)

    @app.post("/echo")
    def echo() -> api.Response:
        body = api.json_body(app)
        if body.get("missing"):
            raise ResourceNotFoundException("no such thing")
        if body.get("crash"):
            raise RuntimeError("a bug")
        return api.respond(app, 200, {"body": body, "target": app.current_event.header("X-Amz-Target")})

    return app


def call(app: api.RestApp, event: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    result = app.resolve(event)
    assert result["isBase64Encoded"] is False
    return result["statusCode"], result["headers"], json.loads(result["body"])


def test_a_route_gets_its_body_and_headers_in_any_case() -> None:
    # Given an event whose header names are lower-case (HTTP/2 clients send them so)
    event = proxy_event("POST", "/echo", {"x-amz-target": "AmazonPersonalize.X"}, b'{"a": 1}')
    # When it is resolved
    status, headers, body = call(make_app(), event)
    # Then the route answers, with the request's id as API Gateway gave it
    assert (status, body) == (200, {"body": {"a": 1}, "target": "AmazonPersonalize.X"})
    assert headers["x-amzn-RequestId"] == event["requestContext"]["requestId"]
    assert headers["Content-Type"] == "application/json"


def test_a_base64_body_is_decoded() -> None:
    event = proxy_event("POST", "/echo", {}, b'{"a": "\xc3\xa9"}')
    event["body"], event["isBase64Encoded"] = "eyJhIjogIsOpIn0=", True
    assert call(make_app(), event)[2]["body"] == {"a": "é"}


@pytest.mark.parametrize(
    ("event_changes", "status", "code"),
    [
        ({"path": "/nowhere"}, 404, "UnknownOperationException"),
        ({"httpMethod": "GET"}, 404, "UnknownOperationException"),
        ({"body": "not base64 at all!", "isBase64Encoded": True}, 400, "InvalidInputException"),
        ({"body": "{"}, 400, "InvalidInputException"),
        ({"body": '{"missing": true}'}, 404, "ResourceNotFoundException"),
        ({"body": '{"crash": true}'}, 500, "InternalFailure"),
    ],
    ids=["unknown-path", "wrong-method", "bad-base64", "bad-json", "domain-error", "unexpected-error"],
)
def test_every_failure_is_a_rest_json_personalize_error(
    event_changes: dict[str, Any], status: int, code: str
) -> None:
    # Given a request that fails in one way
    event = proxy_event("POST", "/echo", {}, b"{}") | event_changes
    # When it is resolved
    got_status, headers, body = call(make_app(), event)
    # Then it is Personalize's REST-JSON error: the status, the code in x-amzn-ErrorType, a message
    assert got_status == status
    assert headers["x-amzn-ErrorType"] == code
    assert body["message"]
    assert "a bug" not in body["message"]  # an internal failure does not leak its cause


def test_json_1_1_errors_name_the_code_in_the_body_with_400() -> None:
    event = proxy_event("POST", "/echo", {}, b'{"missing": true}')
    status, headers, body = call(make_app(json_1_1=True), event)
    assert status == 400
    assert headers["Content-Type"] == api.AMZ_JSON
    assert body == {"__type": "ResourceNotFoundException", "message": "no such thing"}
