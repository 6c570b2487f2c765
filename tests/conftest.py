"""Fixtures: an embedded AWS (moto's server on loopback) and models published through the CLI's code."""

from __future__ import annotations

import os

# Before anything imports boto3 or Powertools: fake credentials, no X-Ray, a fixed region.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "lambda-personalize-tests",
        "POWERTOOLS_METRICS_NAMESPACE": "LambdaPersonalizeTests",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)

import json  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import boto3  # noqa: E402
import pytest  # noqa: E402
from botocore.config import Config  # noqa: E402
from cfnlint.decode import decode  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from lambda_personalize.local_api import LocalApiServer  # noqa: E402
from lambda_personalize.local_iam import install_policy_simulator, signer_identity  # noqa: E402
from lambda_personalize.local_process import LocalStack, start_local_stack  # noqa: E402
from lambda_personalize.sqs_poller import SqsPoller  # noqa: E402
from personalize_core.modelstore.bucket import ModelBucket  # noqa: E402
from personalize_core.modelstore.layout import Recipe  # noqa: E402
from personalize_core.modelstore.writer import prepare_version, put_campaign, upload_version  # noqa: E402
from tests.utils import ACCOUNT, REGION, ROOT, clear_process_caches, load_function, random_model  # noqa: E402

#: The campaigns that events/*.json name; the session publishes them.
EVENT_CAMPAIGNS = {
    "demo-user-personalization": Recipe.USER_PERSONALIZATION,
    "demo-related-items": Recipe.RELATED_ITEMS,
    "demo-popular-items": Recipe.POPULAR_ITEMS,
    "demo-personalized-ranking": Recipe.PERSONALIZED_RANKING,
}


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # The serving code uses boto3's defaults; these service endpoints send it to the embedded AWS.
    for service in ("S3", "STS", "DYNAMODB", "SQS", "SCHEDULER", "IAM", "FIREHOSE"):
        os.environ[f"AWS_ENDPOINT_URL_{service}"] = url
    install_policy_simulator()  # the embedded IAM answers SimulatePrincipalPolicy, as IAM does
    yield url
    server.stop()


@pytest.fixture(scope="session")
def s3(moto_url: str) -> Any:
    return boto3.client("s3", endpoint_url=moto_url, region_name=REGION)


def new_bucket(s3: Any) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket(s3: Any) -> str:
    return new_bucket(s3)


def publish(
    s3: Any,
    bucket: str,
    solution: str,
    recipe: Recipe,
    model: dict[str, Any],
    campaign: str | None = None,
    version: str | None = None,
) -> str:
    """Publish through the CLI's own code path; returns the solution version ARN."""
    prepared = prepare_version(
        solution=solution,
        recipe=recipe,
        region=REGION,
        account=ACCOUNT,
        item_ids=model["item_ids"],
        item_factors=model.get("item_factors"),
        user_ids=model.get("user_ids", ()),
        user_factors=model.get("user_factors"),
        popularity=model.get("popularity"),
        version=version,
    )
    manifest = upload_version(ModelBucket(s3, bucket), prepared)
    if campaign:
        put_campaign(ModelBucket(s3, bucket), campaign, manifest)
    return manifest.solution_version_arn


@pytest.fixture(scope="session")
def serving_bucket(s3: Any) -> str:
    """A bucket holding the demo campaigns that events/ names, as the serving functions' MODEL_BUCKET."""
    bucket = new_bucket(s3)
    model = random_model(num_items=300, num_users=50, dims=16, seed=7)
    for campaign, recipe in EVENT_CAMPAIGNS.items():
        publish(s3, bucket, campaign, recipe, model, campaign=campaign)
    return bucket


@pytest.fixture(scope="session")
def records_table(moto_url: str) -> str:
    """template.yaml's RecordsTable (dataset groups ... recommenders) in the embedded AWS."""
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_url, region_name=REGION)
    name = f"records-{uuid.uuid4().hex[:10]}"
    properties = {k: v for k, v in template_properties("RecordsTable").items() if k in _TABLE_API_FIELDS}
    dynamodb.create_table(TableName=name, **properties)
    return name


