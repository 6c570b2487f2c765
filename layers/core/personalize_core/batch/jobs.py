"""Batch inference job records and their DynamoDB table: the only place that touches the table.

One item per job, keyed by ``jobName``. Two indexes list jobs newest first: ``byCreation`` (every
job, under the constant partition ``kind``) and ``bySolutionVersion``. Every state change is a
conditional update, so a message delivered twice or a finisher that runs twice cannot move a job
backwards or mark it twice:

    CREATE PENDING --plan--> CREATE IN_PROGRESS --last shard--> ACTIVE
          \\___________________________\\________________________> CREATE FAILED (failureReason)
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from personalize_core.arns import is_valid_name
from personalize_core.aws.clients import create_dynamodb_client
from personalize_core.errors import ResourceAlreadyExistsException

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KIND = "batch-inference-job"
BY_CREATION = "byCreation"
BY_SOLUTION_VERSION = "bySolutionVersion"
_SORT_KEY = re.compile(r"\d{15}#[a-zA-Z0-9][a-zA-Z0-9\-_]*")


class JobStatus(enum.StrEnum):
    PENDING = "CREATE PENDING"
    IN_PROGRESS = "CREATE IN_PROGRESS"
    ACTIVE = "ACTIVE"
    FAILED = "CREATE FAILED"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.ACTIVE, JobStatus.FAILED)


@dataclass(frozen=True, slots=True)
class InputFile:
    """One input object of a job's plan: read in ``shards`` byte ranges, answered in ``output_key``."""

    key: str
    etag: str
    size: int
    output_key: str
    shards: int

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "etag": self.etag,
            "size": self.size,
            "out": self.output_key,
            "n": self.shards,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> InputFile:
        return cls(str(raw["key"]), str(raw["etag"]), int(raw["size"]), str(raw["out"]), int(raw["n"]))


@dataclass(frozen=True, slots=True)
class Plan:
    """How a job's input is split: shard ``f:s`` owns the lines starting in bytes
    ``[s * shard_bytes, (s + 1) * shard_bytes)`` of file ``f``."""

    input_bucket: str
    output_bucket: str
    files: tuple[InputFile, ...]
    shard_bytes: int

    @property
    def shard_ids(self) -> list[str]:
        return [shard_id(f, s) for f, file in enumerate(self.files) for s in range(file.shards)]

    def to_json(self) -> str:
        return json.dumps(
            {
                "inputBucket": self.input_bucket,
                "outputBucket": self.output_bucket,
                "shardBytes": self.shard_bytes,
                "files": [f.to_json() for f in self.files],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        return cls(
            input_bucket=str(raw["inputBucket"]),
            output_bucket=str(raw["outputBucket"]),
            files=tuple(InputFile.from_json(f) for f in raw["files"]),
            shard_bytes=int(raw["shardBytes"]),
        )


def shard_id(file_index: int, shard_index: int) -> str:
    return f"{file_index}:{shard_index}"


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    arn: str
    solution_version_arn: str
    role_arn: str
    num_results: int
    #: The request's jobInput / jobOutput / batchInferenceJobConfig, as given (Describe returns them).
    job_input: dict[str, Any]
    job_output: dict[str, Any]
    config: dict[str, Any]
    mode: str
    status: JobStatus
    created_at: float
    updated_at: float
    filter_arn: str | None = None
    failure_reason: str | None = None
    plan: Plan | None = None
    shards_done: frozenset[str] = field(default_factory=frozenset)

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "jobName": self.name,
            "batchInferenceJobArn": self.arn,
            "solutionVersionArn": self.solution_version_arn,
            "numResults": self.num_results,
            "jobInput": self.job_input,
            "jobOutput": self.job_output,
            "batchInferenceJobConfig": self.config,
            "roleArn": self.role_arn,
            "batchInferenceJobMode": self.mode,
            "status": self.status.value,
            "creationDateTime": self.created_at,
            "lastUpdatedDateTime": self.updated_at,
        }
        if self.filter_arn:
            described["filterArn"] = self.filter_arn
        if self.failure_reason:
            described["failureReason"] = self.failure_reason
        return described

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "batchInferenceJobArn": self.arn,
            "jobName": self.name,
            "status": self.status.value,
            "creationDateTime": self.created_at,
            "lastUpdatedDateTime": self.updated_at,
            "solutionVersionArn": self.solution_version_arn,
            "batchInferenceJobMode": self.mode,
        }
        if self.failure_reason:
            summary["failureReason"] = self.failure_reason
        return summary


