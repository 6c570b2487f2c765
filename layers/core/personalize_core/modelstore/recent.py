"""A version's recent interactions (``interactions/``, laid out in attributes.py), encoded.

What interaction filters read: each user's RECENT_PER_EVENT_TYPE most recent items per event type
(lower-cased), most recent first; users in id order, a user's event types in name order, event
codes numbered as they first appear. Two ways in, one answer:
- ``from_events``: (user, item, timestamp, event type) tuples (the publish CLI, a handful of rows);
- ``from_arrays``: training's coded arrays, sorted and cut with numpy (10M interactions took ~10 s
  in Python dictionaries; tests/unit/test_recent_interactions.py checks both give the same bytes).
Equal timestamps keep the rows' order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from personalize_core.modelstore.attributes import INTERACTIONS, RECENT_PER_EVENT_TYPE, SCHEMA
from personalize_core.modelstore.layout import encode_ids
from personalize_core.modelstore.npy import encode_npy


class RecentRows(NamedTuple):
    user_ids: list[str]  # sorted
    indptr: np.ndarray  # int64 [users + 1]
    items: np.ndarray  # int32 item rows
    codes: np.ndarray  # int16 codes into event_types
    event_types: list[str]  # lower-cased, in order of first appearance

    def files(self) -> dict[str, bytes]:
        schema = {"users": len(self.user_ids), "eventTypes": self.event_types}
        return {
            INTERACTIONS + "user_ids.txt": encode_ids(self.user_ids),
            INTERACTIONS + "indptr.npy": encode_npy(self.indptr),
            INTERACTIONS + "items.npy": encode_npy(self.items.astype(np.int32, copy=False)),
            INTERACTIONS + "events.npy": encode_npy(self.codes.astype(np.int16, copy=False)),
            INTERACTIONS + SCHEMA: json.dumps(schema).encode(),
        }


def from_events(item_index: Mapping[str, int], events: Sequence[tuple[str, str, float, str]]) -> RecentRows:
    """``events`` are (user, item, timestamp, event type); items not in ``item_index`` are left out."""
    by_user: dict[str, dict[str, list[tuple[float, int]]]] = {}
    for user, item, timestamp, event_type in events:
        index = item_index.get(item)
        if index is not None:
            by_user.setdefault(user, {}).setdefault(event_type.lower(), []).append((timestamp, index))
    type_code: dict[str, int] = {}
    users = sorted(by_user)
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    items: list[int] = []
    codes: list[int] = []
    for row, user in enumerate(users):
        for event_type, seen in sorted(by_user[user].items()):
            recent = sorted(seen, key=lambda pair: -pair[0])[:RECENT_PER_EVENT_TYPE]
            items.extend(index for _, index in recent)
            codes.extend([type_code.setdefault(event_type, len(type_code))] * len(recent))
        indptr[row + 1] = len(items)
    return RecentRows(
        users, indptr, np.asarray(items, dtype=np.int32), np.asarray(codes, dtype=np.int16), list(type_code)
    )


def from_arrays(
    user_ids: Sequence[str],
    users: np.ndarray,
    items: np.ndarray,
    stamps: np.ndarray,
    event_types: Sequence[str],
    codes: np.ndarray,
) -> RecentRows:
    """One row per interaction: ``users`` index ``user_ids``, ``items`` are item rows, ``codes``
    index ``event_types`` (-1: no event type, the empty name)."""
    names = [name.lower() for name in (*event_types, "")]
    sorted_names = sorted(set(names))
    name_rank = np.array([sorted_names.index(name) for name in names], dtype=np.int64)
    type_rank = name_rank[codes.astype(np.int64)]  # -1 indexes the last: the empty name
    present = np.unique(users).tolist()
    by_id = sorted(present, key=user_ids.__getitem__)
    user_rank = np.zeros(len(user_ids), dtype=np.int64)
    user_rank[by_id] = np.arange(len(by_id))
    ranks = user_rank[users]
    # User (by id), event type (by name), newest first, then the rows' own order.
    order = np.lexsort((np.arange(users.size), -stamps.astype(np.float64), type_rank, ranks))
    group = ranks[order] * len(sorted_names) + type_rank[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    position = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
    kept = order[position < RECENT_PER_EVENT_TYPE]
    kept_types = type_rank[kept]
    # Codes as the types first appear, in this order.
    seen, first = np.unique(kept_types, return_index=True)
    appearance = seen[np.argsort(first, kind="stable")]
    code_of = np.zeros(len(sorted_names), dtype=np.int16)
    code_of[appearance] = np.arange(appearance.size)
    indptr = np.zeros(len(by_id) + 1, dtype=np.int64)
    np.cumsum(np.bincount(ranks[kept], minlength=len(by_id)), out=indptr[1:])
    return RecentRows(
        [user_ids[u] for u in by_id],
        indptr,
        items[kept].astype(np.int32),
        code_of[kept_types],
        [sorted_names[t] for t in appearance.tolist()],
    )


def encode_interactions(
    item_index: Mapping[str, int], events: Sequence[tuple[str, str, float, str]]
) -> dict[str, bytes]:
    """The ``interactions/`` files of (user, item, timestamp, event type) tuples."""
    return from_events(item_index, events).files()
