"""Events recorded by PutEvents as training data: the Firehose files under ``events/``.

Each training reads the files written since the previous one and keeps what it read, compacted,
in the group's Interactions dataset (``datasets/<group>/INTERACTIONS/events-<n>/``, listed in the
dataset record's ``events`` attribute with the cursor it reached), so no file is read twice and no
event is forgotten. A FULL import does not replace them (as in Personalize, whose FULL imports keep
the events an event tracker recorded).

Rows are those of the group, an eventId counted once (the first to arrive: Personalize's rule);
an anonymous event (USER_ID is the sessionId) of a session that an event with both ids linked to a
user is that user's. The cursor is the newest LastModified read, less MARGIN: an object whose
upload began before the cursor but appeared after the listing is read next time, and the keys
already read within the margin are kept so that they are not read twice.
"""

from __future__ import annotations

import time
from array import array
from dataclasses import replace
from typing import Any

import numpy as np

from personalize_core.control.records import Record, RecordsTable
from personalize_core.datasets.data import (
    Interactions,
    decode_interactions,
    encode_interactions,
    import_key,
    merge_interactions,
)
from personalize_core.events.delivery import EventRow, read_event_rows
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.observability import logger

EVENTS_PREFIX = "events/"
#: Objects this close to the cursor are read again (unless their key was read): S3 lists an object
#: once its upload has finished, with the time it began.
MARGIN_SECONDS = 300.0


def rows_interactions(rows: list[EventRow]) -> Interactions | None:
    """Event rows as interactions: eventIds once, anonymous events given to their linked user."""
    rows = sorted(rows, key=lambda r: r.received_at)
    linked = {r.session_id: r.user_id for r in rows if r.user_id != r.session_id}
    seen: set[str] = set()
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    types: dict[str, int] = {}
    user_codes, item_codes = array("i"), array("i")
    stamps, codes, values = array("q"), array("h"), array("f")
    for row in rows:
        if row.event_id in seen or not row.item_id:
            continue
        seen.add(row.event_id)
        user = linked.get(row.session_id, row.user_id) if row.user_id == row.session_id else row.user_id
        user_codes.append(users.setdefault(user, len(users)))
        item_codes.append(items.setdefault(row.item_id, len(items)))
        stamps.append(row.timestamp)
        codes.append(types.setdefault(row.event_type, len(types)) if row.event_type else -1)
        try:
            values.append(float(row.event_value) if row.event_value else float("nan"))
        except ValueError:
            values.append(float("nan"))
    if not user_codes:
        return None
    return Interactions(
        list(users),
        list(items),
        np.frombuffer(user_codes, dtype=np.int32),
        np.frombuffer(item_codes, dtype=np.int32),
        np.frombuffer(stamps, dtype=np.int64),
        list(types),
        np.frombuffer(codes, dtype=np.int16),
        np.frombuffer(values, dtype=np.float32),
    )


class RecordedEvents:
    """An ``InteractionSource``: the events the group's tracker recorded (compacted and new)."""

    def __init__(
        self, bucket: ModelBucket, records: RecordsTable, group_arn: str, dataset: Record | None
    ) -> None:
        self.bucket = bucket
        self.records = records
        self.group_arn = group_arn
        self.group = group_arn.rsplit("/", 1)[1]
        self.dataset = dataset

    def read(self) -> Interactions | None:
        state: dict[str, Any] = dict((self.dataset.attributes if self.dataset else {}).get("events") or {})
        cursor = float(state.get("cursor", 0.0))
        edge = set(state.get("edge", []))
        compacted = [decode_interactions(self.bucket.read(key)) for key in state.get("compacted", [])]
        listed = [(k, t) for k, t in self.bucket.objects(EVENTS_PREFIX) if t > cursor - MARGIN_SECONDS]
        fresh = [(k, t) for k, t in listed if k not in edge]
        rows = [
            row
            for key, _ in fresh
            for row in read_event_rows(self.bucket.read(key))
            if row.dataset_group_arn == self.group_arn
        ]
        new = rows_interactions(rows)
        if fresh and self.dataset is not None:
            newest = max(t for _, t in fresh)
            self._compact(state, new, newest, [k for k, t in listed if t > newest - MARGIN_SECONDS])
        found = [*compacted, *([new] if new is not None else [])]
        return merge_interactions(found) if found else None

    def _compact(
        self, state: dict[str, Any], new: Interactions | None, newest: float, edge: list[str]
    ) -> None:
        """Keep what was read in the dataset, and how far: conditional on the record not having
        changed (a concurrent training that got there first has read at least as much)."""
        assert self.dataset is not None
        keys = list(state.get("compacted", []))
        if new is not None:
            key = import_key(self.group, "INTERACTIONS", f"events-{int(newest * 1000)}")
            self.bucket.upload(key, encode_interactions(new))
            keys.append(key)
        events = {"compacted": keys, "cursor": max(newest, float(state.get("cursor", 0.0))), "edge": edge}
        # A new updatedAt: a writer that read the record before this one must not overwrite it.
        stamp = max(round(time.time(), 3), self.dataset.updated_at + 0.001)
        updated = replace(
            self.dataset, updated_at=stamp, attributes={**self.dataset.attributes, "events": events}
        )
        if self.records.replace(self.dataset, updated) is None:
            logger.info("events were compacted by another training meanwhile", extra={"group": self.group})
