"""The records of the control plane's own resources, in one DynamoDB table (``RECORDS_TABLE``).

Dataset groups, schemas, datasets, dataset import jobs, solutions, solution versions (while they
train, and after) and recommenders: one item each, keyed by ARN. Every record has the same shape:

    kind          the resource kind ("dataset-group", "schema", "dataset", ...)
    arn, name     its ARN (the key) and name
    parentArn     the record it belongs to (a dataset's dataset group, a version's solution...):
                  what List operations filter on; absent for top-level records
    status        Personalize's status ("CREATE PENDING", "ACTIVE", ...)
    createdAt, updatedAt, failureReason
    attributes    everything else, as one JSON document

Two indexes list them in name order: ``byKind`` (kind, name) and ``byParent`` (parentArn,
"<kind>#<name>"). Creates are conditional on the ARN being free, status changes on the status
being one of those expected, so a retried message or a racing request cannot move a record
backwards. This module is the only one that touches the table; it knows nothing of what a kind
means (another kind, such as event trackers, needs no change here).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

from personalize_core.aws.clients import create_dynamodb_client
from personalize_core.control.paging import decode_token, encode_token
from personalize_core.errors import ResourceAlreadyExistsException, ResourceInUseException
from personalize_core.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BY_KIND = "byKind"
BY_PARENT = "byParent"
ACTIVE = "ACTIVE"
CREATE_PENDING = "CREATE PENDING"
CREATE_IN_PROGRESS = "CREATE IN_PROGRESS"
CREATE_FAILED = "CREATE FAILED"
CREATE_STOPPING = "CREATE STOPPING"
CREATE_STOPPED = "CREATE STOPPED"
UNFINISHED = (CREATE_PENDING, CREATE_IN_PROGRESS)
FAILURE_REASON_MAX = 1000


class TransactionRefused(Exception):
    """A transaction's conditions did not hold; ``failed`` lists the actions whose did not."""

    def __init__(self, failed: list[int]) -> None:
        super().__init__(f"conditions failed at {failed}")
        self.failed = failed


@dataclass(frozen=True, slots=True)
class Record:
    kind: str
    arn: str
    name: str
    status: str
    created_at: float
    updated_at: float
    parent_arn: str | None = None
    failure_reason: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def timestamps(self) -> dict[str, float]:
        return {"creationDateTime": self.created_at, "lastUpdatedDateTime": self.updated_at}

    def with_attributes(self, **changes: Any) -> Record:
        return replace(self, attributes={**self.attributes, **changes})


def _item(record: Record) -> dict[str, Any]:
    item: dict[str, Any] = {
        "arn": {"S": record.arn},
        "kind": {"S": record.kind},
        "name": {"S": record.name},
        "status": {"S": record.status},
        "createdAt": {"N": repr(record.created_at)},
        "updatedAt": {"N": repr(record.updated_at)},
        "attributes": {"S": json.dumps(record.attributes, separators=(",", ":"))},
    }
    if record.parent_arn:
        item["parentArn"] = {"S": record.parent_arn}
        item["kindName"] = {"S": f"{record.kind}#{record.name}"}
    if record.failure_reason:
        item["failureReason"] = {"S": record.failure_reason[:FAILURE_REASON_MAX]}
    return item


def _record(item: dict[str, Any]) -> Record:
    return Record(
        kind=item["kind"]["S"],
        arn=item["arn"]["S"],
        name=item["name"]["S"],
        status=item["status"]["S"],
        created_at=float(item["createdAt"]["N"]),
        updated_at=float(item["updatedAt"]["N"]),
        parent_arn=item["parentArn"]["S"] if "parentArn" in item else None,
        failure_reason=item["failureReason"]["S"] if "failureReason" in item else None,
        attributes=json.loads(item["attributes"]["S"]),
    )


