"""Security of every route: unchecked names never reach S3, bodies are bounded, logs are clean."""

from __future__ import annotations

import base64 as b64
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.config import Config

from lambda_personalize.local_api import proxy_event
from personalize_core.modelstore.store import get_store
from personalize_core.observability import logger
from personalize_core.settings import get_settings
from tests.conftest import BatchEnv
from tests.faults import FaultProxy
from tests.utils import ROOT, clear_process_caches, invoke, response_headers


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


# ---------------------------------------------------------------- the control plane and the worker

ARN = "arn:aws:personalize:us-east-1:123456789012"
ROLE = "arn:aws:iam::123456789012:role/personalize-batch-test"
JOB_IO = {
    "jobInput": {"s3DataSource": {"path": "s3://bucket/in.jsonl"}},
    "jobOutput": {"s3DataDestination": {"path": "s3://bucket/out/"}},
    "roleArn": ROLE,
}


@pytest.fixture
def watched_plane(
    control_plane: Any, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, FaultProxy]]:
    """A boto3 personalize client that skips its own checks, and the control plane's S3 traffic."""
    proxy = FaultProxy(moto_url).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    clear_process_caches()
    client = boto3.client(
        "personalize",
        endpoint_url=control_plane.meta.endpoint_url,
        region_name="us-east-1",
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    yield client, proxy
    proxy.stop()
    clear_process_caches()


CRAFTED = [
    ("create_campaign", {"name": "../filters/x", "solutionVersionArn": f"{ARN}:solution/s/v1"}, "name"),
    ("create_campaign", {"name": "a/b", "solutionVersionArn": f"{ARN}:solution/s/v1"}, "name"),
    (
        "create_campaign",
        {"name": "ok", "solutionVersionArn": f"{ARN}:solution/../../x"},
        "solutionVersionArn",
    ),
    ("describe_campaign", {"campaignArn": f"{ARN}:campaign/../solutions/x"}, "campaignArn"),
    ("update_campaign", {"campaignArn": f"{ARN}:campaign/%2e%2e"}, "campaignArn"),
    ("delete_campaign", {"campaignArn": f"{ARN}:campaign/x/../../filters/y"}, "campaignArn"),
    (
        "create_filter",
        {"name": "..", "datasetGroupArn": f"{ARN}:dataset-group/s", "filterExpression": "x"},
        "name",
    ),
    (
        "create_filter",
        {"name": "f", "datasetGroupArn": f"{ARN}:dataset-group/../../x", "filterExpression": "x"},
        "datasetGroupArn",
    ),
    ("describe_filter", {"filterArn": f"{ARN}:filter/../campaigns/demo"}, "filterArn"),
    ("delete_filter", {"filterArn": f"{ARN}:filter/a?versionId=1"}, "filterArn"),
    ("describe_solution_version", {"solutionVersionArn": f"{ARN}:solution/../x/v1"}, "solutionVersionArn"),
    ("list_solution_versions", {"solutionArn": f"{ARN}:solution/.."}, "solutionArn"),
    (
        "create_batch_inference_job",
        {"jobName": "../../x", "solutionVersionArn": f"{ARN}:solution/s/v1", **JOB_IO},
        "jobName",
    ),
    (
        "create_batch_inference_job",
        {
            "jobName": "j",
            "solutionVersionArn": f"{ARN}:solution/s/v1",
            "filterArn": f"{ARN}:filter/../x",
            **JOB_IO,
        },
        "filterArn",
    ),
    (
        "describe_batch_inference_job",
        {"batchInferenceJobArn": f"{ARN}:batch-inference-job/../x"},
        "batchInferenceJobArn",
    ),
]


@pytest.mark.parametrize(("operation", "body", "field"), CRAFTED, ids=[f"{o}-{f}" for o, _, f in CRAFTED])
def test_crafted_names_in_the_management_api_never_reach_s3(
    watched_plane: tuple[Any, FaultProxy], operation: str, body: dict[str, Any], field: str
) -> None:
    client, proxy = watched_plane
    # When a control-plane call carries a name or ARN crafted to reach another key
    with pytest.raises(client.exceptions.InvalidInputException) as caught:
        getattr(client, operation)(**body)
    # Then it is refused naming the field, and S3 was never asked anything
    assert field in caught.value.response["Error"]["Message"]
    assert proxy.seen == []


@pytest.mark.usefixtures("serving_env")
def test_oversized_control_plane_bodies_are_refused() -> None:
    # Given a body twice the limit, behind a valid target
    huge = b'{"name": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    headers = {"X-Amz-Target": "AmazonPersonalize.CreateFilter", "Content-Type": "application/x-amz-json-1.1"}
    # When the control plane gets it
    result = invoke("control_plane", proxy_event("POST", "/", headers, huge))
    # Then it is a JSON 1.1 InvalidInputException, refused by size
    body = json.loads(str(result["body"]))
    assert result["statusCode"] == 400
    assert body["__type"] == "InvalidInputException"
    assert "larger than" in body["message"]


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the functions log at DEBUG, in Powertools' JSON (extra fields included)."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logger.registered_formatter)
    std_logger = logging.getLogger(logger.service)
    previous = std_logger.level
    std_logger.addHandler(handler)
    std_logger.setLevel(logging.DEBUG)
    try:
        yield sink
    finally:
        std_logger.removeHandler(handler)
        std_logger.setLevel(previous)


def test_no_user_data_or_credentials_in_control_plane_or_worker_logs(
    batch_env: BatchEnv,
    control_plane: Any,
    s3: Any,
    serving_bucket: str,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a secret in the environment and a batch input whose users and values are distinctive
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-credential-value")
    user, poison = "user-7f3a-private", "poison-9c1e-private"
    lines = [json.dumps({"userId": user}), json.dumps({"userId": 7, "note": poison}), "not json " + poison]
    s3.put_object(Bucket=batch_env.data_bucket, Key="in.jsonl", Body="\n".join(lines).encode())
    pointer = json.loads(
        s3.get_object(Bucket=serving_bucket, Key="campaigns/demo-user-personalization.json")["Body"].read()
    )
    with captured_logs() as sink:
        # When jobs are created (one good, one refused), run by the worker, and looked up
        arn = control_plane.create_batch_inference_job(
            jobName="private-data",
            solutionVersionArn=pointer["solutionVersionArn"],
            jobInput={"s3DataSource": {"path": f"s3://{batch_env.data_bucket}/in.jsonl"}},
            jobOutput={"s3DataDestination": {"path": f"s3://{batch_env.data_bucket}/out/"}},
            roleArn=ROLE,
        )["batchInferenceJobArn"]
        with pytest.raises(control_plane.exceptions.InvalidInputException):
            control_plane.create_filter(
                name="private",
                datasetGroupArn=f"{ARN}:dataset-group/demo-user-personalization",
                filterExpression=f'EXCLUDE ItemID WHERE Items.GENRE IN ("{poison}") AND',
            )
        batch_env.poller.drain()
        assert (
            control_plane.describe_batch_inference_job(batchInferenceJobArn=arn)["batchInferenceJob"][
                "status"
            ]
            == "ACTIVE"
        )
    logs = capfd.readouterr()
    assert "batch inference job created" in sink.getvalue()  # the logs were captured at all
    assert "batch inference job done" in sink.getvalue()
    # Then neither the users' data nor credentials appear in anything the functions wrote
    for text in (sink.getvalue(), logs.out, logs.err):
        assert user not in text
        assert poison not in text
        assert "s3cr3t-credential-value" not in text


LIMIT = 1024 * 1024  # the documented MAX_REQUEST_BYTES
ROUTES = [
    ("get_recommendations", "/recommendations", {}),
    ("get_personalized_ranking", "/personalize-ranking", {}),
    ("control_plane", "/", {"X-Amz-Target": "AmazonPersonalize.CreateFilter"}),
]


def body_of(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes (one unknown field: refused, but not for its size)."""
    head, tail = b'{"padding": "', b'"}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


@pytest.mark.usefixtures("serving_env")
@pytest.mark.parametrize("base64", [False, True], ids=["text", "base64"])
@pytest.mark.parametrize(("function", "path", "headers"), ROUTES, ids=[r[0] for r in ROUTES])
def test_the_body_limit_is_the_documented_mib_of_decoded_bytes_on_every_route(
    function: str, path: str, headers: dict[str, str], base64: bool
) -> None:
    def send(raw: bytes) -> dict[str, Any]:
        event = proxy_event("POST", path, headers, raw)
        if base64:  # API Gateway hands binary media types to the function base64-encoded
            event |= {"body": b64.b64encode(raw).decode(), "isBase64Encoded": True}
        return json.loads(str(invoke(function, event)["body"]))

    # When a body of exactly 1 MiB, then one byte more, reaches the route (as text or base64)
    at_limit, over = send(body_of(LIMIT)), send(body_of(LIMIT + 1))
    # Then the first is not refused for its size (it is read, and refused for what it says), the second is
    assert "larger than" not in at_limit["message"], at_limit
    assert at_limit["message"].startswith(("Unknown field", "datasetGroupArn is required")), at_limit
    assert "larger than 1048576 bytes" in over["message"], over
    assert "larger than" in send(body_of(LIMIT * 4 // 3))["message"]  # 1.33 MiB was accepted once


def test_the_readme_states_the_limit_the_code_applies() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    assert get_settings.__wrapped__().max_request_bytes == LIMIT  # the default, unset
    assert "`MAX_REQUEST_BYTES`, 1 MiB" in readme
    assert "1,048,576 bytes" in readme
