"""`make run`'s demo, trained through Personalize's own workflow against the running local stack.

The demo's interactions and items (Personalize's CSV formats, ``demo_data.py``) go to a local data
bucket; then, with an unchanged boto3 ``personalize`` client on the local API, exactly what a
team's script would do: a dataset group, schemas, datasets, import jobs, one solution per recipe,
a version of each (trained by the training function, driven by its SQS queue), one campaign per
recipe under the names ``events/*.json`` and the README use, and an event tracker (``demo-events``)
so that PutEvents, the console and the README's examples record events for the group.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from .demo_data import DEMO_CAMPAIGNS, DemoFiles

DEMO_GROUP = "demo"
DEMO_TRACKER = "demo-events"
DEMO_VERSION = "demo"  # fixed version names: the same ARNs on every `make run`
DEMO_ROLE = "arn:aws:iam::{account}:role/personalize-batch-demo"
RECIPES = {
    "demo-user-personalization": "aws-user-personalization",
    "demo-related-items": "aws-similar-items",
    "demo-popular-items": "aws-popularity-count",
    "demo-personalized-ranking": "aws-personalized-ranking",
}
SCHEMAS = {
    "INTERACTIONS": [
        {"name": "USER_ID", "type": "string"},
        {"name": "ITEM_ID", "type": "string"},
        {"name": "EVENT_TYPE", "type": "string"},
        {"name": "TIMESTAMP", "type": "long"},
    ],
    "ITEMS": [
        {"name": "ITEM_ID", "type": "string"},
        {"name": "TITLE", "type": "string", "textual": True},
        {"name": "GENRES", "type": ["null", "string"], "categorical": True},
        {"name": "YEAR", "type": "int"},
        {"name": "PRICE", "type": "float"},
    ],
}


class DemoTrainingError(Exception):
    """A step of the demo's workflow failed (its reason is Personalize's failureReason)."""


def _wait(describe: Callable[[], dict[str, Any]], what: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = describe()
        if found["status"] == "ACTIVE":
            return found
        if found["status"] in ("CREATE FAILED", "CREATE STOPPED"):
            raise DemoTrainingError(f"{what}: {found['status']} {found.get('failureReason', '')}")
        if time.monotonic() > deadline:
            raise DemoTrainingError(f"{what} is still {found['status']} after {timeout:.0f} s")
        time.sleep(0.1)


def train_demo(
    personalize: Any, s3: Any, files: DemoFiles, data_bucket: str, account: str, timeout: float = 600.0
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Run the workflow; returns (campaign name -> {campaignArn, solutionVersionArn}, the event
    tracker's {eventTrackerArn, trackingId})."""
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        s3.create_bucket(Bucket=data_bucket)
    group = personalize.create_dataset_group(name=DEMO_GROUP)["datasetGroupArn"]
    role = DEMO_ROLE.format(account=account)
    jobs = []
    for kind, source in (("INTERACTIONS", files.interactions_csv), ("ITEMS", files.items_csv)):
        name = f"demo-{kind.lower()}"
        schema = {"type": "record", "name": kind.title(), "fields": SCHEMAS[kind], "version": "1.0"}
        schema_arn = personalize.create_schema(name=name, schema=json.dumps(schema))["schemaArn"]
        dataset = personalize.create_dataset(
            name=name, schemaArn=schema_arn, datasetGroupArn=group, datasetType=kind
        )["datasetArn"]
        s3.upload_file(str(source), data_bucket, f"demo/{source.name}")
        jobs.append(
            personalize.create_dataset_import_job(
                jobName=name,
                datasetArn=dataset,
                dataSource={"dataLocation": f"s3://{data_bucket}/demo/{source.name}"},
                roleArn=role,
            )["datasetImportJobArn"]
        )
    for job in jobs:

        def describe_job(job: str = job) -> dict[str, Any]:
            found: dict[str, Any] = personalize.describe_dataset_import_job(datasetImportJobArn=job)
            return found["datasetImportJob"]  # type: ignore[no-any-return]

        _wait(describe_job, f"import job {job}", timeout)
    # Created now: it turns ACTIVE while the versions train.
    tracker = personalize.create_event_tracker(name=DEMO_TRACKER, datasetGroupArn=group)
    versions = {}
    for campaign, recipe in RECIPES.items():
        solution = personalize.create_solution(
            name=campaign,
            datasetGroupArn=group,
            recipeArn=f"arn:aws:personalize:::recipe/{recipe}",
            performAutoTraining=False,
        )["solutionArn"]
        versions[campaign] = personalize.create_solution_version(solutionArn=solution, name=DEMO_VERSION)[
            "solutionVersionArn"
        ]
    published: dict[str, dict[str, Any]] = {}
    for campaign in DEMO_CAMPAIGNS:
        arn = versions[campaign]

        def describe_version(arn: str = arn) -> dict[str, Any]:
            found: dict[str, Any] = personalize.describe_solution_version(solutionVersionArn=arn)
            return found["solutionVersion"]  # type: ignore[no-any-return]

        _wait(describe_version, f"solution version {arn}", timeout)
        campaign_arn = personalize.create_campaign(name=campaign, solutionVersionArn=arn)["campaignArn"]
        published[campaign] = {"campaignArn": campaign_arn, "solutionVersionArn": arn}

    def describe_tracker() -> dict[str, Any]:
        found: dict[str, Any] = personalize.describe_event_tracker(eventTrackerArn=tracker["eventTrackerArn"])
        return found["eventTracker"]  # type: ignore[no-any-return]

    _wait(describe_tracker, f"event tracker {tracker['eventTrackerArn']}", timeout)
    return published, {"eventTrackerArn": tracker["eventTrackerArn"], "trackingId": tracker["trackingId"]}
