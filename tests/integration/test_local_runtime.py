"""The local runtime builds itself from a template: resources from their Properties, environments with
intrinsics resolved, Api events as routes, SQS events as pollers (tests/fixtures/local_template.yaml).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambda_personalize.demo_data import DEMO_CAMPAIGNS, GENRES, DemoSpec, ensure_demo_data, publish_demo
from lambda_personalize.local_api import Handler
from lambda_personalize.local_runtime import (
    LocalRuntime,
    LocalRuntimeError,
    RuntimeOptions,
    merged_environment,
)
from lambda_personalize.template import FunctionSpec, LocalTemplate, TemplateError
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.writer import list_versions
from personalize_core.settings import get_settings
from tests.utils import REGION, ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "local_template.yaml"


@dataclass
class RecordingPoller:
    queue_url: str
    handler: Handler
    function_name: str
    batch_size: int
    calls: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")


@pytest.fixture
def started() -> Iterator[tuple[LocalRuntime, list[RecordingPoller]]]:
    pollers: list[RecordingPoller] = []

    def factory(queue_url: str, handler: Handler, function_name: str, batch_size: int) -> RecordingPoller:
        pollers.append(RecordingPoller(queue_url, handler, function_name, batch_size))
        return pollers[-1]

    options = RuntimeOptions(
        template=FIXTURE, port=0, aws_port=0, demo=None, stack=f"t-{uuid.uuid4().hex[:8]}"
    )
    runtime = LocalRuntime(options, poller_factory=factory).start()
    yield runtime, pollers
    runtime.stop()


def aws(runtime: LocalRuntime, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=runtime.aws_url,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def test_resources_are_created_from_the_templates_properties(started: tuple[LocalRuntime, Any]) -> None:
    # Given a runtime started from the fixture template
    runtime, _ = started
    stack = runtime.options.stack
    # Then the bucket, the table and both queues exist with the properties the template declares
    s3, dynamodb, sqs = aws(runtime, "s3"), aws(runtime, "dynamodb"), aws(runtime, "sqs")
    assert s3.get_bucket_versioning(Bucket=f"{stack}-bucket")["Status"] == "Enabled"
    table = dynamodb.describe_table(TableName=f"{stack}-JobsTable")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    ttl = dynamodb.describe_time_to_live(TableName=f"{stack}-JobsTable")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}
    queue = sqs.get_queue_url(QueueName=f"{stack}-ShardQueue")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "60"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": f"arn:aws:sqs:{REGION}:123456789012:{stack}-DeadLetterQueue",
        "maxReceiveCount": 3,
    }


def test_api_events_are_served_with_the_resolved_environment(started: tuple[LocalRuntime, Any]) -> None:
    # Given the runtime, When its Api route is called over HTTP
    runtime, _ = started
    stack = runtime.options.stack
    with urllib.request.urlopen(f"{runtime.api_url}/hello", timeout=10) as response:
        answer = json.loads(response.read())
    # Then the function saw Globals + its own environment, every intrinsic resolved to local values
    sqs = aws(runtime, "sqs")
    assert answer["path"] == "/hello"
    assert answer["environment"] == {
        "BUCKET": f"{stack}-bucket",
        "TABLE": f"{stack}-JobsTable",
        "QUEUE_URL": sqs.get_queue_url(QueueName=f"{stack}-ShardQueue")["QueueUrl"],
        "QUEUE_ARN": f"arn:aws:sqs:{REGION}:123456789012:{stack}-ShardQueue",
        "LABEL": "jobs-dev-test",
        "WHERE": f"{REGION}:123456789012:{stack}-bucket:dev",
        "DLQ_URL": sqs.get_queue_url(QueueName=f"{stack}-DeadLetterQueue")["QueueUrl"],
        "ROLE": "api",
    }


def test_sqs_events_get_a_poller_and_the_environment_is_given_back(
    started: tuple[LocalRuntime, list[RecordingPoller]],
) -> None:
    # Given the runtime: the SQS-triggered function got a poller per environment on its queue
    # (the machine's CPUs, at least 2, at most the event source's MaximumConcurrency of 3), started
    runtime, pollers = started
    assert len(pollers) == min(max(2, os.cpu_count() or 1), 3)
    assert len({id(p.handler) for p in pollers}) == len(pollers)  # each environment its own module
    poller = pollers[0]
    worker = next(f for f in runtime.functions if f.logical_id == "WorkerFunction")
    assert worker.timeout_seconds == 60
    assert poller.function_name == "WorkerFunction"
    assert poller.batch_size == 7
    assert (
        poller.queue_url
        == aws(runtime, "sqs").get_queue_url(QueueName=f"{runtime.options.stack}-ShardQueue")["QueueUrl"]
    )
    assert all(p.calls == ["start"] for p in pollers)
    # When the poller hands it a batch, Then the worker's own handler runs
    assert poller.handler({"Records": []}, None) == {"batchItemFailures": []}
    # When the runtime stops, Then the poller stops and the process environment is what it was
    before = os.environ.get("AWS_ENDPOINT_URL")
    runtime.stop()
    assert poller.calls == ["start", "stop"]
    assert "TABLE" not in os.environ
    assert os.environ.get("AWS_ENDPOINT_URL") != before


@pytest.mark.parametrize(("wanted", "cap", "expected"), [(5, "3", 3), (1, "3", 1), (4, "2", 2)])
def test_sqs_environments_are_what_is_asked_capped_by_maximum_concurrency(
    wanted: int, cap: str, expected: int
) -> None:
    pollers: list[RecordingPoller] = []

    def factory(queue_url: str, handler: Handler, function_name: str, batch_size: int) -> RecordingPoller:
        pollers.append(RecordingPoller(queue_url, handler, function_name, batch_size))
        return pollers[-1]

    options = RuntimeOptions(
        template=FIXTURE,
        port=0,
        aws_port=0,
        demo=None,
        stack=f"t-{uuid.uuid4().hex[:8]}",
        sqs_environments=wanted,
        parameter_overrides={"WorkerConcurrency": cap},
    )
    runtime = LocalRuntime(options, poller_factory=factory).start()
    try:
        assert len(pollers) == expected
    finally:
        runtime.stop()


def test_two_messages_run_at_once_in_two_environments() -> None:
    # Given the runtime with its real SQS pollers, two environments for the worker
    options = RuntimeOptions(
        template=FIXTURE, port=0, aws_port=0, demo=None, stack=f"t-{uuid.uuid4().hex[:8]}", sqs_environments=2
    )
    runtime = LocalRuntime(options).start()
    try:
        rendezvous = sys.modules["rendezvous"]
        rendezvous.met.clear()
        sqs = aws(runtime, "sqs")
        queue_url = sqs.get_queue_url(QueueName=f"{runtime.options.stack}-ShardQueue")["QueueUrl"]
        # When one message waits in its invocation for another, and a second message arrives
        sqs.send_message(QueueUrl=queue_url, MessageBody="meet")
        deadline = time.monotonic() + 10
        while rendezvous.meeting.n_waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        sqs.send_message(QueueUrl=queue_url, MessageBody="meet")
        while len(rendezvous.met) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        # Then the second ran in the other environment while the first was still running
        assert sorted(met for _, met in rendezvous.met) == [True, True]
        assert len({name for name, _ in rendezvous.met}) == 2
    finally:
        runtime.stop()


def test_conditions_and_parameters_switch_resources() -> None:
    # Given an existing bucket passed as a parameter, Then the template's own bucket is not created
    template = LocalTemplate(FIXTURE, parameter_overrides={"ExistingBucket": "their-bucket", "Stage": "prod"})
    assert "Bucket" not in {r.logical_id for r in template.local_resources()}
    environment = template.functions()[0].environment
    assert environment["BUCKET"] == "their-bucket"
    assert environment["LABEL"] == "jobs-prod-live"
    # And resources come after those they name (the dead-letter queue before the queue)
    order = [r.logical_id for r in LocalTemplate(FIXTURE).local_resources()]
    assert order.index("DeadLetterQueue") < order.index("ShardQueue")
    with pytest.raises(TemplateError, match="Nope"):
        LocalTemplate(FIXTURE, parameter_overrides={"Nope": "x"})


def test_the_projects_template_is_served_whole() -> None:
    # Given template.yaml, Then every Api event is a route and the model bucket reaches every function
    template = LocalTemplate(ROOT / "template.yaml")
    functions = template.functions()
    routes = {(r.method, r.path) for f in functions for r in f.routes}
    assert {("POST", "/recommendations"), ("POST", "/personalize-ranking")} <= routes
    bucket = template.physical_names["ModelBucket"]
    assert all(f.environment["MODEL_BUCKET"] == bucket for f in functions)


def test_functions_that_disagree_on_a_variable_are_refused() -> None:
    def spec(name: str, value: str) -> FunctionSpec:
        return FunctionSpec(name, Path("."), "app.handler", {"LEVEL": value}, 3, 128)

    assert merged_environment([spec("A", "1"), spec("B", "1")]) == {"LEVEL": "1"}
    with pytest.raises(LocalRuntimeError, match="A and B set LEVEL differently"):
        merged_environment([spec("A", "1"), spec("B", "2")])


def test_a_busy_port_is_a_clear_error(started: tuple[LocalRuntime, Any]) -> None:
    runtime, _ = started
    port = int(runtime.api_url.rsplit(":", 1)[1])
    with pytest.raises(
        LocalRuntimeError, match=f"API port 127.0.0.1:{port} is in use: choose another with --port"
    ):
        LocalRuntime(RuntimeOptions(template=FIXTURE, port=port, demo=None)).start()


def test_demo_data_is_reused_while_its_spec_matches(tmp_path: Path) -> None:
    # Given a small demo written once
    spec = DemoSpec(items=300, users=100, interactions_per_user=10)
    files, made = ensure_demo_data(tmp_path, spec)
    assert made
    items = files.items_csv.read_text().splitlines()
    # Then it is in Personalize's Items format: pipe-separated genres, a year and a price
    assert items[0] == "ITEM_ID,TITLE,GENRES,YEAR,PRICE"
    assert len(items) == 301
    _, title, genres, year, price = items[1].split(",")
    assert title.startswith("The ")
    assert set(genres.split("|")) <= set(GENRES)
    assert 1950 <= int(year) <= 2025
    assert float(price) > 0
    # When asked again with the same spec it is reused; with another spec it is made again
    stamp = files.stamp.stat().st_mtime_ns
    assert ensure_demo_data(tmp_path, spec) == (files, False)
    assert files.stamp.stat().st_mtime_ns == stamp
    assert ensure_demo_data(tmp_path, DemoSpec(items=300, users=100, interactions_per_user=10, seed=1))[1]


def test_publishing_the_demo_again_gives_the_same_campaigns(
    tmp_path: Path, s3: Any, bucket: str, moto_url: str
) -> None:
    # Given a demo published once through the publish module
    files, _ = ensure_demo_data(tmp_path, DemoSpec(items=200, users=50, interactions_per_user=8))
    first = publish_demo(ModelBucket(s3, bucket), files, REGION, "123456789012")
    # When it is published again (a second `make run` against a kept AWS)
    again = publish_demo(ModelBucket(s3, bucket), files, REGION, "123456789012")
    # Then nothing is refused, and the same versions serve the same campaigns
    assert set(first) == set(again) == set(DEMO_CAMPAIGNS)
    for name in DEMO_CAMPAIGNS:
        assert again[name]["campaignArn"] == first[name]["campaignArn"]
        assert again[name]["solutionVersionArn"] == first[name]["solutionVersionArn"]
    assert len(list(list_versions(ModelBucket(s3, bucket)))) == len(DEMO_CAMPAIGNS)


def test_settings_read_before_the_runtime_started_are_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given settings this process read before the runtime existed (a benchmark, a test, the CLI)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    get_settings.cache_clear()
    assert get_settings().region == "eu-west-3"
    # When the runtime starts, Then its functions see the stack's environment, not the stale settings
    runtime = LocalRuntime(
        RuntimeOptions(template=FIXTURE, port=0, aws_port=0, demo=None, stack=f"t-{uuid.uuid4().hex[:8]}")
    ).start()
    try:
        assert get_settings().region == REGION
    finally:
        runtime.stop()
    # And once it stops, the process's own again
    assert get_settings().region == "eu-west-3"
    get_settings.cache_clear()  # monkeypatch gives the environment back after this test