def _sort_key(job: Job) -> str:
    # Milliseconds, zero-padded: string order is time order; the name breaks ties.
    return f"{round(job.created_at * 1000):015d}#{job.name}"


def _to_item(job: Job) -> dict[str, Any]:
    item: dict[str, Any] = {
        "jobName": {"S": job.name},
        "kind": {"S": KIND},
        "sortKey": {"S": _sort_key(job)},
        "jobArn": {"S": job.arn},
        "solutionVersionArn": {"S": job.solution_version_arn},
        "roleArn": {"S": job.role_arn},
        "numResults": {"N": str(job.num_results)},
        "request": {
            "S": json.dumps(
                {
                    "jobInput": job.job_input,
                    "jobOutput": job.job_output,
                    "config": job.config,
                    "mode": job.mode,
                }
            )
        },
        "status": {"S": job.status.value},
        "createdAt": {"N": repr(job.created_at)},
        "updatedAt": {"N": repr(job.updated_at)},
    }
    if job.filter_arn:
        item["filterArn"] = {"S": job.filter_arn}
    return item


def _from_item(item: dict[str, Any]) -> Job:
    request = json.loads(item["request"]["S"])
    return Job(
        name=item["jobName"]["S"],
        arn=item["jobArn"]["S"],
        solution_version_arn=item["solutionVersionArn"]["S"],
        role_arn=item["roleArn"]["S"],
        num_results=int(item["numResults"]["N"]),
        job_input=request["jobInput"],
        job_output=request["jobOutput"],
        config=request["config"],
        mode=request["mode"],
        status=JobStatus(item["status"]["S"]),
        created_at=float(item["createdAt"]["N"]),
        updated_at=float(item["updatedAt"]["N"]),
        filter_arn=item.get("filterArn", {}).get("S"),
        failure_reason=item.get("failureReason", {}).get("S"),
        plan=Plan.from_json(item["plan"]["S"]) if "plan" in item else None,
        shards_done=frozenset(item.get("shardsDone", {}).get("SS", ())),
    )


# -- list positions ------------------------------------------------------------------------------


def list_position(job: Job) -> dict[str, str]:
    """Where a listing continues after ``job`` (the control plane wraps it in a nextToken)."""
    return {"n": job.name, "s": _sort_key(job)}


def is_list_position(position: dict[str, str]) -> bool:
    """Whether ``position`` is one ``list_position`` gives (a token is never trusted as a key)."""
    name, sort_key = position.get("n", ""), position.get("s", "")
    return (
        set(position) == {"n", "s"}
        and is_valid_name(name)
        and _SORT_KEY.fullmatch(sort_key) is not None
        and sort_key.endswith("#" + name)
    )


# -- the table -----------------------------------------------------------------------------------


