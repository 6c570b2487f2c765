"""Every AWS client the core makes, in one place: their retries and timeouts are settings, not habits.

Two kinds:
- boto3 clients, for the control plane, batch and training (boto3 is imported on first use: it costs
  ~0.3 s of cold start, and moto's endpoint variables must apply when it is);
- JSON-protocol clients (``json_client.py``) for what the serving and events functions call on every
  request (DynamoDB, Firehose), which import no boto3 at all.

A class that calls AWS takes a factory (one of these by default) so that tests can hand it a client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from personalize_core.aws.json_client import AwsJsonClient
from personalize_core.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


def boto3_client(
    service: str,
    *,
    retries: dict[str, Any] | None = None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    credentials: dict[str, Any] | None = None,
) -> Any:
    """A boto3 client (by default 5 standard-mode retries); ``credentials``: an STS AssumeRole answer's."""
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {"retries": retries or {"max_attempts": 5, "mode": "standard"}}
    if connect_timeout is not None:
        options["connect_timeout"] = connect_timeout
    if read_timeout is not None:
        options["read_timeout"] = read_timeout
    keys: dict[str, str] = {}
    if credentials is not None:
        keys = {
            "aws_access_key_id": credentials["AccessKeyId"],
            "aws_secret_access_key": credentials["SecretAccessKey"],
            "aws_session_token": credentials["SessionToken"],
        }
    return boto3.client(service, config=Config(**options), **keys)  # type: ignore[call-overload]


def create_s3_client() -> S3Client:
    """The model bucket's client: the settings' retries and timeouts."""
    settings = get_settings()
    client: S3Client = boto3_client(
        "s3",
        retries={"total_max_attempts": settings.s3_max_attempts, "mode": "standard"},
        connect_timeout=settings.s3_connect_timeout_seconds,
        read_timeout=settings.s3_read_timeout_seconds,
    )
    return client


def create_dynamodb_client() -> DynamoDBClient:
    """The records and batch jobs tables' client."""
    client: DynamoDBClient = boto3_client("dynamodb")
    return client


def create_sqs_client() -> SQSClient:
    """The batch and training queues' client."""
    client: SQSClient = boto3_client("sqs")
    return client


def create_iam_client() -> Any:
    """IAM policy simulation (edge/authorization.py): adaptive retries, it is throttled per account."""
    return boto3_client("iam", retries={"max_attempts": 4, "mode": "adaptive"})


def create_scheduler_client() -> Any:
    """EventBridge Scheduler: automatic training's schedules."""
    return boto3_client("scheduler")


def create_job_client(credentials: dict[str, Any] | None = None) -> Any:
    """A batch job's S3 client with its role's credentials, or (None) the STS client that gets them."""
    if credentials is None:
        return boto3_client("sts", connect_timeout=5, read_timeout=60)
    return boto3_client("s3", connect_timeout=5, read_timeout=60, credentials=credentials)


def create_events_dynamodb_client() -> AwsJsonClient:
    """The events table's client: DynamoDB through the JSON client (the serving functions read it)."""
    return _events_json_client("dynamodb", "DynamoDB_20120810", "1.0", get_settings().dynamodb_endpoint_url)


def create_firehose_client() -> AwsJsonClient:
    """The events' delivery stream (PutRecordBatch) through the JSON client."""
    return _events_json_client("firehose", "Firehose_20150804", "1.1", get_settings().firehose_endpoint_url)


def _events_json_client(service: str, target: str, json_version: str, endpoint_url: str) -> AwsJsonClient:
    """What PutEvents and the serving path call on every request: the events' retries and timeouts."""
    settings = get_settings()
    return AwsJsonClient(
        service,
        target,
        json_version,
        settings.region,
        endpoint_url=endpoint_url or None,
        max_attempts=settings.events_max_attempts,
        connect_timeout=settings.events_connect_timeout_seconds,
        read_timeout=settings.events_read_timeout_seconds,
    )
