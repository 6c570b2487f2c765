"""Serve Lambda handlers over real HTTP on loopback, the way API Gateway's REST proxy would.

Each request becomes an API Gateway proxy event (version 1.0) and goes to the same
``lambda_handler`` that runs in AWS; the proxy result becomes the HTTP response.

HTTP itself is werkzeug's (its WSGI server, request and response): chunked bodies, HEAD, methods of
any spelling. What API Gateway adds on top is here, so that a client sees the same answers from
``make run`` as from a deployed stack, and nothing a client sends can hang a connection:
- every error is JSON (``__type``, ``message``, ``x-amzn-ErrorType``), including unknown methods and
  routes (404), a malformed request line or header (400) and an oversized body (413);
- framing API Gateway refuses is a 400: a ``Content-Length`` that is not a plain number of bytes
  (``-1``, ``abc``, ``1e3``), both ``Content-Length`` and ``Transfer-Encoding``, a transfer coding
  other than chunked, a bad chunk, a body shorter than its ``Content-Length``;
- every read has a timeout (``read_timeout``): a client that stops sending mid-body gets its 400
  when it expires; one that never sends a request is disconnected.

A function handles one request at a time, as a Lambda execution environment does: handler modules
keep per-invocation state in module globals (the function's ``edge.api.RestApp`` holds the current
event), so two concurrent requests in one instance would read each other's event. Requests to different
functions run concurrently.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import ClientDisconnected
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from .lambda_context import LocalLambdaContext

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
#: Route (method, path) -> (function name, handler).
Routes = Mapping[tuple[str, str], tuple[str, Handler]]
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
#: Seconds a read may wait for the client (request line, headers, each part of the body).
READ_TIMEOUT_SECONDS = 10.0
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")


#: ``requestContext.identity`` of a request signed by the local account's root user (what
#: ``proxy_event`` gives unless told otherwise; lambda_personalize.local_iam resolves real signers).
ROOT_IDENTITY = {
    "userArn": "arn:aws:iam::123456789012:root",
    "accountId": "123456789012",
    "caller": "123456789012",
}
#: API Gateway's IAM auth: (method, path, headers) -> the ``requestContext.identity`` fields of who
#: signed the request (``{}`` on a route without IAM auth).
IdentityResolver = Callable[[str, str, Mapping[str, str]], Mapping[str, str]]


def proxy_event(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    stage: str = "Prod",
    source_ip: str = "127.0.0.1",
    identity: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event, as API Gateway and `sam local` build it. ``identity``:
    the fields API Gateway's IAM auth adds to ``requestContext.identity`` (default: the root user's;
    ``{}`` for a route without IAM auth)."""
    try:
        text, is_base64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode(), True
    request_id = str(uuid.uuid4())
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "protocol": "HTTP/1.1",
            "identity": {
                "sourceIp": source_ip,
                "userAgent": headers.get("User-Agent", ""),
                **(ROOT_IDENTITY if identity is None else identity),
            },
            "accountId": "123456789012",
            "apiId": "local",
        },
        "body": text if body else None,
        "isBase64Encoded": is_base64,
    }


def error_body(code: str, message: str) -> bytes:
    # Both protocols' parsers read this: REST-JSON the header, JSON 1.1 the body's __type.
    return json.dumps({"__type": code, "message": message}).encode()


def error_response(status: int, code: str, message: str) -> Response:
    return Response(
        error_body(code, message),
        status=status,
        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())},
        content_type="application/json",
    )


