"""A campaign only points at a verified version; one bad object never causes a 500 (issue 16).

- CreateCampaign, UpdateCampaign and the CLI's ``campaign`` verify a version's files against its
  manifest (sizes, checksums: S3's stored CRC-32 when the object has one, the data otherwise) and
  refuse a bad one saying why; a refused update is what DescribeCampaign reports as the latest
  update (CREATE FAILED, failureReason) while the campaign serves as before;
- a garbled manifest, filter or campaign record is skipped (and logged) by lists, described as
  CREATE FAILED with the reason, deletable, and a clear InvalidInputException for an operation that
  needs it; the CLI prints one line, no traceback.
Unchanged boto3 clients over real HTTP; the bucket is moto's S3.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from typing import Any

import pytest

from lambda_personalize.cli import main
from lambda_personalize.console import list_campaigns
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.pointers import verify_version
from personalize_core.modelstore.writer import read_manifest
from personalize_core.observability import logger
from tests.conftest import BatchEnv, publish
from tests.utils import ACCOUNT, REGION, random_model

ARN = f"arn:aws:personalize:{REGION}:{ACCOUNT}"


def versions(s3: Any, bucket: str, solution: str) -> tuple[str, str]:
    """Two good versions of a solution (the campaign ``<solution>`` on the first)."""
    first = publish(
        s3, bucket, solution, Recipe.USER_PERSONALIZATION, random_model(30, 5, 4), campaign=solution
    )
    second = publish(s3, bucket, solution, Recipe.USER_PERSONALIZATION, random_model(30, 5, 4, seed=5))
    return first, second


def flip(s3: Any, bucket: str, version_arn: str, file_name: str) -> None:
    solution, version = version_arn.split(":solution/")[1].split("/")
    key = f"solutions/{solution}/{version}/{file_name}"
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=data[:-1] + bytes([data[-1] ^ 1]))


def test_update_campaign_refuses_a_corrupt_version_and_describe_reports_it(
    personalize: Any, s3: Any, serving_env: str
) -> None:
    # Given a campaign on a good version, and another version whose item matrix was bit-flipped
    good, bad = versions(s3, serving_env, "verified-update")
    campaign = f"{ARN}:campaign/verified-update"
    flip(s3, serving_env, bad, "item_factors.npy")
    # When it is switched to the corrupt version
    with pytest.raises(personalize.exceptions.InvalidInputException) as caught:
        personalize.update_campaign(campaignArn=campaign, solutionVersionArn=bad)
    # Then the switch is refused, naming the version and the file
    message = caught.value.response["Error"]["Message"]
    assert message.startswith(f"Solution version {bad} cannot be served: item_factors.npy does not match")
    # And DescribeCampaign says the campaign serves the good one, and that the update failed
    described = personalize.describe_campaign(campaignArn=campaign)["campaign"]
    assert (described["status"], described["solutionVersionArn"]) == ("ACTIVE", good)
    latest = described["latestCampaignUpdate"]
    assert (latest["status"], latest["solutionVersionArn"]) == ("CREATE FAILED", bad)
    assert latest["failureReason"] == message
    # And a later good update succeeds, clears the failure and keeps the one before as the fallback
    third = publish(
        s3, serving_env, "verified-update", Recipe.USER_PERSONALIZATION, random_model(30, 5, 4, seed=6)
    )
    personalize.update_campaign(campaignArn=campaign, solutionVersionArn=third)
    described = personalize.describe_campaign(campaignArn=campaign)["campaign"]
    assert described["latestCampaignUpdate"]["status"] == "ACTIVE"
    record = json.loads(
        s3.get_object(Bucket=serving_env, Key="campaigns/verified-update.json")["Body"].read()
    )
    assert (record["solutionVersionArn"], record["fallbackSolutionVersionArn"]) == (third, good)


@pytest.mark.parametrize(
    ("missing", "reason"),
    [
        ("user_pages.index.npy", r"user_pages\.index\.npy is missing"),
        # a page file: not listed one by one, counted (and summed) from one listing
        ("user_pages/000000.bin", r"user_pages/ holds 0 files of 0 bytes, its manifest says 1 files"),
    ],
)
def test_create_campaign_refuses_a_version_with_a_missing_file(
    personalize: Any, s3: Any, serving_env: str, missing: str, reason: str
) -> None:
    name = "verified-create" + ("-page" if missing.startswith("user_pages/") else "")
    _, bad = versions(s3, serving_env, name)
    solution, version = bad.split(":solution/")[1].split("/")
    s3.delete_object(Bucket=serving_env, Key=f"solutions/{solution}/{version}/{missing}")
    with pytest.raises(personalize.exceptions.InvalidInputException, match=reason):
        personalize.create_campaign(name=f"{name}-2", solutionVersionArn=bad)
    with pytest.raises(personalize.exceptions.ResourceNotFoundException):
        personalize.describe_campaign(campaignArn=f"{ARN}:campaign/{name}-2")


def test_verification_uses_s3s_stored_checksums_and_reads_only_without_them(s3: Any, bucket: str) -> None:
    # Given a version as the writer stores it (S3 keeps each file's CRC-32)
    models = ModelBucket(s3, bucket)
    arn = publish(s3, bucket, "sums", Recipe.USER_PERSONALIZATION, random_model(200, 20, 8))
    manifest = read_manifest(models, arn)
    # When it is verified, Then no byte of data is read: one HEAD a file
    assert verify_version(models, manifest) == 0
    # And a file S3 has no checksum for (written before the writer stored them) is read instead
    key = f"solutions/sums/{manifest.version}/item_factors.npy"
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256")  # no CRC-32 stored
    assert verify_version(models, manifest) == len(data)


@pytest.mark.parametrize("change", ["flip", "truncate"])
def test_the_cli_refuses_a_corrupt_version_with_one_line(
    s3: Any, bucket: str, moto_url: str, capsys: pytest.CaptureFixture[str], change: str
) -> None:
    good, bad = versions(s3, bucket, "cli")
    solution, version = bad.split(":solution/")[1].split("/")
    key = f"solutions/{solution}/{version}/user_pages.index.npy"
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(
        Bucket=bucket, Key=key, Body=data[:-1] + bytes([data[-1] ^ 1]) if change == "flip" else data[:100]
    )
    where = ["--bucket", bucket, "--endpoint-url", moto_url, "--region", REGION]
    # When the CLI points the campaign at it
    code = main(["campaign", *where, "--name", "cli", "--solution-version-arn", bad])
    # Then it exits 2 with one clear line (no traceback), and the campaign keeps its version
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(
        f"lambda-personalize: error: Solution version {bad} cannot be served: user_pages.index.npy"
    )
    assert err.rstrip().endswith(f"campaign cli keeps serving {good}")
    assert "Traceback" not in err
    record = json.loads(s3.get_object(Bucket=bucket, Key="campaigns/cli.json")["Body"].read())
    assert record["solutionVersionArn"] == good


# ---------------------------------------------------------------- one bad object


@contextlib.contextmanager
def logged() -> Any:
    """What the functions log, on the service's own logger (as test_security captures it)."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logger.registered_formatter)
    service = logging.getLogger(logger.service)
    previous = service.level
    service.addHandler(handler)
    service.setLevel(logging.INFO)
    try:
        yield sink
    finally:
        service.removeHandler(handler)
        service.setLevel(previous)


