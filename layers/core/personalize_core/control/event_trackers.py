"""CreateEventTracker, DescribeEventTracker, ListEventTrackers, DeleteEventTracker.

A tracker is a record of the records table (kind ``event-tracker``, under its dataset group), plus
two items of the events table written in the same transaction: the group's claim (one tracker a
group, as in Personalize) and the trackingId's lookup, which PutEvents reads. The group may be a
real one (CreateDatasetGroup) or a CLI-published solution's (``dataset-group/<solution>``, which
exists while the solution has a published version): models published from files get events too.

A new tracker is CREATE PENDING for EVENT_GROUP_TTL_SECONDS (+1 s), then ACTIVE: that is how long
a serving container may still believe, from its last look, that the group has no tracker. So by
the time PutEvents accepts the tracker's first event, every container reads the group's events.
"""

from __future__ import annotations

import uuid
from typing import Any

from personalize_core.arns import check_name, parse_arn
from personalize_core.control.dataset_groups import group_record
from personalize_core.control.paging import PageRequest, paged
from personalize_core.control.records import ACTIVE, Record, TransactionRefused
from personalize_core.control.tags import check_tags
from personalize_core.control.workspace import DATASET_GROUP, EVENT_TRACKER, Workspace
from personalize_core.edge.fields import Fields
from personalize_core.errors import (
    InvalidInputException,
    ResourceAlreadyExistsException,
    ResourceInUseException,
    ResourceNotFoundException,
)
from personalize_core.events.table import EventsTable
from personalize_core.settings import get_settings

CREATE_PENDING = "CREATE PENDING"
#: trackingIds are UUIDs named by the tracker and its group: the same tracker (name and group) has
#: the same trackingId on every stack (make run's demo tracker, events/put_events.json), and a
#: tracker of another group never inherits the trackingId of a deleted one.
TRACKING_NAMESPACE = uuid.UUID("5f1b1c1e-7a1d-4c38-9d7e-3f0f6a2b8c41")


def _events(ws: Workspace) -> EventsTable:
    if ws.events is None:
        raise InvalidInputException("This stack records no events (its EVENTS_TABLE is not set)")
    return ws.events


def _status(record: Record, now: float) -> tuple[str, float]:
    """(status, lastUpdatedDateTime): CREATE PENDING until the tracker's activeAt, ACTIVE after."""
    active_at = float(record.attributes["activeAt"])
    return (ACTIVE, active_at) if now >= active_at else (CREATE_PENDING, record.updated_at)


def _tracker_json(ws: Workspace, record: Record, summary: bool = False) -> dict[str, Any]:
    status, updated = _status(record, ws.now())
    out: dict[str, Any] = {
        "name": record.name,
        "eventTrackerArn": record.arn,
        "status": status,
        "creationDateTime": record.created_at,
        "lastUpdatedDateTime": updated,
    }
    if not summary:
        out |= {
            "accountId": parse_arn(record.arn, "eventTrackerArn", EVENT_TRACKER).account,
            "trackingId": record.attributes["trackingId"],
            "datasetGroupArn": record.parent_arn,
        }
    return out


def check_group_exists(ws: Workspace, group_arn: str) -> str:
    """The group's name; ResourceNotFoundException unless it is a group or a published solution's."""
    if group_record(ws, group_arn) is None:
        solution = parse_arn(group_arn, "datasetGroupArn", DATASET_GROUP).path[0]
        if ws.bucket.newest_manifest(solution) is None:
            raise ResourceNotFoundException(f"Dataset group {group_arn} does not exist")
    return parse_arn(group_arn, "datasetGroupArn", DATASET_GROUP).path[0]


def create_event_tracker(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"name", "datasetGroupArn", "tags"}))
    name = check_name(fields.required_string("name", max_len=63), "name")
    group_arn = fields.required_arn("datasetGroupArn")
    check_tags(fields)
    events = _events(ws)
    group = check_group_exists(ws, group_arn)
    now = ws.now()
    tracking_id = str(uuid.uuid5(TRACKING_NAMESPACE, f"{ws.arn(EVENT_TRACKER, name)}|{group_arn}"))
    ttl = get_settings().event_group_ttl_seconds
    active_at = round(now + ttl + min(1.0, ttl), 3)  # a second's margin for clocks and slow reads
    record = Record(
        EVENT_TRACKER,
        ws.arn(EVENT_TRACKER, name),
        name,
        ACTIVE,
        now,
        now,
        parent_arn=group_arn,
        attributes={"trackingId": tracking_id, "activeAt": active_at},
    )
    try:
        claims = events.tracker_items(group, group_arn, tracking_id, record.arn, active_at)
        ws.records.create_with(record, claims)
    except TransactionRefused as refused:
        if 0 in refused.failed:
            raise ResourceAlreadyExistsException(f"Event tracker {record.arn} already exists") from None
        raise ResourceAlreadyExistsException(
            f"Dataset group {group_arn} already has an event tracker (one per dataset group)"
        ) from None
    return {"eventTrackerArn": record.arn, "trackingId": tracking_id}


def describe_event_tracker(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"eventTrackerArn"}))
    record = ws.record(fields.required_arn("eventTrackerArn"), EVENT_TRACKER)
    return {"eventTracker": _tracker_json(ws, record)}


def list_event_trackers(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"datasetGroupArn", "nextToken", "maxResults"}))
    group_arn = fields.arn("datasetGroupArn")
    page = PageRequest(fields)
    records, token = ws.records.page(EVENT_TRACKER, group_arn, page.max_results, page.token)
    return paged("eventTrackers", [_tracker_json(ws, r, summary=True) for r in records], token)


def delete_event_tracker(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"eventTrackerArn"}))
    record = ws.record(fields.required_arn("eventTrackerArn"), EVENT_TRACKER)
    assert record.parent_arn is not None
    group = parse_arn(record.parent_arn, "datasetGroupArn", DATASET_GROUP).path[0]
    try:
        ws.records.delete_with(record, _events(ws).tracker_removals(group, record.attributes["trackingId"]))
    except TransactionRefused:
        raise ResourceInUseException(f"{record.arn} changed while it was being deleted") from None
    return {}


OPERATIONS = {
    "CreateEventTracker": create_event_tracker,
    "DescribeEventTracker": describe_event_tracker,
    "ListEventTrackers": list_event_trackers,
    "DeleteEventTracker": delete_event_tracker,
}