@pytest.fixture
def serving_env(serving_bucket: str, records_table: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The environment template.yaml gives the serving functions, with a fresh (cold) store."""
    monkeypatch.setenv("MODEL_BUCKET", serving_bucket)
    monkeypatch.setenv("CAMPAIGN_CACHE_TTL_SECONDS", "0.2")
    monkeypatch.setenv("RECORDS_TABLE", records_table)
    clear_process_caches()
    yield serving_bucket
    clear_process_caches()


@pytest.fixture
def runtime_url(serving_env: str) -> Iterator[str]:
    """The runtime routes of template.yaml on real HTTP (loopback), calling the real handlers."""
    routes = {
        ("POST", "/recommendations"): (
            "GetRecommendationsFunction",
            load_function("get_recommendations").lambda_handler,
        ),
        ("POST", "/personalize-ranking"): (
            "GetPersonalizedRankingFunction",
            load_function("get_personalized_ranking").lambda_handler,
        ),
    }
    server = LocalApiServer(routes, identity=signed_by).start()
    yield server.url
    server.stop()


def signed_by(_method: str, _path: str, headers: Any) -> dict[str, str]:
    """API Gateway's IAM auth on every route, against the embedded IAM (local_iam)."""
    return signer_identity(headers)


@pytest.fixture
def runtime(runtime_url: str) -> Any:
    """An unchanged boto3 personalize-runtime client pointed at the local API."""
    return boto3.client(
        "personalize-runtime",
        endpoint_url=runtime_url,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture
def personalize(serving_env: str) -> Iterator[Any]:
    """An unchanged boto3 ``personalize`` client on the control plane (real HTTP, loopback)."""
    handler = load_function("control_plane").lambda_handler
    server = LocalApiServer({("POST", "/"): ("ControlPlaneFunction", handler)}, identity=signed_by).start()
    yield boto3.client(
        "personalize", endpoint_url=server.url, region_name=REGION, config=Config(retries={"max_attempts": 1})
    )
    server.stop()


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole local runtime (`make run`'s process) on free ports, with a small demo catalog."""
    stack = start_local_stack(
        tmp_path_factory.mktemp("local-stack"), ["--demo-items=800", "--demo-users=400"]
    )
    yield stack
    stack.stop()


# ---------------------------------------------------------------- batch inference (issue 4)
#: The solution version that events/*batch*.json name (published with a fixed version id).
BATCH_EVENT_SOLUTION = ("demo-batch", "v1")
#: The bucket holding the batch events' input and output (events/create_batch_inference_job.json).
BATCH_EVENT_BUCKET = "lambda-personalize-demo-batch"


@dataclass(frozen=True)
class BatchEnv:
    table: str
    queue_url: str
    dead_letter_url: str
    data_bucket: str
    poller: SqsPoller


def template_properties(logical_id: str) -> dict[str, Any]:
    """A resource's properties as template.yaml declares them (so tests build what AWS would)."""
    decoded, errors = decode(str(ROOT / "template.yaml"))
    assert not errors, errors
    assert decoded is not None
    return dict(decoded["Resources"][logical_id]["Properties"])


@pytest.fixture(scope="session")
def batch_event_version(s3: Any, serving_bucket: str) -> str:
    solution, version = BATCH_EVENT_SOLUTION
    model = random_model(num_items=300, num_users=50, dims=16, seed=7)
    return publish(s3, serving_bucket, solution, Recipe.USER_PERSONALIZATION, model, version=version)


@pytest.fixture
def batch_env(
    serving_env: str, moto_url: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BatchEnv]:
    """template.yaml's JobsTable and ShardQueue (+ DLQ) in the embedded AWS, the batch functions'
    environment, and a poller driving the worker. Shards are tiny (256 bytes) so jobs have many."""
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_url, region_name=REGION)
    sqs = boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)
    suffix = uuid.uuid4().hex[:10]
    table_props = {k: v for k, v in template_properties("JobsTable").items() if k in _TABLE_API_FIELDS}
    dynamodb.create_table(TableName=f"jobs-{suffix}", **table_props)
    dead_letter_url = sqs.create_queue(QueueName=f"shards-dlq-{suffix}")["QueueUrl"]
    dead_letter_arn = sqs.get_queue_attributes(QueueUrl=dead_letter_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    redrive = template_properties("ShardQueue")["RedrivePolicy"]
    queue_url = sqs.create_queue(
        QueueName=f"shards-{suffix}",
        Attributes={
            "VisibilityTimeout": "1",  # the template's 5400 s, shortened so redeliveries happen in tests
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": str(redrive["maxReceiveCount"])}
            ),
        },
    )["QueueUrl"]
    data_bucket = new_bucket(s3)
    monkeypatch.setenv("JOBS_TABLE", f"jobs-{suffix}")
    monkeypatch.setenv("SHARD_QUEUE_URL", queue_url)
    monkeypatch.setenv("BATCH_SHARD_BYTES", "256")
    monkeypatch.setenv("BATCH_MAX_RECEIVES", str(redrive["maxReceiveCount"]))
    monkeypatch.setenv("ACCOUNT_ID", ACCOUNT)
    clear_process_caches()
    worker = load_function("batch_worker").lambda_handler
    poller = SqsPoller(queue_url, worker, "BatchWorkerFunction", batch_size=5, sqs_client=sqs)
    yield BatchEnv(f"jobs-{suffix}", queue_url, dead_letter_url, data_bucket, poller)
    clear_process_caches()


_TABLE_API_FIELDS = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")


@pytest.fixture
def control_plane(batch_env: BatchEnv, personalize: Any) -> Any:
    """The control-plane client, with the batch functions' environment in place."""
    return personalize


# ---------------------------------------------------------------- events (issue 17)


@pytest.fixture(scope="session")
def events_table(moto_url: str) -> str:
    """template.yaml's EventsTable (with its TTL) in the embedded AWS."""
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_url, region_name=REGION)
    name = f"events-{uuid.uuid4().hex[:10]}"
    properties = template_properties("EventsTable")
    dynamodb.create_table(TableName=name, **{k: v for k, v in properties.items() if k in _TABLE_API_FIELDS})
    ttl = properties["TimeToLiveSpecification"]
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
    )
    return name