class RecordsTable:
    def __init__(
        self, table_name: str, client_factory: Callable[[], DynamoDBClient] = create_dynamodb_client
    ) -> None:
        self.table_name = table_name
        self._client_factory = client_factory

    @cached_property  # made on first use: no I/O when the module or the object is made
    def client(self) -> DynamoDBClient:
        return self._client_factory()

    def create(self, record: Record) -> Record:
        """Write a new record; ResourceAlreadyExistsException if its ARN is taken."""
        try:
            self.client.put_item(
                TableName=self.table_name, Item=_item(record), ConditionExpression="attribute_not_exists(arn)"
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise ResourceAlreadyExistsException(f"{record.arn} already exists") from None
        return record

    def create_with(self, record: Record, others: list[dict[str, Any]]) -> None:
        """Write a new record and ``others`` (TransactWriteItems actions on other tables) all or
        none. TransactionRefused says which conditions failed: index 0 is the record's ARN."""
        mine = {
            "Put": {
                "TableName": self.table_name,
                "Item": _item(record),
                "ConditionExpression": "attribute_not_exists(arn)",
            }
        }
        self._transact([mine, *others])

    def delete_with(self, record: Record, others: list[dict[str, Any]]) -> None:
        """Delete ``record`` (unless it changed since it was read) and apply ``others``, all or none."""
        mine = {
            "Delete": {
                "TableName": self.table_name,
                "Key": {"arn": {"S": record.arn}},
                "ConditionExpression": "#status = :status AND updatedAt = :updated",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":status": {"S": record.status},
                    ":updated": {"N": repr(record.updated_at)},
                },
            }
        }
        self._transact([mine, *others])

    def _transact(self, actions: list[dict[str, Any]]) -> None:
        try:
            self.client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        except self.client.exceptions.TransactionCanceledException as exc:
            reasons = exc.response.get("CancellationReasons") or []
            failed = [i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"]
            raise TransactionRefused(failed) from None

    def get(self, arn: str, kind: str | None = None) -> Record | None:
        """The record of ``arn`` (of ``kind``, when given), or None."""
        answer = self.client.get_item(TableName=self.table_name, Key={"arn": {"S": arn}}, ConsistentRead=True)
        item = answer.get("Item")
        record = _record(item) if item else None
        return record if record is not None and (kind is None or record.kind == kind) else None

    def replace(self, old: Record, new: Record) -> Record | None:
        """Write ``new`` over ``old`` if the stored record is still ``old`` (same status and
        updatedAt); None if it changed meanwhile (the caller reads it again and decides)."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=_item(new),
                ConditionExpression="#status = :status AND updatedAt = :updated",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":status": {"S": old.status},
                    ":updated": {"N": repr(old.updated_at)},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return new

    def transition(
        self,
        arn: str,
        expected: Collection[str],
        status: str,
        now: float,
        failure_reason: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Record | None:
        """Move a record whose status is one of ``expected`` to ``status`` (merging ``attributes``
        into its own); None when it is not in one of those statuses (or does not exist)."""
        for _ in range(5):  # attributes are one JSON document: read, merge, write conditionally
            current = self.get(arn)
            if current is None or current.status not in expected:
                return None
            updated = replace(
                current,
                status=status,
                updated_at=max(now, current.updated_at),
                failure_reason=failure_reason if failure_reason is not None else current.failure_reason,
                attributes={**current.attributes, **(attributes or {})},
            )
            if updated.updated_at == current.updated_at:
                updated = replace(updated, updated_at=current.updated_at + 0.001)
            if self.replace(current, updated) is not None:
                return updated
        return None

    def delete(self, record: Record, in_use: str = "") -> None:
        """Delete ``record`` unless it changed since it was read (ResourceInUseException then)."""
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key={"arn": {"S": record.arn}},
                ConditionExpression="#status = :status AND updatedAt = :updated",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":status": {"S": record.status},
                    ":updated": {"N": repr(record.updated_at)},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise ResourceInUseException(
                in_use or f"{record.arn} changed while it was being deleted"
            ) from None

    def page(
        self, kind: str, parent_arn: str | None = None, limit: int = 100, token: str | None = None
    ) -> tuple[list[Record], str | None]:
        """A page of ``kind`` records in name order (under ``parent_arn``, when given) and the token
        of the next page. A token of another listing is InvalidNextTokenException."""
        listing = f"{kind}|{parent_arn or ''}"
        query: dict[str, Any] = {"TableName": self.table_name, "Limit": limit + 1}
        if parent_arn:
            query |= {
                "IndexName": BY_PARENT,
                "KeyConditionExpression": "parentArn = :p AND begins_with(kindName, :k)",
                "ExpressionAttributeValues": {":p": {"S": parent_arn}, ":k": {"S": f"{kind}#"}},
            }
        else:
            query |= {
                "IndexName": BY_KIND,
                "KeyConditionExpression": "kind = :k",
                "ExpressionAttributeValues": {":k": {"S": kind}},
            }
        if token is not None:
            position = decode_token(token, listing, lambda p: set(p) == {"a", "n"})
            start = {"arn": {"S": position["a"]}}
            if parent_arn:
                start |= {"parentArn": {"S": parent_arn}, "kindName": {"S": f"{kind}#{position['n']}"}}
            else:
                start |= {"kind": {"S": kind}, "name": {"S": position["n"]}}
            query["ExclusiveStartKey"] = start
        records: list[Record] = []
        while True:
            answer = self.client.query(**query)
            records += [_record(item) for item in answer.get("Items", [])]
            if len(records) > limit or "LastEvaluatedKey" not in answer:
                break
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        if len(records) > limit:
            last = records[limit - 1]
            return records[:limit], encode_token(listing, {"a": last.arn, "n": last.name})
        return records, None

    def children(self, parent_arn: str, kind: str) -> list[Record]:
        """Every ``kind`` record under ``parent_arn`` (for in-use checks and small listings)."""
        found: list[Record] = []
        token = None
        while True:
            records, token = self.page(kind, parent_arn, 100, token)
            found += records
            if token is None:
                return found


@cache
def get_records() -> RecordsTable:
    return RecordsTable(get_settings().records_table)
