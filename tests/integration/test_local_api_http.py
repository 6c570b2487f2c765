"""The local API frames HTTP as API Gateway does (issue 16): raw sockets against the real server.

Every answer is JSON (unknown methods and routes, malformed request lines, bad framing), nothing a
client sends can hang a connection (every read has a timeout), and a chunked body is the request's
body, never the start of another request.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lambda_personalize.local_api import LocalApiServer

READ_TIMEOUT = 0.5


def echo(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """Answers with what it was given (the body API Gateway hands the function)."""
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"body": event["body"], "method": event["httpMethod"]}),
    }


@pytest.fixture
def server() -> Iterator[LocalApiServer]:
    routes = {("POST", "/echo"): ("EchoFunction", echo), ("GET", "/echo"): ("EchoFunction", echo)}
    running = LocalApiServer(routes, read_timeout=READ_TIMEOUT).start()
    yield running
    running.stop()


def exchange(server: LocalApiServer, raw: bytes, wait: float = 5.0) -> tuple[bytes, float]:
    """Send raw bytes, read until the server closes (or ``wait`` passes): (what came back, seconds)."""
    host, port = server.server_address[:2]
    started = time.monotonic()
    with socket.create_connection((str(host), int(port)), timeout=wait) as connection:
        connection.sendall(raw)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except TimeoutError:
            pytest.fail(f"the server kept the connection open for {wait} s; got {received!r}")
    return received, time.monotonic() - started


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def json_error(raw: bytes, status: int) -> dict[str, Any]:
    code, headers, body = parse(raw)
    assert code == status, raw
    assert headers["content-type"] == "application/json", raw
    answer: dict[str, Any] = json.loads(body)
    assert answer["__type"] == headers["x-amzn-errortype"]
    assert answer["message"]
    return answer


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "DELETE", "get", "FOO", "PROPFIND"])
def test_unknown_methods_get_a_json_error(server: LocalApiServer, method: str) -> None:
    # When a route is called with a method it does not serve (any spelling)
    raw, _ = exchange(server, f"{method} /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    # Then the answer is a JSON error, not an HTML page
    assert json_error(raw, 404)["__type"] == "UnknownOperationException"


def test_head_and_connect_get_json_errors_too(server: LocalApiServer) -> None:
    raw, _ = exchange(server, b"HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = parse(raw)
    assert (status, headers["x-amzn-errortype"], body) == (404, "UnknownOperationException", b"")
    raw, _ = exchange(server, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert json_error(raw, 404)["__type"] == "UnknownOperationException"


def test_a_malformed_request_line_gets_a_json_400(server: LocalApiServer) -> None:
    raw, _ = exchange(server, b"GARBAGE\r\n\r\n")
    assert json_error(raw, 400)["__type"] == "BadRequestException"


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "0x10", "+5", "1 2"])
def test_a_bad_content_length_is_a_400_at_once(server: LocalApiServer, length: str) -> None:
    # When Content-Length is not a plain number of bytes
    raw, seconds = exchange(
        server, f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{}}".encode()
    )
    # Then it is a JSON 400 naming it, without waiting for anything
    assert "Content-Length" in json_error(raw, 400)["message"]
    assert seconds < READ_TIMEOUT


def test_a_short_body_on_an_open_socket_is_a_400_after_the_read_timeout(server: LocalApiServer) -> None:
    # When the body is shorter than its Content-Length and the client keeps the socket open
    raw, seconds = exchange(server, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}")
    # Then the read times out and the answer is a 400, not a hang
    assert "Content-Length" in json_error(raw, 400)["message"]
    assert READ_TIMEOUT <= seconds < READ_TIMEOUT + 3


def test_a_client_that_sends_nothing_is_disconnected(server: LocalApiServer) -> None:
    _, seconds = exchange(server, b"")
    assert seconds < READ_TIMEOUT + 3


def test_a_chunked_body_is_the_request_body(server: LocalApiServer) -> None:
    # Given a body sent in two chunks, and what would be a request if the chunks were misread
    chunks = b'7\r\n{"a": 1\r\n1\r\n}\r\n0\r\n\r\n'
    raw, _ = exchange(
        server, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    )
    # Then the function got the whole body, and exactly one response came back
    status, _, body = parse(raw)
    assert status == 200
    assert json.loads(body) == {"body": '{"a": 1}', "method": "POST"}
    assert raw.count(b"HTTP/1.1 ") == 1


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ("Transfer-Encoding: chunked\r\nContent-Length: 5", b"0\r\n\r\n", 400),
        ("Transfer-Encoding: gzip", b"", 400),
        ("Transfer-Encoding: chunked", b"zz\r\nabc\r\n0\r\n\r\n", 400),
        (f"Content-Length: {11 * 1024 * 1024}", b"", 413),
    ],
    ids=["length-and-chunked", "unknown-coding", "bad-chunk", "over-10-mb"],
)
def test_framing_api_gateway_refuses_is_a_json_error(
    server: LocalApiServer, headers: str, body: bytes, status: int
) -> None:
    raw, seconds = exchange(server, f"POST /echo HTTP/1.1\r\nHost: x\r\n{headers}\r\n\r\n".encode() + body)
    json_error(raw, status)
    assert seconds < READ_TIMEOUT + 3


def test_unknown_routes_and_good_requests(server: LocalApiServer) -> None:
    raw, _ = exchange(server, b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    assert json_error(raw, 404)["message"] == "No operation at POST /nowhere"
    raw, _ = exchange(server, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    status, headers, body = parse(raw)
    assert (status, headers["content-length"], json.loads(body)) == (
        200,
        str(len(body)),
        {"body": "{}", "method": "POST"},
    )
