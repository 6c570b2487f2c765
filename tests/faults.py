"""A fault-injecting HTTP proxy on loopback, in front of the embedded AWS.

Requests whose method and path match a rule get that rule's fault (an error status, a delay, a
dropped connection) for its first ``times`` matches; everything else is forwarded unchanged. It
lets tests put real S3 faults under the real botocore retry logic.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Fault:
    path_pattern: str
    method: str = "GET"
    status: int | None = 503
    delay_seconds: float = 0.0
    drop_connection: bool = False
    #: Forward the real answer, but close the connection after this many bytes of its body.
    truncate_body_at: int | None = None
    times: int = 1
    #: JSON-protocol services (DynamoDB, Firehose) all POST to "/": match their X-Amz-Target too.
    target_pattern: str | None = None
    #: The fault's body and type (default: S3's XML error); e.g. a DynamoDB error's JSON.
    body: bytes | None = None
    content_type: str = "application/xml"
    hits: int = field(default=0)

    def matches(self, method: str, path: str, target: str = "") -> bool:
        return (
            method == self.method
            and re.search(self.path_pattern, path) is not None
            and (self.target_pattern is None or re.search(self.target_pattern, target) is not None)
            and self.hits < self.times
        )


S3_ERROR = b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"


def dynamodb_error(code: str, operation: str, times: int = 1, status: int = 400) -> Fault:
    """DynamoDB answering ``operation`` with ``code`` (as its JSON 1.0 protocol does) ``times`` times."""
    payload = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"})
    return Fault(
        "^/$",
        method="POST",
        status=status,
        times=times,
        target_pattern=rf"DynamoDB_20120810\.{operation}$",
        body=payload.encode(),
        content_type="application/x-amz-json-1.0",
    )


class _Handler(BaseHTTPRequestHandler):
    server: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle(self) -> None:
        # A client that drops its keep-alive connection while the proxy waits for the next request.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().handle()

    def _proxy(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path))
        fault = self.server.fault_for(self.command, self.path, self.headers.get("X-Amz-Target") or "")
        if fault is not None and fault.truncate_body_at is None:
            if fault.delay_seconds:
                time.sleep(fault.delay_seconds)
            if fault.drop_connection:
                self.close_connection = True
                self.connection.close()
                return
            if fault.status is not None:
                payload = fault.body or S3_ERROR
                self.send_response(fault.status)
                self.send_header("Content-Type", fault.content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
        upstream = http.client.HTTPConnection(
            self.server.upstream_host, self.server.upstream_port, timeout=30
        )
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        self.server.headers_seen.append(dict(self.headers.items()))
        headers["Host"] = f"{self.server.upstream_host}:{self.server.upstream_port}"
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        upstream.close()
        if fault is not None and fault.truncate_body_at is not None:
            self.wfile.write(data[: fault.truncate_body_at])
            self.wfile.flush()
            self.close_connection = True
            self.connection.close()
            return
        # A reader that stops early (an abandoned stream) hangs up mid-body: that is not a failure.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _proxy  # noqa: N815


class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_url: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        parts = urlsplit(upstream_url)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.faults: list[Fault] = []
        self.seen: list[tuple[str, str]] = []
        #: The headers of every forwarded request (what the client sent).
        self.headers_seen: list[dict[str, str]] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def fault_for(self, method: str, path: str, target: str = "") -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path, target):
                    fault.hits += 1
                    return fault
        return None

    def start(self) -> FaultProxy:
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
