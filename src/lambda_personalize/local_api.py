"""Serve Lambda handlers over real HTTP on loopback, the way API Gateway's REST proxy would.

Each request becomes an API Gateway proxy event (version 1.0) and goes to the same
``lambda_handler`` that runs in AWS; the proxy result becomes the HTTP response.

A function handles one request at a time, as a Lambda execution environment does: handler modules
keep per-invocation state in module globals (the function's ``edge.api.RestApp`` holds the current
event), so two concurrent requests in one instance would read each other's event. Requests to different
functions run concurrently.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .lambda_context import LocalLambdaContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
#: Route (method, path) -> (function name, handler).
Routes = Mapping[tuple[str, str], tuple[str, Handler]]
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


def proxy_event(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    stage: str = "Prod",
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event, as API Gateway and `sam local` build it."""
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
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent", "")},
            "accountId": "123456789012",
            "apiId": "local",
        },
        "body": text if body else None,
        "isBase64Encoded": is_base64,
    }


class _Handler(BaseHTTPRequestHandler):
    server: LocalApiServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed ACK
    # holds the body back ~40 ms on every request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        # Both protocols' parsers read this: REST-JSON the header, JSON 1.1 the body's __type.
        body = json.dumps({"__type": code, "message": message}).encode()
        self._send(
            status,
            {
                "Content-Type": "application/json",
                "x-amzn-ErrorType": code,
                "x-amzn-RequestId": str(uuid.uuid4()),
            },
            body,
        )

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._error(413, "PayloadTooLargeException", "Request body is larger than 10 MB")
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if self.server.stage_prefix and path.startswith(self.server.stage_prefix + "/"):
            path = path[len(self.server.stage_prefix) :]
        route = self.server.routes.get((self.command, path))
        if route is None:
            self._error(404, "UnknownOperationException", f"No operation at {self.command} {path}")
            return
        function_name, handler = route
        event = proxy_event(self.command, path, dict(self.headers.items()), body)
        try:
            with self.server.instance_lock(handler):
                result = handler(event, LocalLambdaContext(function_name=function_name))
        except Exception as exc:  # a crashed Lambda: API Gateway answers 502
            self._error(502, "InternalFailure", f"{function_name} failed: {type(exc).__name__}")
            return
        payload = result.get("body") or ""
        raw = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode("utf-8")
        headers = dict(result.get("headers") or {})
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = ",".join(values)
        self._send(int(result.get("statusCode", 200)), headers, raw)

    do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = _dispatch  # noqa: N815


class LocalApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        routes: Routes,
        host: str = "127.0.0.1",
        port: int = 0,
        stage_prefix: str = "",
        verbose: bool = False,
    ) -> None:
        super().__init__((host, port), _Handler)
        self.routes = routes
        self.stage_prefix = stage_prefix.rstrip("/")
        self.verbose = verbose
        self._thread: threading.Thread | None = None
        self._instances = {id(handler): threading.Lock() for _, handler in routes.values()}

    def instance_lock(self, handler: Handler) -> threading.Lock:
        """The lock of the one (local) execution environment that runs ``handler``."""
        return self._instances.setdefault(id(handler), threading.Lock())

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
