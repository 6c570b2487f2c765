"""Invalid Unicode (a lone UTF-16 surrogate, the JSON escape "\\ud800") on every route (issue 16).

It is refused at the edge with an InvalidInputException naming the field, never stored, and never
makes a response impossible to write; records stored before the check can still be described,
listed and deleted, and a batch job holding one fails with a reason instead of retrying forever.
Everything goes through unchanged boto3 clients over real HTTP (botocore sends the escape as is).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from personalize_core.batch.jobs import Job, JobsTable, JobStatus
from personalize_core.batch.queue import Message, ShardQueue
from personalize_core.text import dumps
from tests.conftest import BatchEnv
from tests.utils import ACCOUNT, REGION, campaign_arn

LONE = "\ud800"
ARN = f"arn:aws:personalize:{REGION}:{ACCOUNT}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/personalize-batch-test"
UP = campaign_arn("demo-user-personalization")
RANKING = campaign_arn("demo-personalized-ranking")


def refused(client: Any, call: str, field: str, **body: Any) -> str:
    with pytest.raises(client.exceptions.InvalidInputException) as caught:
        getattr(client, call)(**body)
    message = str(caught.value.response["Error"]["Message"])
    assert field in message, message
    assert "not valid Unicode" in message, message
    return message


@pytest.mark.parametrize(
    ("call", "field", "body"),
    [
        ("get_recommendations", "userId", {"campaignArn": UP, "userId": "user-1" + LONE}),
        (
            "get_recommendations",
            "context.DEVICE",
            {"campaignArn": UP, "userId": "u", "context": {"DEVICE": LONE}},
        ),
        (
            "get_recommendations",
            "a field name of filterValues",
            {"campaignArn": UP, "filterValues": {LONE: "x"}},
        ),
        (
            "get_personalized_ranking",
            "inputList[1]",
            {"campaignArn": RANKING, "userId": "user-1", "inputList": ["item-1", LONE + "x"]},
        ),
    ],
)
def test_the_runtime_refuses_it_naming_the_field(
    runtime: Any, call: str, field: str, body: dict[str, Any]
) -> None:
    # When a runtime request holds a lone surrogate, Then it is a 400 naming the field (an answer
    # that echoed the string, as inputList items are, used to get no response at all)
    refused(runtime, call, field, **body)


def test_an_unknown_field_with_an_invalid_name_is_refused_with_an_answer(runtime_url: str) -> None:
    # Given a body whose unknown field's name is a lone surrogate (it used to be echoed in the error)
    # (botocore cannot send an unknown field: the raw body goes over plain HTTP)
    raw = b'{"campaignArn": "' + UP.encode() + b'", "\\ud800": 1}'
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(f"{runtime_url}/recommendations", data=raw), timeout=10)
    # Then the answer is a Personalize error, in valid UTF-8 JSON
    body = json.loads(caught.value.read().decode("utf-8"))
    assert caught.value.code == 400
    assert caught.value.headers["x-amzn-ErrorType"] == "InvalidInputException"
    assert body["message"].startswith("a field name of the request body is not valid Unicode")


def test_the_control_plane_refuses_it_and_stores_nothing(control_plane: Any, batch_env: BatchEnv) -> None:
    version = f"{ARN}:solution/demo-batch/v1"
    # When each create holds a lone surrogate somewhere in its body
    refused(
        control_plane,
        "create_filter",
        "filterExpression",
        name="bad-unicode",
        datasetGroupArn=f"{ARN}:dataset-group/demo-user-personalization",
        filterExpression=f'EXCLUDE ItemID WHERE Items.GENRE IN ("{LONE}")',
    )
    refused(
        control_plane,
        "create_campaign",
        "campaignConfig.itemExplorationConfig.explorationWeight",
        name="bad-unicode",
        solutionVersionArn=version,
        campaignConfig={"itemExplorationConfig": {"explorationWeight": LONE}},
    )
    refused(
        control_plane,
        "create_batch_inference_job",
        "jobInput.s3DataSource.path",
        jobName="bad-unicode",
        solutionVersionArn=version,
        jobInput={"s3DataSource": {"path": f"s3://{batch_env.data_bucket}/in{LONE}.jsonl"}},
        jobOutput={"s3DataDestination": {"path": f"s3://{batch_env.data_bucket}/out/"}},
        roleArn=ROLE,
    )
    # Then nothing was stored
    assert "bad-unicode" not in [f["name"] for f in control_plane.list_filters()["Filters"]]
    assert "bad-unicode" not in [c["name"] for c in control_plane.list_campaigns()["campaigns"]]
    assert control_plane.list_batch_inference_jobs()["batchInferenceJobs"] == []


def test_records_stored_before_the_check_are_described_listed_and_deleted(
    control_plane: Any, batch_env: BatchEnv, s3: Any, serving_env: str
) -> None:
    # Given a filter, a campaign and a job stored with lone surrogates (as the service once accepted)
    now = time.time()
    filter_arn, campaign = f"{ARN}:filter/legacy", f"{ARN}:campaign/legacy"
    legacy_filter = {
        "filterArn": filter_arn,
        "name": "legacy",
        "datasetGroupArn": f"{ARN}:dataset-group/demo-user-personalization",
        "filterExpression": f'EXCLUDE ItemID WHERE Items.GENRE IN ("{LONE}")',
        "status": "ACTIVE",
        "creationDateTime": now,
        "lastUpdatedDateTime": now,
    }
    pointer = json.loads(
        s3.get_object(Bucket=serving_env, Key="campaigns/demo-user-personalization.json")["Body"].read()
    )
    legacy_campaign = {
        **pointer,
        "campaignArn": campaign,
        "name": "legacy",
        "campaignConfig": {"itemExplorationConfig": {"w": LONE}},
    }
    for key, record in (("filters/legacy.json", legacy_filter), ("campaigns/legacy.json", legacy_campaign)):
        s3.put_object(Bucket=serving_env, Key=key, Body=json.dumps(record).encode())  # ASCII escapes
    # When they are described and listed, Then every answer comes back, with the string as stored
    described = control_plane.describe_filter(filterArn=filter_arn)["filter"]
    assert described["filterExpression"] == legacy_filter["filterExpression"]
    assert control_plane.describe_campaign(campaignArn=campaign)["campaign"]["campaignConfig"] == {
        "itemExplorationConfig": {"w": LONE}
    }
    assert "legacy" in [f["name"] for f in control_plane.list_filters()["Filters"]]
    assert "legacy" in [c["name"] for c in control_plane.list_campaigns()["campaigns"]]
    # And they can be deleted
    control_plane.delete_filter(filterArn=filter_arn)
    control_plane.delete_campaign(campaignArn=campaign)
    with pytest.raises(control_plane.exceptions.ResourceNotFoundException):
        control_plane.describe_filter(filterArn=filter_arn)


def stored_job(batch_env: BatchEnv, name: str, source: str) -> Job:
    now = time.time()
    job = Job(
        name=name,
        arn=f"{ARN}:batch-inference-job/{name}",
        solution_version_arn=f"{ARN}:solution/demo-batch/v1",
        role_arn=ROLE,
        num_results=5,
        job_input={"s3DataSource": {"path": source}},
        job_output={"s3DataDestination": {"path": f"s3://{batch_env.data_bucket}/out-{name}/"}},
        config={},
        mode="BATCH_INFERENCE",
        status=JobStatus.PENDING,
        created_at=now,
        updated_at=now,
    )
    JobsTable(batch_env.table).create(job)
    return job


@pytest.mark.usefixtures("batch_event_version")
def test_a_stored_job_holding_it_fails_at_once_with_a_reason(control_plane: Any, batch_env: BatchEnv) -> None:
    # Given a job recorded (before the check) with a lone surrogate in its input path, and queued
    job = stored_job(batch_env, "legacy-job", f"s3://{batch_env.data_bucket}/in{LONE}.jsonl")
    ShardQueue(batch_env.queue_url).send([Message("plan", job.name)])
    # When the worker takes its plan message once
    batch_env.poller.drain()
    # Then the job failed on the first receive, with a reason (not retried as if transient)
    described = control_plane.describe_batch_inference_job(batchInferenceJobArn=job.arn)["batchInferenceJob"]
    assert described["status"] == "CREATE FAILED"
    assert "not valid Unicode" in described["failureReason"]
    assert batch_env.poller.invocations == 1
    # And it is listed with valid JSON
    listed = control_plane.list_batch_inference_jobs()["batchInferenceJobs"]
    assert [(j["jobName"], j["status"]) for j in listed] == [("legacy-job", "CREATE FAILED")]


@pytest.mark.usefixtures("batch_event_version")
def test_a_batch_line_holding_it_is_an_error_line(control_plane: Any, batch_env: BatchEnv, s3: Any) -> None:
    # Given an input whose second line's userId is a lone surrogate
    lines = ['{"userId": "user-1"}', '{"userId": "user-2\\ud800"}', '{"userId": "user-3"}']
    s3.put_object(Bucket=batch_env.data_bucket, Key="u.jsonl", Body="\n".join(lines).encode())
    arn = control_plane.create_batch_inference_job(
        jobName="unicode-lines",
        solutionVersionArn=f"{ARN}:solution/demo-batch/v1",
        jobInput={"s3DataSource": {"path": f"s3://{batch_env.data_bucket}/u.jsonl"}},
        jobOutput={"s3DataDestination": {"path": f"s3://{batch_env.data_bucket}/u-out/"}},
        roleArn=ROLE,
    )["batchInferenceJobArn"]
    # When the job runs
    batch_env.poller.drain()
    # Then it is ACTIVE, and that line is an error line naming the field, in valid UTF-8
    assert (
        control_plane.describe_batch_inference_job(batchInferenceJobArn=arn)["batchInferenceJob"]["status"]
        == "ACTIVE"
    )
    out = s3.get_object(Bucket=batch_env.data_bucket, Key="u-out/u.jsonl.out")["Body"].read().decode("utf-8")
    answers = [json.loads(line) for line in out.splitlines()]
    assert [a["error"] is None for a in answers] == [True, False, True]
    assert answers[1]["error"].startswith("userId is not valid Unicode")
    assert answers[1]["input"] == {"userId": "user-2" + LONE}


def test_json_out_never_fails() -> None:
    # Given values holding lone surrogates, and ordinary non-ASCII text
    # Then dumps writes them as UTF-8-encodable JSON that reads back the same
    for value in ({"a": LONE}, [LONE + "é"], {LONE: 1}, {"ok": "é✓"}):
        text = dumps(value)
        text.encode("utf-8")
        assert json.loads(text) == value
    assert dumps({"ok": "é✓"}) == '{"ok":"é✓"}'  # non-ASCII stays as it is when it can
