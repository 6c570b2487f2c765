"""What the events table's items hold: their keys, the records read from them, and how a store's
failure reaches a caller. ``table.py`` reads and writes them; serving, the events function and
training use these types."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from typing import Any, NamedTuple

from personalize_core.aws.json_client import AwsError
from personalize_core.errors import PersonalizeError, ServiceUnavailableException, ThrottlingException
from personalize_core.modelstore.attributes import RECENT_PER_EVENT_TYPE
from personalize_core.observability import logger

ENTITY = "E#"
RECOMMENDATION = "R#"
TRACKING = "T#"
GROUP = "G#"
METADATA = "M#"
EVENT_ATTRIBUTE = "e:"
RECORD_ATTRIBUTE = "i:"
METADATA_SHARDS = 16
#: An entity item holds at most this many events beyond what its last compaction kept.
COMPACTION_SLACK = 100
#: What a compaction keeps at most (DynamoDB's item limit is 400 KB): the oldest events go first.
ITEM_BUDGET = 300_000
#: Events copied into a user per UpdateItem when a session is linked (expression size limits).
COPY_CHUNK = 80
#: DynamoDB's own cap on one BatchGetItem.
BATCH_GET_MAX = 100


def store_error(error: AwsError | Exception, what: str, throttled: bool = False) -> PersonalizeError:
    """The retryable error a caller gets when a store failed (botocore retries both codes); a
    refusal that retrying cannot fix (a bad request of ours, no permission) is an internal error."""
    throttled = throttled or (isinstance(error, AwsError) and error.throttled)
    logger.warning("events store failed", extra={"store": what, "reason": str(error)[:300]})
    if isinstance(error, AwsError) and not error.retryable:
        return PersonalizeError(f"The {what} refused the request ({error.code})")
    if throttled:
        return ThrottlingException(f"The {what} is throttling requests; retry with backoff")
    return ServiceUnavailableException(f"The {what} cannot be reached now; the request can be retried")


class RecentEvent(NamedTuple):
    event_id: str
    event_type: str
    item_id: str | None
    sent_at: float
    value: float | None
    #: When PutEvents accepted it (server time): whether a version was trained before it.
    received_at: float

    def encode(self) -> str:
        return json.dumps(
            [self.event_type, self.item_id, self.sent_at, self.value, self.received_at],
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def decode(cls, event_id: str, text: str) -> RecentEvent | None:
        try:
            kind, item, sent, value, received = json.loads(text)
            return cls(event_id, str(kind), item, float(sent), value, float(received))
        except (ValueError, TypeError):
            logger.warning("skipping a malformed event record", extra={"eventId": event_id[:64]})
            return None


class Entity(NamedTuple):
    """A user's or session's item: its events (newest first, 100 per event type) and its link."""

    events: tuple[RecentEvent, ...] = ()
    #: The user a session was linked to by an event carrying both ids ("" if none).
    link: str = ""


NO_ENTITY = Entity()


class GroupState(NamedTuple):
    tracking_id: str | None = None
    tracker_arn: str | None = None
    #: When the tracker turns ACTIVE (serving containers have all seen it by then).
    active_at: float = 0.0
    #: Moves with every PutItems / PutUsers of the group.
    metadata_version: int = 0


NO_GROUP_STATE = GroupState()


class TrackerRef(NamedTuple):
    tracker_arn: str
    group_arn: str
    active_at: float


def entity_key(group: str, entity_id: str) -> str:
    return f"{ENTITY}{group}#{entity_id}"


def group_key(group: str) -> str:
    return f"{GROUP}{group}"


def tracking_key(tracking_id: str) -> str:
    return f"{TRACKING}{tracking_id}"


def metadata_key(group: str, dataset_type: str, shard: int) -> str:
    return f"{METADATA}{group}#{dataset_type}#{shard}"


def shard_of(record_id: str) -> int:
    return zlib.crc32(record_id.encode("utf-8")) % METADATA_SHARDS


def recent(events: Iterable[RecentEvent]) -> tuple[RecentEvent, ...]:
    """Newest first (by sentAt, then arrival), at most 100 per event type (types compared in lower case)."""
    kept: list[RecentEvent] = []
    per_type: dict[str, int] = {}
    for event in sorted(events, key=lambda e: (e.sent_at, e.received_at, e.event_id), reverse=True):
        kind = event.event_type.lower()
        if per_type.get(kind, 0) < RECENT_PER_EVENT_TYPE:
            per_type[kind] = per_type.get(kind, 0) + 1
            kept.append(event)
    return tuple(kept)


def string_value(value: str) -> dict[str, str]:
    """A DynamoDB string attribute."""
    return {"S": value}


def number_value(value: float) -> dict[str, str]:
    """A DynamoDB number attribute."""
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def entity_of(item: dict[str, Any] | None) -> Entity:
    """A user's or session's item as read (its events newest first, 100 per event type)."""
    if not item:
        return NO_ENTITY
    events = []
    for name, value in item.items():
        if name.startswith(EVENT_ATTRIBUTE) and "S" in value:
            event = RecentEvent.decode(name[len(EVENT_ATTRIBUTE) :], value["S"])
            if event is not None:
                events.append(event)
    return Entity(recent(events), item.get("link", {}).get("S", ""))


def group_state_of(item: dict[str, Any] | None) -> GroupState:
    """A dataset group's item as read."""
    if not item:
        return NO_GROUP_STATE
    return GroupState(
        tracking_id=item["tracker"]["S"] if "tracker" in item else None,
        tracker_arn=item["trackerArn"]["S"] if "trackerArn" in item else None,
        active_at=float(item["activeAt"]["N"]) if "activeAt" in item else 0.0,
        metadata_version=int(item["meta"]["N"]) if "meta" in item else 0,
    )
