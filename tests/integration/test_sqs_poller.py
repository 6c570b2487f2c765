"""The local SQS poller against moto's SQS: genuine Lambda SQS events, partial batch failures,
redelivery after the visibility timeout, and the dead-letter queue after maxReceiveCount."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import boto3
import pytest

from lambda_personalize.sqs_poller import SqsPoller
from tests.utils import REGION


@pytest.fixture
def sqs(moto_url: str) -> Any:
    return boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)


def make_queue(sqs: Any, max_receives: int = 2) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    dead = sqs.create_queue(QueueName=f"dlq-{suffix}")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName=f"q-{suffix}",
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(max_receives)}
            ),
        },
    )["QueueUrl"]
    return queue, dead


def count(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_events_are_lambda_sqs_events_and_only_reported_failures_come_back(sqs: Any) -> None:
    # Given a queue with four messages and a handler that reports "bad" ones as failed
    queue, dead = make_queue(sqs, max_receives=2)
    for body in ("ok-1", "bad", "ok-2", "ok-3"):
        sqs.send_message(
            QueueUrl=queue,
            MessageBody=body,
            MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}},
        )
    seen: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        assert context.function_name == "Worker"
        seen.extend(event["Records"])
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "bad"
            ]
        }

    # When the poller drains the queue
    poller = SqsPoller(queue, handler, "Worker", batch_size=10, sqs_client=sqs)
    poller.drain(timeout_seconds=30)

    # Then records have the shape Lambda gives them
    record = seen[0]
    assert set(record) >= {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].startswith("arn:aws:sqs:us-east-1:")
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["k"]["stringValue"] == "v"
    # And the good messages were processed once, the bad one until SQS moved it to the DLQ
    bodies = [r["body"] for r in seen]
    assert sorted(b for b in bodies if b != "bad") == ["ok-1", "ok-2", "ok-3"]
    bad = [r for r in seen if r["body"] == "bad"]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in bad] == ["1", "2"]
    assert count(sqs, dead) == 1
    assert poller.failures == 2


def test_a_handler_that_raises_leaves_the_whole_batch(sqs: Any) -> None:
    # Given a handler that crashes on its first invocation only
    queue, _ = make_queue(sqs, max_receives=5)
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    calls: list[list[str]] = []

    def handler(event: dict[str, Any], _: Any) -> None:
        calls.append(sorted(r["body"] for r in event["Records"]))
        if len(calls) == 1:
            raise RuntimeError("crash")

    # When the poller drains the queue
    SqsPoller(queue, handler, "Worker", sqs_client=sqs).drain(timeout_seconds=30)

    # Then both messages came back and were processed again
    assert [b for c in calls for b in c].count("a") == 2
    assert [b for c in calls for b in c].count("b") == 2


def test_start_and_stop_poll_in_the_background(sqs: Any) -> None:
    # Given a running poller
    queue, _ = make_queue(sqs)
    got = threading.Event()
    poller = SqsPoller(
        queue, lambda event, _: got.set(), "Worker", sqs_client=sqs, wait_time_seconds=1
    ).start()
    try:
        # When a message arrives
        sqs.send_message(QueueUrl=queue, MessageBody="hello")
        # Then the handler gets it and the message is deleted
        assert got.wait(10)
        deadline = time.monotonic() + 10
        while poller.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert poller.pending() == 0
    finally:
        poller.stop()
    with pytest.raises(ValueError, match="batch_size"):
        SqsPoller(queue, lambda e, c: None, "Worker", batch_size=11, sqs_client=sqs)
