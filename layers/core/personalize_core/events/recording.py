"""What PutEvents, PutItems and PutUsers do (the events function's logic; no HTTP here).

PutEvents, for a tracker's dataset group:
1. the trackingId names an ACTIVE tracker (else ResourceNotFound / InvalidInput); an eventId given
   twice in one call is one event; a recommendationId without an impression is resolved into the
   items that recommendation answered with (implicit impressions);
2. at once, on two threads: every event to Firehose (S3, for training), and the events into the
   table: a user's events into the user's item, with the session linked to the user (the first
   time, the session's history is copied into the user); an anonymous session's events into the
   session's item, and into its user's when the session was linked before;
3. only when both succeed is the call acknowledged. Each item is written by one UpdateItem, all
   of a call's events or none; a failure answers a retryable error, and the retry converges:
   eventIds make the table's writes idempotent, and training counts an eventId once (so the
   copy Firehose may already hold is harmless).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from typing import TYPE_CHECKING, NamedTuple

from personalize_core.arns import parse_arn
from personalize_core.aws.json_client import AwsError
from personalize_core.datasets.schema import DatasetType, Field, RowError, check_value, parse_schema
from personalize_core.edge.authorization import Permission
from personalize_core.errors import (
    InvalidInputException,
    PersonalizeError,
    ResourceNotFoundException,
    ServiceUnavailableException,
)
from personalize_core.events.delivery import DeliveryFailed, EventDelivery, event_line, get_delivery
from personalize_core.events.items import RecentEvent, TrackerRef, store_error
from personalize_core.events.requests import Event, PutEventsRequest, PutMetadataRequest, schema_field
from personalize_core.events.table import EventsTable, get_events_table

if TYPE_CHECKING:
    from personalize_core.control.records import RecordsTable
    from personalize_core.modelstore.bucket import ModelBucket

#: How long a warm events function trusts a trackingId it has looked up (a deleted tracker's id
#: is refused at most this long after DeleteEventTracker).
TRACKER_CACHE_SECONDS = 60.0


def required_permission(request: PutEventsRequest | PutMetadataRequest, users: bool = False) -> Permission:
    """What Personalize checks before it records: ``personalize:PutEvents`` on "*" (its documentation:
    a tracker is named by its trackingId, not an ARN), ``personalize:PutItems`` / ``PutUsers`` on
    the dataset the records go to."""
    if isinstance(request, PutEventsRequest):
        return Permission("personalize:PutEvents")
    return Permission("personalize:PutUsers" if users else "personalize:PutItems", request.dataset_arn)


def unavailable(error: AwsError | DeliveryFailed, what: str) -> PersonalizeError:
    return store_error(error, what, isinstance(error, DeliveryFailed) and error.throttled)


class EventRecorder:
    """The events function's state: the table, the stream, and the trackingIds it has looked up."""

    def __init__(
        self,
        table: EventsTable,
        delivery: EventDelivery | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.delivery = delivery
        self.clock = clock
        self._trackers: dict[str, tuple[TrackerRef, float]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="events")

    # -- PutEvents ---------------------------------------------------------------------------------

    def tracker(self, tracking_id: str) -> TrackerRef:
        now = self.clock()
        with self._lock:
            cached = self._trackers.get(tracking_id)
        if cached is None or now - cached[1] >= TRACKER_CACHE_SECONDS:
            try:
                found = self.table.tracker(tracking_id)
            except AwsError as error:
                raise unavailable(error, "events table") from error
            if found is None:
                raise ResourceNotFoundException(f"No event tracker has the trackingId {tracking_id[:256]}")
            cached = (found, now)
            with self._lock:
                self._trackers[tracking_id] = cached
        tracker = cached[0]
        if tracker.active_at > now:
            raise InvalidInputException(
                f"Event tracker {tracker.tracker_arn} is not ACTIVE yet (CREATE PENDING for "
                f"{tracker.active_at - now:.1f} s more); DescribeEventTracker says when it is"
            )
        return tracker

    def put_events(self, request: PutEventsRequest) -> None:
        tracker = self.tracker(request.tracking_id)
        group_arn = tracker.group_arn
        group = parse_arn(group_arn, "datasetGroupArn", "dataset-group").path[0]
        events = list({e.event_id: e for e in request.events}.values())  # an eventId once per call
        try:
            events = self._with_impressions(group, events)
        except AwsError as error:
            raise unavailable(error, "events table") from error
        received = self.clock()
        delivered: Future[None] | None = None
        if self.delivery is not None:
            lines = [event_line(e, request.user_id, request.session_id, group_arn, received) for e in events]
            delivered = self._pool.submit(self.delivery.send, lines)
        recent = [
            RecentEvent(e.event_id, e.event_type, e.item_id, e.sent_at, e.event_value, received)
            for e in events
        ]
        try:
            self._store(group, request.session_id, request.user_id, recent)
        except AwsError as error:
            raise unavailable(error, "events table") from error
        finally:
            if delivered is not None:
                try:
                    delivered.result()
                except DeliveryFailed as failed:
                    raise unavailable(failed, "event stream (Firehose)") from failed

    def _with_impressions(self, group: str, events: list[Event]) -> list[Event]:
        """Events naming a recommendation but no impression get that recommendation's items."""
        wanted = {e.recommendation_id for e in events if e.recommendation_id and not e.impression}
        if not wanted:
            return events
        found = self.table.recommendations(group, wanted)
        return [
            e._replace(impression=tuple(found[e.recommendation_id][:25]))
            if e.recommendation_id in found and not e.impression
            else e
            for e in events
        ]

    def _store(self, group: str, session_id: str, user_id: str | None, events: Sequence[RecentEvent]) -> None:
        table = self.table
        if user_id is None:
            user = table.add_session_events(group, session_id, events)
            if user:  # the session belongs to a user: so do its anonymous events
                table.add_events(group, user, events)
            return
        mine = self._pool.submit(table.add_events, group, user_id, events)
        try:
            history = table.link_session(group, session_id, user_id)
        finally:
            mine.result()  # never answer while a write of this call is still under way
        if history is not None:
            # The first event that links the session: its history becomes the user's (once).
            table.copy_events(group, user_id, history)
            table.mark_linked(group, session_id, user_id)

    # -- PutItems / PutUsers -----------------------------------------------------------------------

    def put_metadata(self, request: PutMetadataRequest, users: bool, datasets: DatasetLookup) -> None:
        kind = DatasetType.USERS if users else DatasetType.ITEMS
        dataset = datasets.resolve(request.dataset_arn, kind)
        where = "users" if users else "items"
        records = []
        for i, record in enumerate(request.records):
            fields = {}
            for name, value in (record.properties or {}).items():
                column = schema_field(name)
                fields[column] = dataset.check(column, value, f"{where}[{i}].properties.{name[:60]}")
            dataset.check_required(fields, f"{where}[{i}].properties")
            records.append((record.record_id, json.dumps(fields, separators=(",", ":"), ensure_ascii=False)))
        try:
            self.table.put_metadata(dataset.group, kind.value, records)
        except AwsError as error:
            raise unavailable(error, "events table") from error


class Dataset(NamedTuple):
    """An Items or Users dataset PutItems / PutUsers may write: its group and its fields."""

    arn: str
    group: str
    kind: DatasetType
    #: Upper-case field -> its schema field (a real dataset) or "is numeric" (a published version's
    #: columns, for a dataset group of the CLI's).
    fields: dict[str, Field | bool]

    def check_required(self, fields: dict[str, str], where: str) -> None:
        """A record replaces the item (or user): the schema's non-null fields must all be given."""
        for name, field in self.fields.items():
            required = isinstance(field, Field) and not field.nullable and name != self.kind.id_field
            if required and name not in fields:
                raise InvalidInputException(f"{where} needs {name}: the dataset's schema requires it")

    def check(self, column: str, value: str, where: str) -> str:
        if column == self.kind.id_field or column not in self.fields:
            known = ", ".join(sorted(c for c in self.fields if c != self.kind.id_field)) or "none"
            raise InvalidInputException(
                f"{where}: the {self.kind.value} dataset {self.arn} has no field {column} "
                f"(its fields: {known})"
            )
        field = self.fields[column]
        try:
            if isinstance(field, bool):
                if field and value != "":
                    float(value)
            else:
                check_value(field, value)
        except (RowError, ValueError) as exc:
            reason = str(exc) if isinstance(exc, RowError) else f"{value[:40]!r} is not a number"
            raise InvalidInputException(f"{where}: {reason}") from None
        return value


class DatasetLookup:
    """Finds the dataset a PutItems / PutUsers names: a record of the records table, or, for a
    dataset group of the CLI's (``dataset-group/<solution>``), its newest version's columns."""

    def __init__(self, records: RecordsTable, bucket: ModelBucket) -> None:
        self.records = records
        self.bucket = bucket

    def resolve(self, arn: str, kind: DatasetType) -> Dataset:
        group, named = parse_arn(arn, "datasetArn", "dataset", parts=2).path
        if named != kind.value:
            operation = "PutUsers" if kind is DatasetType.USERS else "PutItems"
            raise InvalidInputException(
                f"datasetArn {arn} names a {named} dataset; {operation} writes a {kind.value.title()} dataset"
            )
        record = self.records.get(arn, "dataset")
        if record is not None:
            schema_record = self.records.get(record.attributes["schemaArn"], "schema")
            if schema_record is None:
                raise ResourceNotFoundException(f"The schema of dataset {arn} does not exist")
            schema = parse_schema(schema_record.attributes["schema"])
            fields: dict[str, Field | bool] = {f.name.upper(): f for f in schema.fields}
            return Dataset(arn, group, kind, fields)
        from personalize_core.modelstore.attributes import read_schema  # noqa: PLC0415

        manifest = self.bucket.newest_manifest(group)
        if manifest is None:
            raise ResourceNotFoundException(f"Dataset {arn} does not exist")
        prefix = f"solutions/{manifest.solution}/{manifest.version}/"
        schema_of = read_schema(manifest, lambda name: self.bucket.read(prefix + name))
        columns = schema_of.user_columns if kind is DatasetType.USERS else schema_of.item_columns
        if not columns:
            raise ResourceNotFoundException(
                f"Dataset {arn} does not exist: solution {group} was published without --{kind.value.lower()}"
            )
        return Dataset(arn, group, kind, dict(columns))


@cache
def get_recorder() -> EventRecorder:
    """The events function's recorder (warm invocations reuse it: its trackingIds and threads)."""
    table = get_events_table()
    if table is None:
        raise ServiceUnavailableException("This stack records no events (EVENTS_TABLE is not set)")
    return EventRecorder(table, get_delivery())


def dataset_lookup() -> DatasetLookup:
    from personalize_core.control.records import get_records  # noqa: PLC0415 - boto3, on first use
    from personalize_core.modelstore.bucket import get_model_bucket  # noqa: PLC0415

    return DatasetLookup(get_records(), get_model_bucket())
