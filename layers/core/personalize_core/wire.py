"""The HTTP edge: Personalize's REST-JSON wire shapes, and the one place errors become responses.

Errors are ``x-amzn-ErrorType: <Code>`` plus ``{"message": ...}``, as botocore's rest-json
parser expects; every response carries ``x-amzn-RequestId``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

__all__ = ["Response", "create_app", "error_response", "json_body", "request_id", "respond"]
from aws_lambda_powertools.metrics import MetricUnit

from .errors import InvalidInputException, PersonalizeError
from .observability import logger, metrics

JSON = "application/json"
#: Which solution version answered: lets a client (and our tests) check that one version did.
SOLUTION_VERSION_HEADER = "X-Personalize-Solution-Version-Arn"


def request_id(app: APIGatewayRestResolver) -> str:
    context = app.current_event.request_context
    return context.request_id or str(uuid.uuid4())


def json_body(app: APIGatewayRestResolver) -> Any:
    """The request body as JSON; an empty body is ``{}`` (botocore always sends an object)."""
    try:
        raw = app.current_event.decoded_body
        return json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        raise InvalidInputException("The request body is not valid JSON") from None


def respond(
    app: APIGatewayRestResolver, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[str]:
    return Response(
        status_code=status,
        content_type=JSON,
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        headers={"x-amzn-RequestId": request_id(app), **(headers or {})},
    )


def error_response(app: APIGatewayRestResolver, error: PersonalizeError) -> Response[str]:
    response = respond(app, error.status, {"message": error.message})
    response.headers["x-amzn-ErrorType"] = error.code
    return response


def create_app() -> APIGatewayRestResolver:
    """A resolver whose every failure is a Personalize-shaped error."""
    app = APIGatewayRestResolver()

    @app.exception_handler(PersonalizeError)  # type: ignore[untyped-decorator]
    def personalize_error(error: PersonalizeError) -> Response[str]:
        metrics.add_metric(
            name="ClientErrors" if error.status < 500 else "ServerErrors", unit=MetricUnit.Count, value=1
        )
        if error.status >= 500:
            logger.error("request failed", extra={"code": error.code, "reason": error.message})
        return error_response(app, error)

    @app.not_found
    def unknown_route(_: Exception) -> Response[str]:
        event = app.current_event
        error = PersonalizeError(f"No operation at {event.http_method} {event.path}")
        error.code, error.status = "UnknownOperationException", 404
        return error_response(app, error)

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def unexpected(_: Exception) -> Response[str]:
        logger.exception("unexpected failure")
        metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
        return error_response(app, PersonalizeError("An internal error occurred; the request can be retried"))

    return app