GARBLED = b'{"formatVersion": 1, "solutionVersionArn": '  # cut short: not JSON


def test_one_garbled_manifest_breaks_nothing_else(
    control_plane: Any,
    s3: Any,
    serving_env: str,
    batch_env: BatchEnv,
    moto_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a solution with a good version, a campaign on it, and a version whose manifest is garbled
    good, bad = versions(s3, serving_env, "garbled")
    solution, version = bad.split(":solution/")[1].split("/")
    s3.put_object(Bucket=serving_env, Key=f"solutions/{solution}/{version}/manifest.json", Body=GARBLED)
    # Then lists skip it (and log its key), and show everything else
    with logged() as sink:
        listed = control_plane.list_solution_versions(solutionArn=f"{ARN}:solution/garbled")[
            "solutionVersions"
        ]
        everything = [
            v["solutionVersionArn"]
            for page in control_plane.get_paginator("list_solution_versions").paginate()
            for v in page["solutionVersions"]
        ]
    assert [v["solutionVersionArn"] for v in listed] == [good]
    assert good in everything
    assert bad not in everything
    assert f"solutions/{solution}/{version}/manifest.json" in sink.getvalue()
    # And Describe of it says it failed, and why
    described = control_plane.describe_solution_version(solutionVersionArn=bad)["solutionVersion"]
    assert described["status"] == "CREATE FAILED"
    assert "not valid JSON" in described["failureReason"]
    # And what needs it is a clear 400; what does not still works
    campaign = f"{ARN}:campaign/garbled"
    for call in (
        lambda: control_plane.update_campaign(campaignArn=campaign, solutionVersionArn=bad),
        lambda: control_plane.create_campaign(name="garbled-2", solutionVersionArn=bad),
        lambda: control_plane.create_batch_inference_job(
            jobName="garbled",
            solutionVersionArn=bad,
            jobInput={"s3DataSource": {"path": f"s3://{batch_env.data_bucket}/in.jsonl"}},
            jobOutput={"s3DataDestination": {"path": f"s3://{batch_env.data_bucket}/out/"}},
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/personalize-batch-test",
        ),
    ):
        with pytest.raises(control_plane.exceptions.InvalidInputException, match="not valid JSON"):
            call()
    control_plane.update_campaign(campaignArn=campaign, minProvisionedTPS=2)
    # (CreateFilter checks against the newest readable version: the good one, past the garbled one)
    with pytest.raises(control_plane.exceptions.InvalidInputException) as caught:
        control_plane.create_filter(
            name="garbled-ok",
            datasetGroupArn=f"{ARN}:dataset-group/garbled",
            filterExpression='EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("watch")',
        )
    assert caught.value.response["Error"]["Message"].endswith(f"(checked against {good})")
    # And the CLI says so in one line
    where = ["--bucket", serving_env, "--endpoint-url", moto_url, "--region", REGION]
    assert main(["campaign", *where, "--name", "garbled", "--solution-version-arn", bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lambda-personalize: error: solution version {bad}: ")
    assert "Traceback" not in err


def test_garbled_filter_and_campaign_records_are_skipped_described_and_deletable(
    control_plane: Any, s3: Any, serving_env: str
) -> None:
    # Given a filter record and a campaign record that are not JSON
    s3.put_object(Bucket=serving_env, Key="filters/broken.json", Body=b"{not json")
    s3.put_object(Bucket=serving_env, Key="campaigns/broken.json", Body=b'["a list"]')
    filter_arn, campaign_arn = f"{ARN}:filter/broken", f"{ARN}:campaign/broken"
    # Then lists skip them
    assert "broken" not in [f["name"] for f in control_plane.list_filters()["Filters"]]
    assert "broken" not in [c["name"] for c in control_plane.list_campaigns()["campaigns"]]
    # And Describe says they failed, and why
    described_filter = control_plane.describe_filter(filterArn=filter_arn)["filter"]
    described_campaign = control_plane.describe_campaign(campaignArn=campaign_arn)["campaign"]
    for described in (described_filter, described_campaign):
        assert described["status"] == "CREATE FAILED"
        assert "unreadable" in described["failureReason"]
    # And an update of the campaign is a clear 400, and both can be deleted
    with pytest.raises(control_plane.exceptions.InvalidInputException, match="unreadable"):
        control_plane.update_campaign(campaignArn=campaign_arn, minProvisionedTPS=2)
    assert [c["name"] for c in list_campaigns(s3, serving_env) if c["name"] == "broken"] == []
    control_plane.delete_filter(filterArn=filter_arn)
    control_plane.delete_campaign(campaignArn=campaign_arn)
    assert s3.list_objects_v2(Bucket=serving_env, Prefix="filters/broken").get("KeyCount") == 0