@pytest.fixture(scope="session")
def events_stream(moto_url: str, serving_bucket: str) -> str:
    """template.yaml's EventsDeliveryStream: Firehose into events/ of the serving bucket."""
    firehose = boto3.client("firehose", endpoint_url=moto_url, region_name=REGION)
    name = f"events-{uuid.uuid4().hex[:10]}"
    destination = template_properties("EventsDeliveryStream")["ExtendedS3DestinationConfiguration"]
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/firehose",
            "BucketARN": f"arn:aws:s3:::{serving_bucket}",
            "Prefix": destination["Prefix"],
        },
    )
    return name


@pytest.fixture
def events_env(
    serving_env: str, events_table: str, events_stream: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The serving environment with the events table and stream; group state is never trusted
    (EVENT_GROUP_TTL_SECONDS=0: a new tracker is ACTIVE at once)."""
    monkeypatch.setenv("EVENTS_TABLE", events_table)
    monkeypatch.setenv("EVENTS_DELIVERY_STREAM", events_stream)
    monkeypatch.setenv("EVENT_GROUP_TTL_SECONDS", "0")
    clear_process_caches()
    yield serving_env
    clear_process_caches()


@pytest.fixture
def events_api(events_env: str) -> Iterator[str]:
    """Every route of template.yaml but the batch worker's (events, runtime, control plane) on loopback."""
    events = load_function("events").lambda_handler
    routes = {
        ("POST", "/events"): ("EventsFunction", events),
        ("POST", "/items"): ("EventsFunction", events),
        ("POST", "/users"): ("EventsFunction", events),
        ("POST", "/recommendations"): (
            "GetRecommendationsFunction",
            load_function("get_recommendations").lambda_handler,
        ),
        ("POST", "/personalize-ranking"): (
            "GetPersonalizedRankingFunction",
            load_function("get_personalized_ranking").lambda_handler,
        ),
        ("POST", "/"): ("ControlPlaneFunction", load_function("control_plane").lambda_handler),
    }
    server = LocalApiServer(routes, identity=signed_by).start()
    yield server.url
    server.stop()


def events_clients(url: str) -> tuple[Any, Any, Any]:
    """Unchanged boto3 clients (personalize-events, personalize-runtime, personalize) on ``url``."""
    config = Config(retries={"max_attempts": 1})
    return tuple(  # type: ignore[return-value]
        boto3.client(service, endpoint_url=url, region_name=REGION, config=config)
        for service in ("personalize-events", "personalize-runtime", "personalize")
    )
