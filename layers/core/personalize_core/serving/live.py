"""What a request reads of its dataset group's live data: the user's (or session's) recent events,
PutItems / PutUsers records, and whether the group has an event tracker at all.

Read-your-writes: a tracked group's user events are read on every request, with a consistent
read, so an event PutEvents has acknowledged is in the next answer of any container. What a
container keeps is only the group's state (tracker or not, its metadata counter), for
EVENT_GROUP_TTL_SECONDS; a new tracker turns ACTIVE only once that has passed (control/
event_trackers.py), so no container skips the events of a group that can have any. A group
without a tracker costs one GetItem per that TTL per container, and nothing per request.

When the state is stale, the group's item and the user's are read in one BatchGetItem: every
request makes one round trip at most (two for a session linked to a user, which reads the user's).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from functools import cache
from typing import NamedTuple

from personalize_core.arns import parse_arn
from personalize_core.aws.json_client import AwsError
from personalize_core.events.items import NO_ENTITY, Entity, GroupState, RecentEvent, store_error
from personalize_core.events.table import EventsTable, get_events_table
from personalize_core.modelstore.model import SolutionVersionModel
from personalize_core.observability import logger, metrics
from personalize_core.serving.overlay import MetadataOverlay
from personalize_core.settings import get_settings


class Live(NamedTuple):
    """A request's live data (all empty for an untracked group without PutItems / PutUsers)."""

    #: The group has an event tracker: its answers are recorded (implicit impressions).
    tracked: bool = False
    #: The user's recent events, newest first, 100 per event type.
    events: tuple[RecentEvent, ...] = ()
    overlay: MetadataOverlay | None = None
    #: The dataset group's name.
    group: str = ""


NO_LIVE = Live()


class _GroupView:
    __slots__ = ("items", "overlays", "read_at", "state", "users")

    def __init__(self, state: GroupState, read_at: float) -> None:
        self.state = state
        self.read_at = read_at
        #: PutItems / PutUsers records at ``state.metadata_version`` (None: not read yet).
        self.items: dict[str, dict[str, str]] | None = None
        self.users: dict[str, dict[str, str]] | None = None
        #: Overlays built from them, by solution version ARN (versions are immutable).
        self.overlays: dict[str, MetadataOverlay] = {}


def group_name(model: SolutionVersionModel) -> str:
    return parse_arn(model.manifest.dataset_group, "datasetGroupArn", "dataset-group").path[0]


class LiveStore:
    def __init__(
        self,
        table: EventsTable | None,
        group_ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.group_ttl_seconds = group_ttl_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._groups: dict[str, _GroupView] = {}

    def read(self, model: SolutionVersionModel, user_id: str | None) -> Live:
        """The live data a request for ``user_id`` reads (its events only where the recipe has users)."""
        if self.table is None:
            return NO_LIVE
        group = group_name(model)
        wants_user = user_id is not None and model.manifest.recipe.needs_user_factors
        try:
            view, entity = self._view(group, user_id if wants_user else None)
            events: tuple[RecentEvent, ...] = ()
            tracked = view.state.tracking_id is not None
            if tracked and user_id is not None and wants_user:
                if entity is None:
                    entity = self.table.entity(group, user_id)
                events = entity.events
                if entity.link:  # a session linked to a user: the user's events are its own
                    events = self.table.entity(group, entity.link).events
            overlay = self._overlay(group, view, model) if view.state.metadata_version else None
        except AwsError as error:
            raise store_error(error, "events table") from error
        return Live(tracked, events, overlay, group)

    def read_many(self, model: SolutionVersionModel, user_ids: Sequence[str]) -> Callable[[str | None], Live]:
        """What ``read`` gives each of many users (batch inference), in batched reads."""
        if self.table is None:
            return lambda _: NO_LIVE
        group = group_name(model)
        try:
            view, _ = self._view(group, None)
            overlay = self._overlay(group, view, model) if view.state.metadata_version else None
            tracked = view.state.tracking_id is not None
            base = Live(tracked, (), overlay, group)
            if not tracked or not model.manifest.recipe.needs_user_factors or not user_ids:
                return lambda _: base
            entities = self.table.entities(group, list(dict.fromkeys(user_ids)))
            links = {e.link for e in entities.values() if e.link}
            linked = self.table.entities(group, sorted(links)) if links else {}
        except AwsError as error:
            raise store_error(error, "events table") from error
        events = {
            user: (linked[e.link].events if e.link in linked else ()) if e.link else e.events
            for user, e in entities.items()
        }
        return lambda user: base._replace(events=events.get(user, ())) if user is not None else base

    def _view(self, group: str, user_id: str | None) -> tuple[_GroupView, Entity | None]:
        assert self.table is not None
        now = self.clock()
        with self._lock:
            view = self._groups.get(group)
        if view is not None and now - view.read_at < self.group_ttl_seconds:
            return view, None
        if user_id is not None:  # the group's state and the user's events in one round trip
            state, entity = self.table.entity_with_group(group, user_id)
        else:
            state, entity = self.table.group_state(group), NO_ENTITY
        fresh = _GroupView(state, now)
        if view is not None and view.state.metadata_version == state.metadata_version:
            fresh.items, fresh.users, fresh.overlays = view.items, view.users, view.overlays
        with self._lock:
            self._groups[group] = fresh
        return fresh, entity

    def _overlay(self, group: str, view: _GroupView, model: SolutionVersionModel) -> MetadataOverlay:
        assert self.table is not None
        overlay = view.overlays.get(model.arn)
        if overlay is None:
            if view.items is None or view.users is None:
                view.items = self.table.metadata(group, "ITEMS")
                view.users = self.table.metadata(group, "USERS")
            key = f"{group}:{view.state.metadata_version}"
            overlay = MetadataOverlay.build(model.item_index, view.items, view.users, key)
            view.overlays[model.arn] = overlay
        return overlay

    def record(self, live: Live, recommendation_id: str, item_ids: Sequence[str]) -> None:
        """Keep a tracked group's answer, so PutEvents can turn its recommendationId into implicit
        impressions. A failure costs the answer nothing: it is logged and counted."""
        if not live.tracked or self.table is None:
            return
        try:
            self.table.put_recommendation(recommendation_id, live.group, item_ids)
        except AwsError as error:
            logger.warning("a recommendation was not recorded", extra={"reason": str(error)[:300]})
            metrics.add_metric(name="RecommendationsNotRecorded", unit="Count", value=1)


@cache
def get_live() -> LiveStore:
    return LiveStore(get_events_table(), get_settings().event_group_ttl_seconds)