class JobsTable:
    def __init__(
        self, table_name: str, client_factory: Callable[[], DynamoDBClient] = create_dynamodb_client
    ) -> None:
        self.table_name = table_name
        self._client_factory = client_factory

    @cached_property  # made on first use: no I/O when the module or the object is made
    def client(self) -> DynamoDBClient:
        return self._client_factory()

    def create(self, job: Job) -> None:
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=_to_item(job),
                ConditionExpression="attribute_not_exists(jobName)",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise ResourceAlreadyExistsException(
                f"A batch inference job named {job.name} already exists"
            ) from None

    def get(self, name: str) -> Job | None:
        item = self.client.get_item(
            TableName=self.table_name, Key={"jobName": {"S": name}}, ConsistentRead=True
        ).get("Item")
        return _from_item(item) if item else None

    def list(
        self, solution_version_arn: str | None, max_results: int, after: dict[str, str] | None
    ) -> tuple[list[Job], Job | None]:
        """A page of jobs, newest first, after the position ``after`` (``list_position``), and the
        last job of the page when another page follows (None on the last one)."""
        query: dict[str, Any] = {
            "TableName": self.table_name,
            "ScanIndexForward": False,
            "Limit": max_results + 1,  # one more tells whether another page exists
        }
        if solution_version_arn:
            query |= {
                "IndexName": BY_SOLUTION_VERSION,
                "KeyConditionExpression": "solutionVersionArn = :v",
                "ExpressionAttributeValues": {":v": {"S": solution_version_arn}},
            }
        else:
            query |= {
                "IndexName": BY_CREATION,
                "KeyConditionExpression": "#kind = :k",
                "ExpressionAttributeNames": {"#kind": "kind"},
                "ExpressionAttributeValues": {":k": {"S": KIND}},
            }
        if after is not None:
            key = {"jobName": {"S": after["n"]}, "sortKey": {"S": after["s"]}}
            if solution_version_arn:
                key["solutionVersionArn"] = {"S": solution_version_arn}
            else:
                key["kind"] = {"S": KIND}
            query["ExclusiveStartKey"] = key
        jobs = [_from_item(item) for item in self.client.query(**query).get("Items", [])]
        if len(jobs) > max_results:
            return jobs[:max_results], jobs[max_results - 1]
        return jobs, None

    def _update(self, name: str, expression: str, condition: str, values: dict[str, Any]) -> Job | None:
        """A conditional update; the job after it, or None when the condition did not hold."""
        try:
            answer = self.client.update_item(
                TableName=self.table_name,
                Key={"jobName": {"S": name}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                # DynamoDB reserves "status" and "plan" as words: they go through placeholders.
                ExpressionAttributeNames={
                    f"#{n}": n for n in ("status", "plan") if f"#{n}" in expression + condition
                },
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return _from_item(answer["Attributes"])

    def start(self, job: Job, plan: Plan, now: float) -> Job | None:
        """PENDING -> IN_PROGRESS with its plan; None if the job was not PENDING any more."""
        return self._update(
            job.name,
            "SET #status = :running, #plan = :plan, shardsTotal = :total, updatedAt = :now",
            "#status = :pending",
            {
                ":running": {"S": JobStatus.IN_PROGRESS.value},
                ":pending": {"S": JobStatus.PENDING.value},
                ":plan": {"S": plan.to_json()},
                ":total": {"N": str(len(plan.shard_ids))},
                ":now": {"N": repr(now)},
            },
        )

    def mark_shard_done(self, name: str, shard: str, now: float) -> Job | None:
        """Add a shard to the done set (a set: adding it twice counts once); None unless IN_PROGRESS."""
        return self._update(
            name,
            "ADD shardsDone :shard SET updatedAt = :now",
            "#status = :running",
            {
                ":shard": {"SS": [shard]},
                ":running": {"S": JobStatus.IN_PROGRESS.value},
                ":now": {"N": repr(now)},
            },
        )

    def finish(self, name: str, now: float) -> Job | None:
        return self._update(
            name,
            "SET #status = :active, updatedAt = :now",
            "#status = :running",
            {
                ":active": {"S": JobStatus.ACTIVE.value},
                ":running": {"S": JobStatus.IN_PROGRESS.value},
                ":now": {"N": repr(now)},
            },
        )

    def expire(self, job: Job, reason: str, now: float) -> Job | None:
        """Fail a job that has not moved since ``job`` was read; None if it moved or ended meanwhile."""
        return self.fail(job.name, reason, now, unchanged_since=job.updated_at)

    def fail(self, name: str, reason: str, now: float, unchanged_since: float | None = None) -> Job | None:
        """Any unfinished job -> CREATE FAILED with its reason; None if it had already ended (or, with
        ``unchanged_since``, if its record changed after that time)."""
        condition = "#status IN (:pending, :running)"
        values = {
            ":failed": {"S": JobStatus.FAILED.value},
            ":pending": {"S": JobStatus.PENDING.value},
            ":running": {"S": JobStatus.IN_PROGRESS.value},
            ":reason": {"S": reason[:1000]},
            ":now": {"N": repr(now)},
        }
        if unchanged_since is not None:
            condition += " AND updatedAt = :seen"
            values[":seen"] = {"N": repr(unchanged_since)}
        return self._update(
            name, "SET #status = :failed, failureReason = :reason, updatedAt = :now", condition, values
        )
