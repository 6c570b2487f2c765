"""The HTTP edge: Personalize's wire shapes, and the one place errors become responses.

Two protocols, as botocore's parsers expect them:
- REST-JSON (the runtime): ``x-amzn-ErrorType: <Code>`` plus ``{"message": ...}``, status per error;
- JSON 1.1 (the control plane): ``{"__type": "<Code>", "message": ...}``, always 400 for client errors.
Every response carries ``x-amzn-RequestId``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

__all__ = ["Response", "create_app", "error_response", "json_body", "request_id", "respond"]
from aws_lambda_powertools.metrics import MetricUnit

from .errors import InvalidInputException, PersonalizeError, UnknownOperationException
from .observability import logger, metrics
from .settings import get_settings

JSON = "application/json"
AMZ_JSON = "application/x-amz-json-1.1"
#: Which solution version answered: lets a client (and our tests) check that one version did.
SOLUTION_VERSION_HEADER = "X-Personalize-Solution-Version-Arn"


def request_id(app: APIGatewayRestResolver) -> str:
    context = app.current_event.request_context
    return context.request_id or str(uuid.uuid4())


def json_body(app: APIGatewayRestResolver) -> Any:
    """The request body as JSON; an empty body is ``{}`` (botocore always sends an object)."""
    limit = get_settings().max_request_bytes
    if len(app.current_event.body or "") > limit * 4 // 3 + 4:  # base64 can inflate by 4/3
        raise InvalidInputException(f"The request body is larger than {limit} bytes")
    try:
        raw = app.current_event.decoded_body
        return json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise InvalidInputException("The request body is not valid JSON") from None


def respond(
    app: APIGatewayRestResolver,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    content_type: str = JSON,
) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_type,
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        headers={"x-amzn-RequestId": request_id(app), **(headers or {})},
    )


def error_response(
    app: APIGatewayRestResolver, error: PersonalizeError, json_1_1: bool = False
) -> Response[str]:
    if json_1_1:
        # JSON 1.1 services answer every client error with 400 and name it in the body.
        status = error.status if error.status >= 500 else 400
        return respond(app, status, {"__type": error.code, "message": error.message}, content_type=AMZ_JSON)
    response = respond(app, error.status, {"message": error.message})
    response.headers["x-amzn-ErrorType"] = error.code
    return response


def create_app(json_1_1: bool = False) -> APIGatewayRestResolver:
    """A resolver whose every failure is a Personalize-shaped error (REST-JSON, or JSON 1.1)."""
    app = APIGatewayRestResolver()

    @app.exception_handler(PersonalizeError)  # type: ignore[untyped-decorator]
    def personalize_error(error: PersonalizeError) -> Response[str]:
        metrics.add_metric(
            name="ClientErrors" if error.status < 500 else "ServerErrors", unit=MetricUnit.Count, value=1
        )
        if error.status >= 500:
            logger.error("request failed", extra={"code": error.code, "reason": error.message})
        return error_response(app, error, json_1_1)

    @app.not_found
    def unknown_route(_: Exception) -> Response[str]:
        event = app.current_event
        error = UnknownOperationException(f"No operation at {event.http_method} {event.path}")
        return error_response(app, error, json_1_1)

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def unexpected(_: Exception) -> Response[str]:
        logger.exception("unexpected failure")
        metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
        return error_response(
            app, PersonalizeError("An internal error occurred; the request can be retried"), json_1_1
        )

    return app
