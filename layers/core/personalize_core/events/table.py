"""The events table (``EVENTS_TABLE``, DynamoDB, key ``pk``): the only module that reads or writes it.

Its items, by key prefix (dataset groups are named by their name: ``dataset-group/<name>``):

    E#<group>#<id>       a user's or a session's recent events: one attribute ``e:<eventId>`` per
                         event (so writing an eventId twice keeps it once), ``link`` (a session: the
                         user it was linked to), ``copied`` (the user its history was copied to),
                         ``n`` (events written since the last compaction, plus those it kept)
    R#<recommendationId> the items a GetRecommendations / GetPersonalizedRanking answered with
                         (PutEvents resolves a recommendationId into implicit impressions)
    T#<trackingId>       the event tracker a trackingId names, and its dataset group
    G#<group>            the group's state: its tracker, when it turns ACTIVE, a PutItems/PutUsers
                         counter (serving re-reads the metadata when it moves)
    M#<group>#<TYPE>#<k> PutItems (TYPE ITEMS) / PutUsers (USERS) records, one attribute per id, in
                         METADATA_SHARDS shards by the id's CRC-32

Every write is a single-item UpdateItem or PutItem, blind (no read first): one PutEvents is one
round trip, and a condition (with the old item returned when it fails) covers the rare cases that
need to know more (a session linked to a user). Entity items grow by at most COMPACTION_SLACK
events before a compaction keeps the 100 most recent per event type (what Personalize's
interaction filters read), within ITEM_BUDGET bytes. Every item but the tracker and group ones
expires ``retention`` after its last write (the table's TTL attribute ``ttl``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from functools import cache, cached_property
from typing import Any

from personalize_core.aws.clients import create_events_dynamodb_client
from personalize_core.aws.json_client import AwsError, AwsJsonClient
from personalize_core.events.items import (
    BATCH_GET_MAX,
    COMPACTION_SLACK,
    COPY_CHUNK,
    EVENT_ATTRIBUTE,
    ITEM_BUDGET,
    METADATA_SHARDS,
    RECOMMENDATION,
    RECORD_ATTRIBUTE,
    Entity,
    GroupState,
    RecentEvent,
    TrackerRef,
    entity_key,
    entity_of,
    group_key,
    group_state_of,
    metadata_key,
    number_value,
    shard_of,
    string_value,
    tracking_key,
)
from personalize_core.settings import get_settings


class EventsTable:
    def __init__(
        self,
        name: str,
        client_factory: Callable[[], AwsJsonClient] = create_events_dynamodb_client,
        retention_seconds: float = 30 * 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._client_factory = client_factory
        self.retention_seconds = retention_seconds
        self.clock = clock

    @cached_property  # made on first use: no I/O when the module or the object is made
    def client(self) -> AwsJsonClient:
        return self._client_factory()

    def _expiry(self) -> dict[str, str]:
        return number_value(int(self.clock() + self.retention_seconds))

    def _get(self, key: str) -> dict[str, Any] | None:
        answer = self.client.call(
            "GetItem", {"TableName": self.name, "Key": {"pk": string_value(key)}, "ConsistentRead": True}
        )
        item: dict[str, Any] | None = answer.get("Item")
        return item

    def _batch_get(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The items of ``keys`` that exist, by key (consistent reads; unprocessed keys asked again)."""
        found: dict[str, dict[str, Any]] = {}
        pending = list(dict.fromkeys(keys))
        for _ in range(5):
            if not pending:
                return found
            batch, pending = pending[:BATCH_GET_MAX], pending[BATCH_GET_MAX:]
            request = {"Keys": [{"pk": string_value(k)} for k in batch], "ConsistentRead": True}
            answer = self.client.call("BatchGetItem", {"RequestItems": {self.name: request}})
            for item in answer.get("Responses", {}).get(self.name, []):
                found[item["pk"]["S"]] = item
            unprocessed = answer.get("UnprocessedKeys", {}).get(self.name, {}).get("Keys", [])
            pending = [k["pk"]["S"] for k in unprocessed] + pending
        if pending:
            raise AwsError(0, "ProvisionedThroughputExceededException", "BatchGetItem left keys unread")
        return found

    # -- users and sessions ------------------------------------------------------------------------

    def entity(self, group: str, entity_id: str) -> Entity:
        return entity_of(self._get(entity_key(group, entity_id)))

    def entity_with_group(self, group: str, entity_id: str) -> tuple[GroupState, Entity]:
        """The group's state and an entity's events, in one round trip."""
        keys = [group_key(group), entity_key(group, entity_id)]
        found = self._batch_get(keys)
        return group_state_of(found.get(keys[0])), entity_of(found.get(keys[1]))

    def entities(self, group: str, entity_ids: Sequence[str]) -> dict[str, Entity]:
        """Several entities' events (batch inference): those with an item, by id."""
        keys = {entity_key(group, e): e for e in entity_ids}
        found = self._batch_get(list(keys))
        return {keys[key]: entity_of(item) for key, item in found.items()}

    def _update_events(
        self,
        group: str,
        entity_id: str,
        events: Sequence[RecentEvent],
        condition: str | None = None,
        names: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
        sets: Sequence[str] = (),
    ) -> None:
        """One UpdateItem: ``events`` into the entity (an eventId it holds is overwritten, so kept
        once), its expiry pushed back; compacted when it has grown by COMPACTION_SLACK events."""
        names = {"#ttl": "ttl", "#n": "n", **(names or {})}
        values = {":ttl": self._expiry(), ":k": number_value(len(events)), **(values or {})}
        updates = ["#ttl = :ttl", *sets]
        for i, event in enumerate(events):
            names[f"#e{i}"] = EVENT_ATTRIBUTE + event.event_id
            values[f":e{i}"] = string_value(event.encode())
            updates.append(f"#e{i} = :e{i}")
        request: dict[str, Any] = {
            "TableName": self.name,
            "Key": {"pk": string_value(entity_key(group, entity_id))},
            "UpdateExpression": f"SET {', '.join(updates)} ADD #n :k",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "UPDATED_OLD",  # n always changes: its old value comes back
        }
        if condition is not None:
            request |= {"ConditionExpression": condition, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        try:
            old = self.client.call("UpdateItem", request).get("Attributes", {})
        except AwsError as error:
            if error.code != "ValidationException" or "size" not in error.message.lower():
                raise
            self.compact(group, entity_id)  # the item is full: make room and write again
            old = self.client.call("UpdateItem", request).get("Attributes", {})
        written = int(old.get("n", {}).get("N", "0"))
        if written // COMPACTION_SLACK != (written + len(events)) // COMPACTION_SLACK:
            self.compact(group, entity_id)

    def add_events(self, group: str, entity_id: str, events: Sequence[RecentEvent]) -> None:
        """A user's events (or a session's, when it is known to be linked)."""
        self._update_events(group, entity_id, events)

    def add_session_events(self, group: str, session_id: str, events: Sequence[RecentEvent]) -> str:
        """An anonymous session's events; returns the user the session is linked to ("" if none),
        whose item the caller writes them into too."""
        try:
            self._update_events(
                group,
                session_id,
                events,
                condition="attribute_not_exists(#link) OR #link = :none",
                names={"#link": "link"},
                values={":none": string_value("")},
            )
            return ""
        except AwsError as error:
            if error.code != "ConditionalCheckFailedException":
                raise
            link = str(error.details.get("Item", {}).get("link", {}).get("S", ""))
        self._update_events(group, session_id, events)
        return link

    def link_session(self, group: str, session_id: str, user_id: str) -> tuple[RecentEvent, ...] | None:
        """Link a session to its user. None if it was linked (and its history copied) before; else
        the session's events, which the caller copies into the user before ``mark_linked``."""
        try:
            self._update_events(
                group,
                session_id,
                (),
                condition="#copied = :user",
                names={"#link": "link", "#copied": "copied"},
                values={":user": string_value(user_id)},
                sets=["#link = :user"],
            )
            return None
        except AwsError as error:
            if error.code != "ConditionalCheckFailedException":
                raise
            return entity_of(error.details.get("Item")).events

    def copy_events(self, group: str, user_id: str, events: Sequence[RecentEvent]) -> None:
        """A linked session's history into its user (idempotent: eventIds are the attribute names)."""
        for start in range(0, len(events), COPY_CHUNK):
            self.add_events(group, user_id, events[start : start + COPY_CHUNK])

    def mark_linked(self, group: str, session_id: str, user_id: str) -> None:
        """The session belongs to ``user_id``, its history copied: reads of it read the user's."""
        self._update_events(
            group,
            session_id,
            (),
            names={"#link": "link", "#copied": "copied"},
            values={":user": string_value(user_id)},
            sets=["#link = :user", "#copied = :user"],
        )

    def compact(self, group: str, entity_id: str) -> None:
        """Keep the 100 most recent events per type (within ITEM_BUDGET bytes, none past the
        retention); skipped if another write lands meanwhile (the next one compacts)."""
        key = entity_key(group, entity_id)
        item = self._get(key)
        if not item:
            return
        oldest = self.clock() - self.retention_seconds
        events = [e for e in entity_of(item).events if e.received_at >= oldest]
        kept: dict[str, Any] = {}
        size = 0
        for event in events:  # newest first: the oldest are the ones left out
            encoded = event.encode()
            size += len(encoded) + len(event.event_id) + 2
            if size > ITEM_BUDGET:
                break
            kept[EVENT_ATTRIBUTE + event.event_id] = string_value(encoded)
        written = item.get("n", number_value(0))
        replacement: dict[str, Any] = {
            "pk": string_value(key),
            **kept,
            **{k: item[k] for k in ("link", "copied") if k in item},
            "n": number_value(
                len(kept)
            ),  # counts on from what is kept: the next compaction is SLACK events away
            "ttl": self._expiry(),
        }
        try:
            self.client.call(
                "PutItem",
                {
                    "TableName": self.name,
                    "Item": replacement,
                    "ConditionExpression": "#n = :n",
                    "ExpressionAttributeNames": {"#n": "n"},
                    "ExpressionAttributeValues": {":n": written},
                },
            )
        except AwsError as error:
            if error.code != "ConditionalCheckFailedException":
                raise

    # -- recommendations (implicit impressions) ----------------------------------------------------

    def put_recommendation(self, recommendation_id: str, group: str, item_ids: Sequence[str]) -> None:
        item = {
            "pk": string_value(RECOMMENDATION + recommendation_id),
            "group": string_value(group),
            "items": string_value(json.dumps(list(item_ids), separators=(",", ":"), ensure_ascii=False)),
            "ttl": self._expiry(),
        }
        self.client.call("PutItem", {"TableName": self.name, "Item": item})

    def recommendations(self, group: str, recommendation_ids: Iterable[str]) -> dict[str, list[str]]:
        """The items each known recommendationId of ``group`` answered with."""
        found = self._batch_get([RECOMMENDATION + r for r in recommendation_ids])
        out: dict[str, list[str]] = {}
        for key, item in found.items():
            if item.get("group", {}).get("S") == group:
                out[key[len(RECOMMENDATION) :]] = [str(i) for i in json.loads(item["items"]["S"])]
        return out

    # -- trackers and groups -----------------------------------------------------------------------

    def tracker(self, tracking_id: str) -> TrackerRef | None:
        item = self._get(tracking_key(tracking_id))
        if not item:
            return None
        return TrackerRef(item["trackerArn"]["S"], item["groupArn"]["S"], float(item["activeAt"]["N"]))

    def group_state(self, group: str) -> GroupState:
        return group_state_of(self._get(group_key(group)))

    def tracker_items(
        self, group: str, group_arn: str, tracking_id: str, tracker_arn: str, active_at: float
    ) -> list[dict[str, Any]]:
        """The two items CreateEventTracker writes beside its record, as TransactWriteItems Puts:
        the group's claim (refused if the group has a tracker) and the trackingId's lookup."""
        claim = {
            "TableName": self.name,
            "Item": {
                "pk": string_value(group_key(group)),
                "tracker": string_value(tracking_id),
                "trackerArn": string_value(tracker_arn),
                "activeAt": number_value(active_at),
            },
            "ConditionExpression": "attribute_not_exists(tracker)",
        }
        lookup = {
            "TableName": self.name,
            "Item": {
                "pk": string_value(tracking_key(tracking_id)),
                "trackerArn": string_value(tracker_arn),
                "groupArn": string_value(group_arn),
                "activeAt": number_value(active_at),
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        return [{"Put": claim}, {"Put": lookup}]

    def tracker_removals(self, group: str, tracking_id: str) -> list[dict[str, Any]]:
        """What DeleteEventTracker removes beside its record: the claim (the group's metadata counter
        stays) and the lookup."""
        release = {
            "TableName": self.name,
            "Key": {"pk": string_value(group_key(group))},
            "UpdateExpression": "REMOVE tracker, trackerArn, activeAt",
        }
        lookup = {"TableName": self.name, "Key": {"pk": string_value(tracking_key(tracking_id))}}
        return [{"Update": release}, {"Delete": lookup}]

    # -- PutItems / PutUsers -----------------------------------------------------------------------

    def put_metadata(self, group: str, dataset_type: str, records: Sequence[tuple[str, str]]) -> None:
        """``records`` (id, fields as JSON) into their shards, then the group's counter moved (so
        serving containers read them again); a write that fails leaves the counter as it was."""
        shards: dict[int, list[tuple[str, str]]] = {}
        for record_id, fields in records:
            shards.setdefault(shard_of(record_id), []).append((record_id, fields))
        now = self.clock()
        for shard, entries in sorted(shards.items()):
            names = {f"#r{i}": RECORD_ATTRIBUTE + record_id for i, (record_id, _) in enumerate(entries)}
            values: dict[str, Any] = {f":r{i}": string_value(fields) for i, (_, fields) in enumerate(entries)}
            values[":now"] = number_value(now)
            sets = [f"#r{i} = :r{i}" for i in range(len(entries))] + ["u = :now"]
            self.client.call(
                "UpdateItem",
                {
                    "TableName": self.name,
                    "Key": {"pk": string_value(metadata_key(group, dataset_type, shard))},
                    "UpdateExpression": "SET " + ", ".join(sets),
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                },
            )
        self.client.call(
            "UpdateItem",
            {
                "TableName": self.name,
                "Key": {"pk": string_value(group_key(group))},
                "UpdateExpression": "ADD meta :one",
                "ExpressionAttributeValues": {":one": number_value(1)},
            },
        )

    def metadata(self, group: str, dataset_type: str) -> dict[str, dict[str, str]]:
        """Every PutItems (ITEMS) or PutUsers (USERS) record of the group: id -> field -> value."""
        keys = [metadata_key(group, dataset_type, shard) for shard in range(METADATA_SHARDS)]
        out: dict[str, dict[str, str]] = {}
        for item in self._batch_get(keys).values():
            for name, value in item.items():
                if name.startswith(RECORD_ATTRIBUTE) and "S" in value:
                    out[name[len(RECORD_ATTRIBUTE) :]] = json.loads(value["S"])
        return out


@cache
def get_events_table() -> EventsTable | None:
    """The process's events table; None when the stack has none (EVENTS_TABLE unset)."""
    settings = get_settings()
    if not settings.events_table:
        return None
    return EventsTable(settings.events_table, retention_seconds=settings.event_retention_days * 86400.0)
