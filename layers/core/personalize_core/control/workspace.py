"""What the training-side control operations work with: the records table, the model bucket, the
training queue, the automatic-training schedules, and where ARNs are made (region, account).

Operations take a ``Workspace`` (registered with ``register_all(plane, OPERATIONS, get_workspace)``);
tests build one over moto.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

from personalize_core.arns import make_arn
from personalize_core.aws.clients import create_scheduler_client
from personalize_core.control.records import Record, RecordsTable, get_records
from personalize_core.errors import PersonalizeError, ResourceNotFoundException
from personalize_core.events.table import EventsTable, get_events_table
from personalize_core.modelstore.bucket import ModelBucket, get_model_bucket
from personalize_core.observability import logger
from personalize_core.settings import get_settings
from personalize_core.training.messages import TrainingMessage, TrainingQueue

#: The account in ARNs when the stack names none (moto's, as the local runtime uses).
DEFAULT_ACCOUNT = "123456789012"
#: The resource kinds of the records table (their ARNs' resource type).
DATASET_GROUP = "dataset-group"
SCHEMA = "schema"
DATASET = "dataset"
IMPORT_JOB = "dataset-import-job"
SOLUTION = "solution"
SOLUTION_VERSION = "solution-version"
RECOMMENDER = "recommender"
EVENT_TRACKER = "event-tracker"
LABELS = {
    DATASET_GROUP: "Dataset group",
    SCHEMA: "Schema",
    DATASET: "Dataset",
    IMPORT_JOB: "Dataset import job",
    SOLUTION: "Solution",
    SOLUTION_VERSION: "Solution version",
    RECOMMENDER: "Recommender",
    EVENT_TRACKER: "Event tracker",
}


@dataclass
class Schedules:
    """EventBridge Scheduler schedules of automatic training: one per solution, in ``group``,
    sending the training queue an ``autotrain`` message as ``role_arn``."""

    group: str
    role_arn: str
    queue_arn: str
    client_factory: Callable[[], Any] = create_scheduler_client

    @cached_property  # made on first use: no I/O when the object is made
    def client(self) -> Any:
        return self.client_factory()

    def put(self, solution: str, solution_arn: str, expression: str) -> None:
        target = {
            "Arn": self.queue_arn,
            "RoleArn": self.role_arn,
            "Input": TrainingMessage("autotrain", solution_arn).to_json(),
        }
        arguments = {
            "Name": solution,
            "GroupName": self.group,
            "ScheduleExpression": expression,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": target,
            "Description": f"Automatic training of {solution_arn}"[:512],
        }
        try:
            self.client.create_schedule(**arguments)
        except self.client.exceptions.ConflictException:
            self.client.update_schedule(**arguments)

    def get(self, solution: str) -> dict[str, Any] | None:
        try:
            answer: dict[str, Any] = self.client.get_schedule(Name=solution, GroupName=self.group)
        except self.client.exceptions.ResourceNotFoundException:
            return None
        return answer

    def delete(self, solution: str) -> None:
        with contextlib.suppress(self.client.exceptions.ResourceNotFoundException):
            self.client.delete_schedule(Name=solution, GroupName=self.group)


@dataclass
class Workspace:
    records: RecordsTable
    bucket: ModelBucket
    queue: TrainingQueue
    region: str
    account: str
    schedules: Schedules | None = None
    clock: Callable[[], float] = time.time
    #: The events table (event trackers' lookups and claims); None in a stack without events.
    events: EventsTable | None = None

    def arn(self, kind: str, *path: str) -> str:
        resource_type = SOLUTION if kind == SOLUTION_VERSION else kind
        return str(make_arn(self.region, self.account, resource_type, *path))

    def now(self) -> float:
        return round(self.clock(), 3)

    def record(self, arn: str, kind: str) -> Record:
        """The record of ``arn``; ResourceNotFoundException (named as Personalize names it) if none."""
        found = self.records.get(arn, kind)
        if found is None:
            raise ResourceNotFoundException(f"{LABELS[kind]} {arn} does not exist")
        return found

    def enqueue(self, message: TrainingMessage, record: Record) -> None:
        """Queue the record's work; if the queue refuses, the record fails (it would wait forever)."""
        try:
            self.queue.send(message)
        except Exception as exc:
            logger.exception("could not queue training work", extra={"arn": record.arn})
            self.records.transition(
                record.arn,
                (record.status,),
                "CREATE FAILED",
                self.now(),
                failure_reason="The work could not be queued; create it again",
            )
            raise PersonalizeError("The work could not be queued; try again") from exc


@cache
def get_workspace() -> Workspace:
    settings = get_settings()
    schedules = None
    if settings.schedule_group:
        schedules = Schedules(
            settings.schedule_group, settings.scheduler_role_arn, settings.training_queue_arn
        )
    return Workspace(
        get_records(),
        get_model_bucket(),
        TrainingQueue(settings.training_queue_url),
        region=settings.region,
        account=settings.account_id or DEFAULT_ACCOUNT,
        schedules=schedules,
        events=get_events_table(),
    )
