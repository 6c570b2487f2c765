"""Every batch events/ file through its handler, as `sam local invoke <Function> -e events/<file>` would.

The create event's job is then run by its worker event (the plan message) and the poller.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import BATCH_EVENT_BUCKET, BatchEnv
from tests.utils import EVENTS, invoke, load_event, response_headers

#: event file -> (status, error type or None); all go to the control plane, in this order.
CONTROL_PLANE_EVENTS = {
    "control_plane_create_batch_inference_job.json": (200, None),
    "control_plane_create_batch_inference_job_bad_request.json": (400, "InvalidInputException"),
    "control_plane_describe_batch_inference_job.json": (200, None),
    "control_plane_describe_batch_inference_job_unknown.json": (400, "ResourceNotFoundException"),
    "control_plane_list_batch_inference_jobs.json": (200, None),
    "control_plane_list_batch_inference_jobs_bad_token.json": (400, "InvalidNextTokenException"),
}
WORKER_EVENTS = ("batch_worker_plan_message.json",)


def test_every_batch_event_file_is_covered() -> None:
    names = {p.name for p in EVENTS.glob("control_plane_*.json")} | {
        p.name for p in EVENTS.glob("batch_*.json")
    }
    assert names == set(CONTROL_PLANE_EVENTS) | set(WORKER_EVENTS)


@pytest.fixture
def event_input(batch_env: BatchEnv, batch_event_version: str, s3: Any) -> str:
    """The bucket and input the create event names, and the solution version it names."""
    if BATCH_EVENT_BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BATCH_EVENT_BUCKET)
    lines = [{"userId": f"user-{u}"} for u in range(12)] + [{"userId": "someone-new"}]
    s3.put_object(
        Bucket=BATCH_EVENT_BUCKET,
        Key="input/users.jsonl",
        Body="".join(json.dumps(line) + "\n" for line in lines).encode(),
    )
    return batch_event_version


def test_control_plane_and_worker_events_through_their_handlers(
    event_input: str, batch_env: BatchEnv, s3: Any
) -> None:
    for event_file, (status, error_type) in CONTROL_PLANE_EVENTS.items():
        # Given a sample API Gateway event for the control plane
        event = load_event(event_file)
        # When the handler is invoked with it
        result = invoke("control_plane", event)
        # Then it answers with JSON 1.1's status, headers and body shape
        assert result["statusCode"] == status, (event_file, result["body"])
        headers = response_headers(result)
        assert headers["Content-Type"] == "application/x-amz-json-1.1"
        assert headers["x-amzn-RequestId"] == event["requestContext"]["requestId"]
        body = json.loads(result["body"])
        if error_type:
            assert body["__type"] == error_type, event_file
            assert body["message"]
        elif "Create" in event["headers"]["X-Amz-Target"]:
            assert body["batchInferenceJobArn"].endswith(":batch-inference-job/demo-batch-job")
        elif "Describe" in event["headers"]["X-Amz-Target"]:
            assert body["batchInferenceJob"]["solutionVersionArn"] == event_input
            assert body["batchInferenceJob"]["status"] == "CREATE PENDING"
        else:
            assert [job["jobName"] for job in body["batchInferenceJobs"]] == ["demo-batch-job"]

    # Given the worker's sample SQS event: the plan message of the job created above
    # When the worker handles it
    result = invoke("batch_worker", load_event("batch_worker_plan_message.json"))
    # Then nothing failed, the job is planned, and its shards (queued by the plan) complete it
    assert result == {"batchItemFailures": []}
    batch_env.poller.drain()
    described = json.loads(
        invoke("control_plane", load_event("control_plane_describe_batch_inference_job.json"))["body"]
    )
    assert described["batchInferenceJob"]["status"] == "ACTIVE"
    out = s3.get_object(Bucket=BATCH_EVENT_BUCKET, Key="output/users.jsonl.out")["Body"].read().decode()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 13
    assert all(len(line["output"]["recommendedItems"]) == 10 for line in lines)
    # every line is scored, the unknown user's too (with the cold-user vector)
    assert all(len(line["output"]["scores"]) == 10 for line in lines)