class BadFraming(Exception):
    """The request's framing is one API Gateway refuses (the message says how)."""

    def __init__(self, message: str, status: int = 400, code: str = "BadRequestException") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, framed as API Gateway frames it, or BadFraming."""
    length = request.headers.get("Content-Length")
    coding = request.headers.get("Transfer-Encoding")
    if coding is not None:
        if coding.strip().lower() != "chunked":
            raise BadFraming(f"Transfer-Encoding {coding[:40]!r} is not supported; use chunked")
        if length is not None:
            raise BadFraming("A request may not carry both Content-Length and Transfer-Encoding")
    elif length is not None:
        if _CONTENT_LENGTH.fullmatch(length.strip()) is None:
            raise BadFraming(f"Content-Length {length[:40]!r} is not a number of bytes")
        if int(length) > limit:
            raise BadFraming(
                f"Request body is larger than {limit // (1024 * 1024)} MB", 413, "PayloadTooLargeException"
            )
    try:
        # werkzeug's stream stops at Content-Length and de-chunks a chunked body.
        body = request.stream.read(limit + 1)
    except ClientDisconnected:
        raise BadFraming(f"The body ended before its Content-Length ({length} bytes)") from None
    except TimeoutError:
        raise BadFraming("The body did not arrive in time (shorter than its Content-Length?)") from None
    except OSError as exc:  # werkzeug's de-chunker: a malformed chunk
        raise BadFraming(f"The chunked body is malformed: {exc}") from None
    if len(body) > limit:
        raise BadFraming(
            f"Request body is larger than {limit // (1024 * 1024)} MB", 413, "PayloadTooLargeException"
        )
    if length is not None and len(body) < int(length):
        raise BadFraming(f"The body ended before its Content-Length ({length} bytes)")
    return body


class LocalApi:
    """The WSGI application: routes, framing checks, proxy events, one invocation at a time per function."""

    def __init__(
        self, routes: Routes, stage_prefix: str = "", identity: IdentityResolver | None = None
    ) -> None:
        self.routes = routes
        self.stage_prefix = stage_prefix.rstrip("/")
        #: API Gateway's IAM auth: who signed (None: no IAM auth, the identity carries no principal).
        self.identity = identity
        self._instances = {id(handler): threading.Lock() for _, handler in routes.values()}

    def instance_lock(self, handler: Handler) -> threading.Lock:
        """The lock of the one (local) execution environment that runs ``handler``."""
        return self._instances.setdefault(id(handler), threading.Lock())

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        return self.respond(request)(environ, start_response)

    def respond(self, request: Request) -> Response:
        path = request.path
        if self.stage_prefix and path.startswith(self.stage_prefix + "/"):
            path = path[len(self.stage_prefix) :]
        method = str(request.environ["REQUEST_METHOD"])  # as sent: API Gateway's methods are case-sensitive
        try:
            body = read_body(request)
        except BadFraming as bad:
            return error_response(bad.status, bad.code, str(bad))
        route = self.routes.get((method, path))
        if route is None:
            return error_response(
                404, "UnknownOperationException", f"No operation at {method[:20]} {path[:200]}"
            )
        function_name, handler = route
        headers = {name: value for name, value in request.headers.items() if name != "Transfer-Encoding"}
        if request.headers.get("Transfer-Encoding") is not None:
            headers["Content-Length"] = str(len(body))  # API Gateway hands on a whole body
        signer = self.identity(method, path, headers) if self.identity is not None else {}
        event = proxy_event(method, path, headers, body, identity=signer)
        try:
            with self.instance_lock(handler):
                result = handler(event, LocalLambdaContext(function_name=function_name))
            payload = result.get("body") or ""
            raw = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode("utf-8")
        except Exception as exc:  # a crashed Lambda, or a result API Gateway cannot use: a 502
            return error_response(502, "InternalFailure", f"{function_name} failed: {type(exc).__name__}")
        response = Response(raw, status=int(result.get("statusCode", 200)))
        response.headers.clear()
        for name, value in (result.get("headers") or {}).items():
            response.headers[name] = str(value)
        for name, values in (result.get("multiValueHeaders") or {}).items():
            response.headers[name] = ",".join(values)
        response.headers["Content-Length"] = str(len(raw))
        return response


class _RequestHandler(WSGIRequestHandler):
    """werkzeug's handler, with API Gateway's JSON errors for what never reaches the application
    (a malformed request line or header) and a timeout on every read."""

    server: LocalApiServer
    timeout = READ_TIMEOUT_SECONDS
    # HTTP/1.1: a client's connection stays open between requests (every response has its
    # Content-Length), as API Gateway's does; HTTP/1.0 closed it after each one.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK holds the
    # body back ~40 ms on every request.
    disable_nagle_algorithm = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        body = error_body("BadRequestException", message or explain or "Bad request")
        # A line too malformed to name its version is answered as HTTP/1.1, status line and all.
        self.request_version = "HTTP/1.1"
        with contextlib.suppress(OSError):
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("x-amzn-ErrorType", "BadRequestException")
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(body)
        self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.verbose:
            super().log_request(code, size)

    def log_error(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_error(format, *args)


class LocalApiServer(ThreadedWSGIServer):
    def __init__(
        self,
        routes: Routes,
        host: str = "127.0.0.1",
        port: int = 0,
        stage_prefix: str = "",
        verbose: bool = False,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        identity: IdentityResolver | None = None,
    ) -> None:
        self.verbose = verbose
        self.api = LocalApi(routes, stage_prefix, identity)
        handler = type("RequestHandler", (_RequestHandler,), {"timeout": read_timeout})
        try:
            super().__init__(host, port, self.api, handler=handler)
        except SystemExit:  # werkzeug exits when it cannot bind; the runtime reports the port itself
            raise OSError(f"cannot listen on {host}:{port}") from None
        self._thread: threading.Thread | None = None

    @property
    def routes(self) -> Routes:
        return self.api.routes

    def instance_lock(self, handler: Handler) -> threading.Lock:
        return self.api.instance_lock(handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalApiServer:
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="local-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
