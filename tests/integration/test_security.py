"""Security of the serving path: unchecked names never reach S3, bodies are bounded, logs are clean."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from lambda_personalize.local_api import proxy_event
from personalize_core.observability import logger
from personalize_core.settings import get_settings
from personalize_core.store import get_store
from tests.faults import FaultProxy
from tests.utils import invoke, response_headers


@pytest.fixture
def watched_s3(serving_env: str, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The serving functions' S3 traffic, recorded by a proxy (no faults)."""
    proxy = FaultProxy(moto_url).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    get_settings.cache_clear()
    get_store.cache_clear()
    yield proxy
    proxy.stop()
    get_store.cache_clear()


def recommend(body: dict[str, object] | bytes) -> dict[str, object]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return invoke("get_recommendations", proxy_event("POST", "/recommendations", {}, raw))


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:personalize:us-east-1:123456789012:campaign/../solutions/x",
        "arn:aws:personalize:us-east-1:123456789012:campaign/demo-user-personalization/../../x",
        "arn:aws:personalize:us-east-1:123456789012:campaign/%2e%2e",
        "arn:aws:personalize:us-east-1:123456789012:campaign/a?versionId=1",
        "arn:aws:personalize:us-east-1:123456789012:solution/demo-user-personalization/v1",
    ],
)
def test_crafted_arns_are_refused_before_any_s3_request(watched_s3: FaultProxy, arn: str) -> None:
    # When a request names a campaign ARN crafted to reach another key
    result = recommend({"campaignArn": arn, "userId": "user-1"})
    # Then it is a 400 naming the field, and S3 was never asked
    assert result["statusCode"] == 400
    assert "campaignArn" in json.loads(str(result["body"]))["message"]
    assert watched_s3.seen == []


@pytest.mark.usefixtures("serving_env")
def test_oversized_bodies_are_refused_without_parsing() -> None:
    huge = b'{"campaignArn": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    result = recommend(huge)
    assert result["statusCode"] == 400
    assert response_headers(result)["x-amzn-ErrorType"] == "InvalidInputException"
    assert "larger than" in json.loads(str(result["body"]))["message"]


@pytest.mark.usefixtures("serving_env")
def test_no_user_data_or_credentials_in_logs(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given logs at DEBUG, and requests carrying a distinctive user id and context value
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-credential-value")
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logger.registered_formatter)  # Powertools' JSON, extra fields included
    std_logger = logging.getLogger(logger.service)
    previous = std_logger.level
    std_logger.addHandler(handler)
    std_logger.setLevel(logging.DEBUG)
    get_store.cache_clear()  # a cold start, so loading is logged too
    marker, context_value = "user-3", "secret-context-7f3a"
    arn = "arn:aws:personalize:us-east-1:123456789012:campaign/"
    # When good and bad requests are served
    recommend({"campaignArn": arn + "demo-user-personalization", "userId": marker, "numResults": 3})
    recommend(
        {"campaignArn": arn + "demo-user-personalization", "userId": marker, "context": {"K": context_value}}
    )
    recommend({"campaignArn": arn + "missing", "userId": marker})
    std_logger.removeHandler(handler)
    std_logger.setLevel(previous)
    logs = capfd.readouterr()
    assert "solution version loaded" in sink.getvalue()  # the logs were captured at all
    # Then neither the user's data nor credentials appear in what the function wrote
    for text in (sink.getvalue(), logs.out, logs.err):
        assert context_value not in text
        assert "s3cr3t-credential-value" not in text
        assert f'"{marker}"' not in text
