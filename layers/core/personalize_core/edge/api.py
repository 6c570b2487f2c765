"""The HTTP edge: API Gateway REST proxy events in, Personalize's wire shapes out, and the one
place errors become responses.

Two protocols, as botocore's parsers expect them:
- REST-JSON (the runtime): ``x-amzn-ErrorType: <Code>`` plus ``{"message": ...}``, status per error;
- JSON 1.1 (the control plane): ``{"__type": "<Code>", "message": ...}``, always 400 for client errors.
Every response carries ``x-amzn-RequestId``.

Each HTTP function serves one route (``POST`` of one path), so the router is a dictionary lookup
rather than Powertools' APIGatewayRestResolver: importing that costs ~40 ms of every cold start
(its package imports every resolver it has, and Powertools' Logger, Metrics and Tracer), more
than the serving path's whole budget beside numpy (see observability.py).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from personalize_core.errors import InvalidInputException, PersonalizeError, UnknownOperationException
from personalize_core.observability import logger, metrics
from personalize_core.settings import get_settings
from personalize_core.text import check_text, dumps, may_hold_surrogates

__all__ = [
    "ProxyEvent",
    "Response",
    "RestApp",
    "create_app",
    "empty_response",
    "error_response",
    "json_body",
    "request_id",
    "respond",
]

JSON = "application/json"
AMZ_JSON = "application/x-amz-json-1.1"
#: Which solution version answered: lets a client (and our tests) check that one version did.
SOLUTION_VERSION_HEADER = "X-Personalize-Solution-Version-Arn"


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class Response(NamedTuple):
    status_code: int
    body: str
    content_type: str = JSON
    #: Headers beside Content-Type (``respond`` adds x-amzn-RequestId).
    headers: Mapping[str, str] = _NO_HEADERS

    def to_proxy_result(self) -> dict[str, Any]:
        """What API Gateway's Lambda proxy integration expects back."""
        return {
            "statusCode": self.status_code,
            "headers": {"Content-Type": self.content_type, **self.headers},
            "body": self.body,
            "isBase64Encoded": False,
        }


class ProxyEvent:
    """The parts of an API Gateway REST (v1) proxy event the functions read."""

    __slots__ = ("_headers", "raw")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self._headers = {str(k).lower(): str(v) for k, v in (raw.get("headers") or {}).items()}

    @property
    def http_method(self) -> str:
        return str(self.raw.get("httpMethod") or "")

    @property
    def path(self) -> str:
        return str(self.raw.get("path") or "")

    def header(self, name: str) -> str | None:
        """A request header, by its name in any case (HTTP names are case-insensitive)."""
        return self._headers.get(name.lower())

    @property
    def body(self) -> str | None:
        body = self.raw.get("body")
        return body if isinstance(body, str) else None

    @property
    def is_base64(self) -> bool:
        return bool(self.raw.get("isBase64Encoded"))

    @property
    def decoded_body(self) -> bytes:
        body = self.body or ""
        if self.is_base64:
            return base64.b64decode(body, validate=True)
        return body.encode("utf-8", "surrogatepass")

    @property
    def request_id(self) -> str | None:
        context = self.raw.get("requestContext")
        found = context.get("requestId") if isinstance(context, Mapping) else None
        return str(found) if found else None


Route = Callable[[], Response]


class RestApp:
    """One function's routes (method and path to a function of no arguments that reads
    ``current_event``) and its error mapping: every failure is a Personalize-shaped error."""

    def __init__(self, json_1_1: bool = False) -> None:
        self.json_1_1 = json_1_1
        self.routes: dict[tuple[str, str], Route] = {}
        self.current_event = ProxyEvent({})
        self._request_id = ""

    def post(self, path: str) -> Callable[[Route], Route]:
        def register(route: Route) -> Route:
            self.routes[("POST", path)] = route
            return route

        return register

    def resolve(self, event: Mapping[str, Any]) -> dict[str, Any]:
        # Lambda runs one invocation at a time per environment, so the event can be the app's.
        self.current_event = ProxyEvent(event)
        self._request_id = self.current_event.request_id or str(uuid.uuid4())
        method, path = self.current_event.http_method, self.current_event.path
        route = self.routes.get((method, path))
        try:
            if route is None:
                raise UnknownOperationException(f"No operation at {method} {path}")
            response = route()
        except PersonalizeError as error:
            metrics.add_metric(
                name="ClientErrors" if error.status < 500 else "ServerErrors", unit="Count", value=1
            )
            if error.status >= 500:
                logger.error("request failed", extra={"code": error.code, "reason": error.message})
            response = error_response(self, error)
        except Exception:
            logger.exception("unexpected failure")
            metrics.add_metric(name="ServerErrors", unit="Count", value=1)
            internal = PersonalizeError("An internal error occurred; the request can be retried")
            response = error_response(self, internal)
        return response.to_proxy_result()


def request_id(app: RestApp) -> str:
    """API Gateway's id of the request (a fresh one when the event has none)."""
    return app._request_id or str(uuid.uuid4())


def json_body(app: RestApp) -> Any:
    """The request body as JSON; an empty body is ``{}`` (botocore always sends an object).

    Every route reads its body here, so every route gets the same checks: at most
    ``max_request_bytes`` of decoded body (what the client sent, whether API Gateway passed it as
    text or base64), valid JSON, and no string without a UTF-8 form (personalize_core.text).
    """
    limit = get_settings().max_request_bytes
    event = app.current_event
    body = event.body or ""
    # A cheap bound before decoding: base64 is 4/3 of the bytes it carries, text at least 1/4
    # (a UTF-8 character is at most 4 bytes) - nothing far over the limit is decoded at all.
    if len(body) > (limit * 4 // 3 + 4 if event.is_base64 else limit):
        raise _too_large(limit)
    try:
        raw = event.decoded_body
    except ValueError:  # bad base64
        raise InvalidInputException("The request body is not valid JSON") from None
    if len(raw) > limit:
        raise _too_large(limit)
    try:
        value = json.loads(raw) if raw else {}
    # ValueError covers bad JSON and bad UTF-8; RecursionError, absurdly deep nesting.
    except (ValueError, RecursionError):
        raise InvalidInputException("The request body is not valid JSON") from None
    if may_hold_surrogates(raw):
        check_text(value)
    return value


def _too_large(limit: int) -> InvalidInputException:
    return InvalidInputException(f"The request body is larger than {limit} bytes ({limit // 1024} KiB)")


def respond(
    app: RestApp,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    content_type: str = JSON,
) -> Response:
    return Response(
        status_code=status,
        content_type=content_type,
        body=dumps(body),
        headers={"x-amzn-RequestId": request_id(app), **(headers or {})},
    )


def empty_response(app: RestApp) -> Response:
    """200 with an empty body: what an operation without output answers (PutEvents, PutItems...)."""
    return Response(status_code=200, body="", headers={"x-amzn-RequestId": request_id(app)})


def error_response(app: RestApp, error: PersonalizeError) -> Response:
    if app.json_1_1:
        # JSON 1.1 services answer every client error with 400 and name it in the body.
        status = error.status if error.status >= 500 else 400
        return respond(app, status, {"__type": error.code, "message": error.message}, content_type=AMZ_JSON)
    return respond(app, error.status, {"message": error.message}, {"x-amzn-ErrorType": error.code})


def create_app(json_1_1: bool = False) -> RestApp:
    """A function's app whose every failure is a Personalize-shaped error (REST-JSON, or JSON 1.1)."""
    return RestApp(json_1_1)
