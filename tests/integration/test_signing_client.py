"""``runtime_client`` signs Personalize runtime calls for API Gateway's IAM auth (service execute-api).

A loopback server stands in for API Gateway: it records each request and answers like the
runtime, so the client is exercised end to end and the signature is checked on the wire.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lambda_personalize.clients import runtime_client, stack_region
from tests.utils import campaign_arn

CREDENTIALS = {
    "aws_access_key_id": "AKIDEXAMPLE",
    "aws_secret_access_key": "secret",
    "aws_session_token": None,
}


class _Recorder(BaseHTTPRequestHandler):
    server: _RecordingServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
        answer = json.dumps(
            {"itemList": [{"itemId": "i1", "score": 0.5}], "recommendationId": "RID-1"}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class _RecordingServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.requests: list[dict[str, Any]] = []


@pytest.fixture
def gateway() -> Iterator[_RecordingServer]:
    server = _RecordingServer()
    Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def credential_scope(headers: dict[str, str]) -> str:
    match = re.search(r"Credential=([^,]+)", headers["Authorization"])
    assert match is not None, headers["Authorization"]
    return match.group(1)


def expected_signature(request: dict[str, Any], url: str, service: str, region: str) -> str:
    """Re-sign the captured request with botocore's SigV4 for ``service`` at its own timestamp."""
    headers = request["headers"]
    signed = re.search(r"SignedHeaders=([^,]+)", headers["Authorization"])
    assert signed is not None
    names = signed.group(1).split(";")
    lowered = {k.lower(): v for k, v in headers.items()}
    replay = AWSRequest(
        method="POST", url=url + request["path"], data=request["body"], headers={n: lowered[n] for n in names}
    )
    replay.context["timestamp"] = lowered["x-amz-date"]
    auth = SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), service, region)
    return auth.signature(auth.string_to_sign(replay, auth.canonical_request(replay)), replay)


def test_requests_are_signed_for_execute_api_in_the_stack_region(gateway: _RecordingServer) -> None:
    # Given the helper's client for a stack in eu-west-1, behind a /Prod stage
    host, port = gateway.server_address[:2]
    base = f"http://{host!s}:{port}"
    session = boto3.session.Session(region_name="us-east-1", **CREDENTIALS)
    runtime = runtime_client(f"{base}/Prod", region="eu-west-1", session=session)
    # When it makes a call
    answer = runtime.get_recommendations(campaignArn=campaign_arn("c"), userId="42", numResults=1)
    # Then the call went to the stage's path, with a credential scope for execute-api in eu-west-1
    assert answer["itemList"] == [{"itemId": "i1", "score": 0.5}]
    (request,) = gateway.requests
    assert request["path"] == "/Prod/recommendations"
    scope = credential_scope(request["headers"])
    assert re.fullmatch(r"AKIDEXAMPLE/\d{8}/eu-west-1/execute-api/aws4_request", scope), scope
    # And the signature is exactly SigV4's for execute-api (what API Gateway recomputes)
    signature = re.search(r"Signature=([0-9a-f]{64})", request["headers"]["Authorization"])
    assert signature is not None
    assert signature.group(1) == expected_signature(request, base, "execute-api", "eu-west-1")
    assert signature.group(1) != expected_signature(request, base, "personalize", "eu-west-1")


def test_a_plain_boto3_client_signs_for_personalize(gateway: _RecordingServer) -> None:
    # Given boto3's own client (what fails against an IAM-auth API Gateway)
    host, port = gateway.server_address[:2]
    session = boto3.session.Session(region_name="eu-west-1", **CREDENTIALS)
    plain = session.client("personalize-runtime", endpoint_url=f"http://{host!s}:{port}/Prod")
    # When it calls, Then its scope names personalize, which is why the helper exists
    plain.get_recommendations(campaignArn=campaign_arn("c"), userId="42")
    assert credential_scope(gateway.requests[0]["headers"]).endswith("/eu-west-1/personalize/aws4_request")


def test_the_region_comes_from_the_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert stack_region("https://abc123.execute-api.eu-west-1.amazonaws.com/Prod") == "eu-west-1"
    assert stack_region("https://abc123.execute-api.cn-north-1.amazonaws.com.cn/Prod") == "cn-north-1"
    assert stack_region("http://127.0.0.1:3000") is None
    # Given no region anywhere, Then the helper refuses rather than sign for a wrong region
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(ValueError, match="region"):
        runtime_client(
            "http://127.0.0.1:3000", session=boto3.session.Session(region_name=None, **CREDENTIALS)
        )


def test_the_region_defaults_to_the_urls(gateway: _RecordingServer) -> None:
    runtime = runtime_client(
        "https://abc123.execute-api.ap-southeast-2.amazonaws.com/Prod",
        session=boto3.session.Session(region_name="us-east-1", **CREDENTIALS),
    )
    assert runtime.meta.region_name == "ap-southeast-2"
    assert runtime.meta.endpoint_url == "https://abc123.execute-api.ap-southeast-2.amazonaws.com/Prod"
