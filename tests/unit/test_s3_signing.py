"""The serving path's SigV4 signer against botocore's own S3 signer, on the same requests."""

from __future__ import annotations

import datetime
from unittest import mock

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials

from personalize_core.aws.sigv4 import Credentials, sign_v4
from personalize_core.modelstore.s3_reader import S3Reader

NOW = datetime.datetime(2026, 11, 24, 7, 30, 15, tzinfo=datetime.UTC)


def botocore_authorization(url: str, headers: dict[str, str], credentials: Credentials, region: str) -> str:
    request = AWSRequest(method="GET", url=url, headers=dict(headers))
    signer = S3SigV4Auth(
        BotocoreCredentials(credentials.access_key, credentials.secret_key, credentials.token), "s3", region
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        signer.add_auth(request)
    return str(request.headers["Authorization"])


@pytest.mark.parametrize(
    ("endpoint", "bucket", "key", "headers", "token"),
    [
        (None, "models", "campaigns/movies.json", {}, None),
        (None, "models", "solutions/s/v1/item_factors.npy", {}, "session-token/+="),
        (None, "models.with.dots", "solutions/a b/ünï/x+y=z~.npy", {}, "t"),
        ("http://127.0.0.1:4566", "models", "solutions/s/v1/user ids.txt", {}, "t"),
        ("https://s3.example.test", "m", "k", {"range": "bytes=4194304-", "if-match": '"abc"'}, None),
    ],
    ids=["virtual-hosted", "session-token", "dotted-bucket-unicode-key", "custom-endpoint", "ranged"],
)
def test_authorization_is_identical_to_botocores(
    endpoint: str | None, bucket: str, key: str, headers: dict[str, str], token: str | None
) -> None:
    # Given the URL and headers our reader sends for a GET
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    reader = S3Reader(bucket, "eu-west-3", endpoint_url=endpoint)
    path = reader.path_of(key)
    host = reader.endpoint.host
    # When both sign it
    ours = sign_v4("GET", host, path, headers, credentials, "eu-west-3", NOW)
    expected = botocore_authorization(
        f"{reader.endpoint.scheme}://{host}{path}",
        {**headers, "X-Amz-Content-SHA256": ours["x-amz-content-sha256"]},
        credentials,
        "eu-west-3",
    )
    # Then the Authorization headers are byte for byte the same
    assert ours["authorization"] == expected
    assert ours["x-amz-date"] == "20261124T073015Z"
    assert ours.get("x-amz-security-token") == token


def test_a_different_secret_gives_a_different_signature() -> None:
    # Given one request signed with two secrets
    first = sign_v4("GET", "h", "/k", {}, Credentials("A", "secret-1"), "us-east-1", NOW)
    second = sign_v4("GET", "h", "/k", {}, Credentials("A", "secret-2"), "us-east-1", NOW)
    # Then the signatures differ (the signer does use the secret)
    assert first["authorization"] != second["authorization"]


def test_addressing_follows_botocore() -> None:
    # A plain bucket is virtual-hosted; a dotted one path-style; a custom endpoint path-style
    assert (
        S3Reader("models", "us-east-1").endpoint.host,
        S3Reader("models", "us-east-1").path_of("a b"),
    ) == (
        "models.s3.us-east-1.amazonaws.com",
        "/a%20b",
    )
    dotted = S3Reader("my.models", "us-east-1")
    assert (dotted.endpoint.host, dotted.path_of("k")) == ("s3.us-east-1.amazonaws.com", "/my.models/k")
    local = S3Reader("models", "us-east-1", endpoint_url="http://127.0.0.1:5000/")
    assert (local.endpoint.scheme, local.endpoint.host, local.path_of("x/y")) == (
        "http",
        "127.0.0.1:5000",
        "/models/x/y",
    )
