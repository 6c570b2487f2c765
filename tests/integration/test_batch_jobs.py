"""Batch inference jobs end to end: an unchanged boto3 ``personalize`` client on the control plane
(real HTTP), DynamoDB / SQS / S3 / STS in the embedded AWS, and the SQS poller driving the worker.

Every ``.out`` line is checked against what the real-time API (the ``runtime`` fixture) answers.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config

from personalize_core import batch
from personalize_core.batch import storage as batch_storage
from personalize_core.batch.jobs import JobStatus
from personalize_core.batch.queue import Message, ShardQueue
from personalize_core.batch.storage import JobStorage
from personalize_core.modelstore.layout import Recipe
from tests.conftest import BatchEnv, publish
from tests.utils import ACCOUNT, REGION, campaign_arn, random_model

ROLE = f"arn:aws:iam::{ACCOUNT}:role/personalize-batch-test"
RECIPE_CAMPAIGNS = {
    "USER_PERSONALIZATION": "demo-user-personalization",
    "RELATED_ITEMS": "demo-related-items",
    "POPULAR_ITEMS": "demo-popular-items",
    "PERSONALIZED_RANKING": "demo-personalized-ranking",
}
USERS = [f"user-{u}" for u in (0, 3, 7, 3, 49, 12)] + ["nobody", "user-1"]
ITEMS = [f"item-{i}" for i in (0, 5, 299, 17, 5)] + ["no-such-item", "item-120"]
RANKING = [
    {"userId": "user-2", "itemList": ["item-3", "item-200", "item-7", "item-3", "ghost", "item-42"]},
    {"userId": "nobody", "itemList": ["item-9", "item-1", "ghost"]},
    {"userId": "user-5", "itemList": ["ghost"]},
    {"userId": "user-8", "itemList": [f"item-{i}" for i in range(0, 300, 7)]},
]


# ---------------------------------------------------------------- helpers


def version_arn(s3: Any, serving_bucket: str, campaign: str) -> str:
    pointer = json.loads(
        s3.get_object(Bucket=serving_bucket, Key=f"campaigns/{campaign}.json")["Body"].read()
    )
    return str(pointer["solutionVersionArn"])


def put_lines(s3: Any, bucket: str, key: str, lines: list[Any]) -> None:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    s3.put_object(Bucket=bucket, Key=key, Body=text.encode())


def read_out(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert body.endswith("\n") or body == ""
    return [json.loads(line) for line in body.splitlines()]


def create(control_plane: Any, name: str, version: str, source: str, destination: str, **extra: Any) -> str:
    return str(
        control_plane.create_batch_inference_job(
            jobName=name,
            solutionVersionArn=version,
            jobInput={"s3DataSource": {"path": source}},
            jobOutput={"s3DataDestination": {"path": destination}},
            roleArn=ROLE,
            **extra,
        )["batchInferenceJobArn"]
    )


def describe(control_plane: Any, arn: str) -> dict[str, Any]:
    job: dict[str, Any] = control_plane.describe_batch_inference_job(batchInferenceJobArn=arn)[
        "batchInferenceJob"
    ]
    return job


def realtime(runtime: Any, recipe: str, given: dict[str, Any], k: int) -> dict[str, Any]:
    """The real-time API's answer for a batch input line, in the batch output's shape."""
    arn = campaign_arn(RECIPE_CAMPAIGNS[recipe])
    if recipe == "PERSONALIZED_RANKING":
        items = runtime.get_personalized_ranking(
            campaignArn=arn, userId=given["userId"], inputList=given["itemList"]
        )["personalizedRanking"]
    else:
        key = "itemId" if recipe == "RELATED_ITEMS" else "userId"
        items = runtime.get_recommendations(campaignArn=arn, numResults=k, **{key: given[key]})["itemList"]
    output: dict[str, Any] = {"recommendedItems": [item["itemId"] for item in items]}
    if any("score" in item for item in items):
        output["scores"] = [item.get("score") for item in items]
    return output


def assert_matches_realtime(runtime: Any, recipe: str, lines: list[dict[str, Any]], k: int) -> None:
    for line in lines:
        expected = realtime(runtime, recipe, line["input"], k)
        assert line["error"] is None, line
        assert line["output"]["recommendedItems"] == expected["recommendedItems"], line["input"]
        assert ("scores" in line["output"]) == ("scores" in expected), line["input"]
        for got, want in zip(line["output"].get("scores", []), expected.get("scores", []), strict=True):
            assert (got is None) == (want is None)
            if want is not None:
                assert got == pytest.approx(want, rel=1e-6)


def recipe_inputs(recipe: str) -> list[dict[str, Any]]:
    if recipe == "RELATED_ITEMS":
        return [{"itemId": i} for i in ITEMS]
    if recipe == "PERSONALIZED_RANKING":
        return RANKING
    return [{"userId": u} for u in USERS]


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("recipe", sorted(RECIPE_CAMPAIGNS))
def test_a_job_per_recipe_answers_every_line_as_the_realtime_api(
    recipe: str, batch_env: BatchEnv, control_plane: Any, runtime: Any, s3: Any, serving_bucket: str
) -> None:
    # Given a JSON Lines input (larger than one 256-byte shard) and the recipe's solution version
    bucket = batch_env.data_bucket
    inputs = recipe_inputs(recipe)
    put_lines(s3, bucket, "in/lines.jsonl", inputs)
    version = version_arn(s3, serving_bucket, RECIPE_CAMPAIGNS[recipe])
    k = 7

    # When a job is created, Then it is recorded as CREATE PENDING with the request as given
    name = f"job-{recipe.lower().replace('_', '-')}"
    arn = create(
        control_plane,
        name,
        version,
        f"s3://{bucket}/in/lines.jsonl",
        f"s3://{bucket}/out/",
        numResults=k,
    )
    assert arn == f"arn:aws:personalize:{REGION}:{ACCOUNT}:batch-inference-job/{name}"
    pending = describe(control_plane, arn)
    assert pending["status"] == "CREATE PENDING"
    assert pending["numResults"] == k
    assert pending["solutionVersionArn"] == version
    assert pending["roleArn"] == ROLE
    assert pending["jobInput"] == {"s3DataSource": {"path": f"s3://{bucket}/in/lines.jsonl"}}

    # When the worker runs (plan, then several shards through SQS)
    invocations = batch_env.poller.drain()

    # Then the job is ACTIVE and <name>.out holds one line per input line, in order, each equal to
    # the real-time API's answer for the same input
    done = describe(control_plane, arn)
    assert done["status"] == "ACTIVE", done.get("failureReason")
    assert done["lastUpdatedDateTime"] >= done["creationDateTime"]
    assert invocations >= 2
    lines = read_out(s3, bucket, "out/lines.jsonl.out")
    assert [line["input"] for line in lines] == inputs
    assert_matches_realtime(runtime, recipe, lines, k)
    # And the job's working files are gone; only the output is left
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]]
    assert keys == ["out/lines.jsonl.out"]


def test_a_prefix_with_several_files_gives_one_out_per_file(
    batch_env: BatchEnv, control_plane: Any, runtime: Any, s3: Any, serving_bucket: str
) -> None:
    # Given three input files under a prefix (one nested, one empty) and a file outside it
    bucket = batch_env.data_bucket
    files = {
        "in/a.jsonl": [{"userId": f"user-{u}"} for u in range(0, 30)],
        "in/b.json": [{"userId": "user-44"}, {"userId": "nobody"}],
        "in/sub/c.jsonl": [{"userId": f"user-{u}"} for u in range(49, 20, -3)],
    }
    for key, lines in files.items():
        put_lines(s3, bucket, key, lines)
    s3.put_object(Bucket=bucket, Key="in/empty.jsonl", Body=b"")
    put_lines(s3, bucket, "elsewhere.jsonl", [{"userId": "user-1"}])
    version = version_arn(s3, serving_bucket, "demo-user-personalization")

    # When a job reads the prefix with the default numResults
    arn = create(control_plane, "prefix-job", version, f"s3://{bucket}/in/", f"s3://{bucket}/results")
    batch_env.poller.drain()

    # Then each file has its .out (the path below the prefix kept), lines in input order
    assert describe(control_plane, arn)["status"] == "ACTIVE"
    for key, inputs in files.items():
        lines = read_out(s3, bucket, "results/" + key.removeprefix("in/") + ".out")
        assert [line["input"] for line in lines] == inputs
        assert_matches_realtime(runtime, "USER_PERSONALIZATION", lines, 25)
        assert all(len(line["output"]["recommendedItems"]) == 25 for line in lines)
    assert read_out(s3, bucket, "results/empty.jsonl.out") == []
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="results/")["Contents"]}
    assert listed == {
        "results/a.jsonl.out",
        "results/b.json.out",
        "results/sub/c.jsonl.out",
        "results/empty.jsonl.out",
    }


def test_bad_lines_become_error_lines_and_the_job_goes_on(
    batch_env: BatchEnv, control_plane: Any, runtime: Any, s3: Any, serving_bucket: str
) -> None:
    # Given good lines around lines that cannot be answered (and a blank line, which is no record)
    bucket = batch_env.data_bucket
    raw = [
        '{"userId": "user-1"}',
        "this is not json",
        '{"itemId": "item-3"}',
        '{"userId": 42}',
        "",
        '["user-2"]',
        '{"userId": "user-2", "extra": 1}',
        '{"userId": "user-3", "filterValues": {"GENRE": "\\"comedy\\""}}',
        '{"userId": "' + "x" * 257 + '"}',
        '{"userId": "user-4"}',
    ]
    s3.put_object(Bucket=bucket, Key="in.jsonl", Body=("\n".join(raw) + "\n").encode())
    version = version_arn(s3, serving_bucket, "demo-user-personalization")

    # When the job runs
    arn = create(control_plane, "bad-lines", version, f"s3://{bucket}/in.jsonl", f"s3://{bucket}/out/")
    batch_env.poller.drain()

    # Then it is ACTIVE, with one line per record: answers for the good ones, errors for the others
    assert describe(control_plane, arn)["status"] == "ACTIVE"
    lines = read_out(s3, bucket, "out/in.jsonl.out")
    assert len(lines) == 9
    errors = [line["error"] for line in lines]
    assert errors[0] is None
    assert errors[8] is None
    assert_matches_realtime(runtime, "USER_PERSONALIZATION", [lines[0], lines[8]], 25)
    # An error line keeps the output's shape, empty, beside its error (as Personalize writes it)
    assert lines[1] == {
        "input": "this is not json",
        "output": {"recommendedItems": [], "scores": []},
        "error": "The line is not valid JSON",
    }
    assert lines[2]["input"] == {"itemId": "item-3"}
    assert "Unknown field itemId" in errors[2]
    assert "userId must be a string" in errors[3]
    assert lines[4]["input"] == ["user-2"]
    assert "must be a JSON object" in errors[4]
    assert "Unknown field extra" in errors[5]
    assert "filterValues needs the job's filterArn" in errors[6]
    assert "userId must be at most 256 characters" in errors[7]
    assert all(line["output"] == {"recommendedItems": [], "scores": []} for line in lines[1:8])
    # So a typical client loop over the output runs through every line, errors included
    recommended = {}
    for line in lines:
        for item, score in zip(line["output"]["recommendedItems"], line["output"]["scores"], strict=True):
            recommended.setdefault(json.dumps(line["input"]), []).append((item, float(score)))
    assert len(recommended) == 2


@pytest.mark.parametrize(
    ("source", "destination", "reason"),
    [
        ("s3://{bucket}/missing.jsonl", "s3://{bucket}/out/", "does not exist"),
        ("s3://{bucket}/nothing-here/", "s3://{bucket}/out/", "holds no files"),
        (
            "s3://{bucket}/in.jsonl",
            "s3://no-such-bucket-{suffix}/out/",
            "Cannot write to the output location",
        ),
    ],
)
def test_a_job_that_cannot_run_fails_with_a_reason(
    batch_env: BatchEnv,
    control_plane: Any,
    s3: Any,
    serving_bucket: str,
    source: str,
    destination: str,
    reason: str,
) -> None:
    # Given an input or output location the job cannot use
    bucket = batch_env.data_bucket
    put_lines(s3, bucket, "in.jsonl", [{"userId": "user-1"}])
    version = version_arn(s3, serving_bucket, "demo-user-personalization")
    suffix = uuid.uuid4().hex[:8]

    # When the job runs
    arn = create(
        control_plane,
        "doomed",
        version,
        source.format(bucket=bucket),
        destination.format(suffix=suffix, bucket=bucket),
    )
    batch_env.poller.drain()

    # Then it is CREATE FAILED, saying why, and nothing went to the dead-letter queue
    job = describe(control_plane, arn)
    assert job["status"] == "CREATE FAILED"
    assert reason in job["failureReason"]
    summary = control_plane.list_batch_inference_jobs()["batchInferenceJobs"][0]
    assert summary["status"] == "CREATE FAILED"
    assert reason in summary["failureReason"]
    assert batch_env.poller.failures == 0


def test_a_solution_version_removed_after_create_fails_the_job(
    batch_env: BatchEnv, control_plane: Any, s3: Any, serving_bucket: str
) -> None:
    # Given a job on a solution version that is deleted before the job runs
    version = publish(
        s3,
        serving_bucket,
        f"doomed-{uuid.uuid4().hex[:6]}",
        Recipe.POPULAR_ITEMS,
        random_model(20, 3, 4, seed=3),
    )
    put_lines(s3, batch_env.data_bucket, "in.jsonl", [{"userId": "user-1"}])
    bucket = batch_env.data_bucket
    arn = create(control_plane, "version-gone", version, f"s3://{bucket}/in.jsonl", f"s3://{bucket}/out/")
    solution, vid = version.split("/")[-2:]
    s3.delete_object(Bucket=serving_bucket, Key=f"solutions/{solution}/{vid}/manifest.json")

    # When the worker runs
    batch_env.poller.drain()

    # Then the job failed, naming the version
    job = describe(control_plane, arn)
    assert job["status"] == "CREATE FAILED"
    assert version in job["failureReason"]


def test_a_missing_user_page_fails_the_job_naming_it(
    batch_env: BatchEnv, control_plane: Any, s3: Any, serving_bucket: str
) -> None:
    # Given a job on a version whose user pages are deleted before the job runs
    version = publish(
        s3,
        serving_bucket,
        f"pageless-{uuid.uuid4().hex[:6]}",
        Recipe.USER_PERSONALIZATION,
        random_model(20, 30, 4, seed=5),
    )
    solution, vid = version.split("/")[-2:]
    s3.delete_object(Bucket=serving_bucket, Key=f"solutions/{solution}/{vid}/user_pages/000000.bin")
    bucket = batch_env.data_bucket
    put_lines(s3, bucket, "pageless.jsonl", [{"userId": "user-1"}, {"userId": "user-2"}])
    arn = create(control_plane, "pageless", version, f"s3://{bucket}/pageless.jsonl", f"s3://{bucket}/out/")

    # When the worker runs
    batch_env.poller.drain()

    # Then the job failed at once (retrying cannot bring the page back), naming the page
    job = describe(control_plane, arn)
    assert job["status"] == "CREATE FAILED"
    assert "user_pages/000000.bin" in job["failureReason"]
    assert "does not exist" in job["failureReason"]
    assert batch_env.poller.failures == 0


# ---------------------------------------------------------------- the API's errors


def test_create_refuses_what_it_cannot_do(
    batch_env: BatchEnv, control_plane: Any, s3: Any, serving_bucket: str
) -> None:
    version = version_arn(s3, serving_bucket, "demo-user-personalization")
    bucket = batch_env.data_bucket
    path = f"s3://{bucket}/in.jsonl"
    # Given a job that exists
    create(control_plane, "taken", version, path, f"s3://{bucket}/out/")
    # Then its name cannot be used again
    with pytest.raises(control_plane.exceptions.ResourceAlreadyExistsException, match="taken"):
        create(control_plane, "taken", version, path, f"s3://{bucket}/out/")
    # And an unknown solution version is a ResourceNotFoundException
    missing = version.rsplit("/", 1)[0] + "/nope"
    with pytest.raises(control_plane.exceptions.ResourceNotFoundException, match="nope"):
        create(control_plane, "other", missing, path, f"s3://{bucket}/out/")
    # And a filter that does not exist is a ResourceNotFoundException
    with pytest.raises(control_plane.exceptions.ResourceNotFoundException, match="filter/f"):
        create(
            control_plane,
            "filtered",
            version,
            path,
            f"s3://{bucket}/out/",
            filterArn=f"arn:aws:personalize:{REGION}:{ACCOUNT}:filter/f",
        )


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"jobName": "x" * 64}, "InvalidInputException", "jobName must be at most 63"),
        ({"jobName": "-starts-badly"}, "InvalidInputException", "jobName"),
        ({"numResults": 501}, "InvalidInputException", "numResults must be between 1 and 500"),
        ({"numResults": 0}, "InvalidInputException", "numResults must be between 1 and 500"),
        ({"roleArn": "arn:aws:iam::12:role/r"}, "InvalidInputException", "roleArn"),
        ({"roleArn": None}, "InvalidInputException", "roleArn is required"),
        (
            {"solutionVersionArn": "arn:aws:personalize:us-east-1:1:campaign/c"},
            "InvalidInputException",
            "solution",
        ),
        (
            {"jobInput": {"s3DataSource": {"path": "https://example.com/in"}}},
            "InvalidInputException",
            "s3://",
        ),
        (
            {"jobInput": {"s3DataSource": {"path": "s3://" + "b" * 300}}},
            "InvalidInputException",
            "at most 256",
        ),
        ({"jobInput": {}}, "InvalidInputException", "jobInput.s3DataSource is required"),
        (
            {"jobOutput": {"s3DataDestination": {"path": "s3://UPPER/x/"}}},
            "InvalidInputException",
            "valid S3 bucket",
        ),
        ({"tags": [{"tagKey": f"k{i}", "tagValue": "v"} for i in range(201)]}, "TooManyTagsException", "200"),
        ({"tags": [{"tagKey": "", "tagValue": "v"}]}, "InvalidInputException", "tagKey"),
        ({"batchInferenceJobMode": "THEME_GENERATION"}, "InvalidInputException", "THEME_GENERATION"),
        (
            {"batchInferenceJobConfig": {"itemExplorationConfig": {"explorationWeight": "0.3"}}},
            "InvalidInputException",
            "itemExplorationConfig",
        ),
    ],
)
def test_create_validates_every_field(
    batch_env: BatchEnv,
    control_plane: Any,
    s3: Any,
    serving_bucket: str,
    change: dict[str, Any],
    error: str,
    message: str,
) -> None:
    # Given a valid request with one field out of the contract (sent past botocore's own checks)
    client = boto3.client(
        "personalize",
        endpoint_url=control_plane.meta.endpoint_url,
        region_name=REGION,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    request = {
        "jobName": "valid",
        "solutionVersionArn": version_arn(s3, serving_bucket, "demo-user-personalization"),
        "jobInput": {"s3DataSource": {"path": f"s3://{batch_env.data_bucket}/in.jsonl"}},
        "jobOutput": {"s3DataDestination": {"path": f"s3://{batch_env.data_bucket}/out/"}},
        "roleArn": ROLE,
    }
    request = {k: v for k, v in (request | change).items() if v is not None}
    # When it is sent, Then botocore raises the contract's error, whose message names the field
    with pytest.raises(getattr(client.exceptions, error), match=message):
        client.create_batch_inference_job(**request)
    # And no job was recorded
    assert client.list_batch_inference_jobs()["batchInferenceJobs"] == []


def test_describe_errors(control_plane: Any) -> None:
    unknown = f"arn:aws:personalize:{REGION}:{ACCOUNT}:batch-inference-job/ghost"
    with pytest.raises(control_plane.exceptions.ResourceNotFoundException, match="ghost"):
        control_plane.describe_batch_inference_job(batchInferenceJobArn=unknown)
    with pytest.raises(control_plane.exceptions.InvalidInputException, match="batch-inference-job"):
        control_plane.describe_batch_inference_job(
            batchInferenceJobArn=f"arn:aws:personalize:{REGION}:{ACCOUNT}:campaign/c"
        )


def test_list_pages_newest_first_and_refuses_foreign_tokens(
    batch_env: BatchEnv, control_plane: Any, s3: Any, serving_bucket: str
) -> None:
    # Given five jobs on two solution versions
    user_version = version_arn(s3, serving_bucket, "demo-user-personalization")
    popular_version = version_arn(s3, serving_bucket, "demo-popular-items")
    bucket = batch_env.data_bucket
    names = [f"job-{i}" for i in range(5)]
    for i, name in enumerate(names):
        create(
            control_plane,
            name,
            popular_version if i % 2 else user_version,
            f"s3://{bucket}/in.jsonl",
            f"s3://{bucket}/out/",
        )

    # When boto3's paginator walks the list two at a time
    pages = list(
        control_plane.get_paginator("list_batch_inference_jobs").paginate(PaginationConfig={"PageSize": 2})
    )

    # Then every job comes once, newest first, in pages of at most two, the last one without a token
    listed = [job["jobName"] for page in pages for job in page["batchInferenceJobs"]]
    assert listed == names[::-1]
    assert [len(p["batchInferenceJobs"]) for p in pages] == [2, 2, 1]
    assert "nextToken" not in pages[-1]
    # And a solution version's jobs can be listed alone
    only = control_plane.list_batch_inference_jobs(solutionVersionArn=popular_version)["batchInferenceJobs"]
    assert [job["jobName"] for job in only] == ["job-3", "job-1"]
    assert all(job["solutionVersionArn"] == popular_version for job in only)
    # And a token we did not issue, or issued for another listing, is InvalidNextTokenException
    token = control_plane.list_batch_inference_jobs(maxResults=1)["nextToken"]
    for bad in ("not-a-token", "eyJ4IjoxfQ==", token[:-4]):
        with pytest.raises(control_plane.exceptions.InvalidNextTokenException):
            control_plane.list_batch_inference_jobs(nextToken=bad)
    with pytest.raises(control_plane.exceptions.InvalidNextTokenException):
        control_plane.list_batch_inference_jobs(nextToken=token, solutionVersionArn=user_version)
    # And maxResults is 1-100
    client = boto3.client(
        "personalize",
        endpoint_url=control_plane.meta.endpoint_url,
        region_name=REGION,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    for bad_max in (0, 101):
        with pytest.raises(client.exceptions.InvalidInputException, match="maxResults"):
            client.list_batch_inference_jobs(maxResults=bad_max)


# ---------------------------------------------------------------- at-least-once delivery and faults


def _user_job(
    batch_env: BatchEnv, control_plane: Any, s3: Any, serving_bucket: str, name: str, files: int = 1
) -> tuple[str, list[list[dict[str, Any]]]]:
    bucket = batch_env.data_bucket
    inputs = [[{"userId": f"user-{(u * 7 + f) % 60}"} for u in range(25)] for f in range(files)]
    for f, lines in enumerate(inputs):
        put_lines(s3, bucket, f"in/{f}.jsonl", lines)
    version = version_arn(s3, serving_bucket, "demo-user-personalization")
    return create(control_plane, name, version, f"s3://{bucket}/in/", f"s3://{bucket}/out/"), inputs


def _assert_outputs(s3: Any, runtime: Any, bucket: str, inputs: list[list[dict[str, Any]]]) -> None:
    for f, expected in enumerate(inputs):
        lines = read_out(s3, bucket, f"out/{f}.jsonl.out")
        assert [line["input"] for line in lines] == expected
        assert_matches_realtime(runtime, "USER_PERSONALIZATION", lines, 25)


def test_every_message_delivered_twice_still_gives_each_line_once(
    batch_env: BatchEnv,
    control_plane: Any,
    runtime: Any,
    s3: Any,
    serving_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a queue that delivers every plan and shard message twice
    send = ShardQueue.send
    monkeypatch.setattr(ShardQueue, "send", lambda self, messages: send(self, messages + messages))
    arn, inputs = _user_job(batch_env, control_plane, s3, serving_bucket, "twice", files=2)

    # When the worker drains the queue
    batch_env.poller.drain()

    # Then each input line is answered exactly once, in order
    assert describe(control_plane, arn)["status"] == "ACTIVE"
    _assert_outputs(s3, runtime, batch_env.data_bucket, inputs)


@pytest.mark.parametrize("die_after", ["part", "first-out"])
def test_a_worker_killed_mid_shard_loses_and_duplicates_nothing(
    die_after: str,
    batch_env: BatchEnv,
    control_plane: Any,
    runtime: Any,
    s3: Any,
    serving_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a worker that dies once: right after writing a shard's part (before counting it done),
    # or as the finisher, after writing the first .out but before the second and before ACTIVE
    put = JobStorage.put
    died: list[str] = []

    def put_then_die(self: JobStorage, bucket: str, key: str, body: Any) -> None:
        put(self, bucket, key, body)
        hit = key.endswith(".jsonl") if die_after == "part" else key.endswith("0.jsonl.out")
        if hit and not died:
            died.append(key)
            raise RuntimeError("worker killed")

    monkeypatch.setattr(JobStorage, "put", put_then_die)
    arn, inputs = _user_job(batch_env, control_plane, s3, serving_bucket, f"killed-{die_after}", files=2)

    # When the queue redelivers the failed message after its visibility timeout
    batch_env.poller.drain()

    # Then the job still completes with every line once, in order
    assert died
    assert batch_env.poller.failures == 1
    assert describe(control_plane, arn)["status"] == "ACTIVE"
    _assert_outputs(s3, runtime, batch_env.data_bucket, inputs)


def test_a_finisher_running_twice_changes_nothing(
    batch_env: BatchEnv, control_plane: Any, runtime: Any, s3: Any, serving_bucket: str
) -> None:
    # Given a finished job, and the record a slow second finisher read before the first one finished
    arn, inputs = _user_job(batch_env, control_plane, s3, serving_bucket, "finish-twice")
    worker = batch.get_worker()
    batch_env.poller.drain()
    finished = worker.table.get("finish-twice")
    assert finished is not None
    assert finished.plan is not None
    before = s3.get_object(Bucket=batch_env.data_bucket, Key="out/0.jsonl.out")["Body"].read()
    stale = dataclasses.replace(finished, status=JobStatus.IN_PROGRESS)

    # When that finisher runs, and every shard message is delivered once more
    worker.finish(stale, worker.storage(finished))
    worker.queue.send([Message("shard", "finish-twice", s) for s in finished.plan.shard_ids])
    batch_env.poller.drain()

    # Then the output and the job are as they were
    after = describe(control_plane, arn)
    assert after["status"] == "ACTIVE"
    assert after["lastUpdatedDateTime"].timestamp() == pytest.approx(finished.updated_at)
    assert s3.get_object(Bucket=batch_env.data_bucket, Key="out/0.jsonl.out")["Body"].read() == before
    _assert_outputs(s3, runtime, batch_env.data_bucket, inputs)


def test_the_worker_reads_and_writes_with_the_job_role(
    batch_env: BatchEnv, control_plane: Any, s3: Any, serving_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a record of the roles the worker assumes and the credentials its S3 clients sign with
    assumed: list[tuple[str, str]] = []
    real = batch_storage.assume_role_storage

    def recording(role_arn: str, session_name: str, **kwargs: Any) -> JobStorage:
        storage = real(role_arn, session_name, **kwargs)
        assumed.append((role_arn, storage.client._request_signer._credentials.access_key))
        return storage

    monkeypatch.setattr(batch, "assume_role_storage", recording)
    arn, _ = _user_job(batch_env, control_plane, s3, serving_bucket, "as-the-role")

    # When the job runs
    batch_env.poller.drain()

    # Then every plan and shard used the job's role through STS temporary credentials
    assert describe(control_plane, arn)["status"] == "ACTIVE"
    assert assumed
    assert {role for role, _ in assumed} == {ROLE}
    assert all(key.startswith("ASIA") and key != "testing" for _, key in assumed)
