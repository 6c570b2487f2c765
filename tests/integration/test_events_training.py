"""Recorded events as training data: the Firehose files read once, compacted into the dataset, an
eventId counted once, linked sessions given to their users, PutItems records in the items."""

from __future__ import annotations

import time
import uuid
from typing import Any

from personalize_core.control.workspace import get_workspace
from personalize_core.datasets.data import decode_interactions
from personalize_core.modelstore.objects import S3Objects
from personalize_core.modelstore.store import ModelStore
from tests.conftest import events_clients
from tests.integration.test_training import Training, demo_files, training  # noqa: F401 - fixtures
from tests.utils import ACCOUNT, REGION


def version_users(version_arn: str, asked: list[str]) -> set[str]:
    """Which of ``asked`` the version has a vector for (read from its user pages, as serving does)."""
    solution, version = version_arn.split(":solution/")[1].split("/")
    model = ModelStore(S3Objects(get_workspace().bucket.bucket)).version(solution, version)
    assert model.users is not None
    return {user for user in asked if model.users.get(user) is not None}


def watched(items: list[str], prefix: str) -> list[dict[str, Any]]:
    return [
        {"eventId": f"{prefix}-{i}", "eventType": "watch", "itemId": item, "sentAt": time.time()}
        for i, item in enumerate(items)
    ]


def test_recorded_events_train_the_next_versions(
    training: Training,  # noqa: F811 - the fixture imported above
    events_api: str,
    runtime: Any,
) -> None:
    events = events_clients(events_api)[0]
    p = training.personalize
    group = training.group_with_data()
    tracker = p.create_event_tracker(name=f"t-{uuid.uuid4().hex[:8]}", datasetGroupArn=group)
    tracking = tracker["trackingId"]
    # Given a new user's events, an anonymous visit later linked to them, and an event sent twice
    events.put_events(
        trackingId=tracking, sessionId="visit-1", eventList=watched(["item-1", "item-2"], "anon")
    )
    events.put_events(
        trackingId=tracking,
        sessionId="visit-1",
        userId="fresh-user",
        eventList=watched(["item-3", "item-4", "item-5"], "known"),
    )
    events.put_events(
        trackingId=tracking, sessionId="visit-1", userId="fresh-user", eventList=watched(["item-3"], "known")
    )
    # And an item's genres changed with PutItems
    dataset = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset/{group.rsplit('/', 1)[1]}/ITEMS"
    events.put_items(
        datasetArn=dataset,
        items=[
            {
                "itemId": "item-7",
                "properties": '{"title": "New", "genres": "space-opera", "year": 1999, "price": 5}',
            }
        ],
    )
    solution = training.solution(group, performAutoTraining=False)
    # When a version trains
    first = training.trained_version(solution)
    assert first["status"] == "ACTIVE", first.get("failureReason")
    # Then it knows the new user, whose anonymous visit counts as theirs (not as a user of its own)
    bucket = get_workspace().bucket
    assert version_users(first["solutionVersionArn"], ["fresh-user", "visit-1"]) == {"fresh-user"}
    # And what it read is kept in the dataset, each event once
    record = get_workspace().records.get(
        f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset/{group.rsplit('/', 1)[1]}/INTERACTIONS"
    )
    assert record is not None
    state = record.attributes["events"]
    assert len(state["compacted"]) == 1
    kept = decode_interactions(bucket.read(state["compacted"][0]))
    assert kept.rows == 5
    assert set(kept.user_ids) == {"fresh-user"}
    # And the PutItems record is part of the version's items
    campaign = p.create_campaign(
        name=f"c-{uuid.uuid4().hex[:8]}", solutionVersionArn=first["solutionVersionArn"]
    )
    ranked = runtime.get_recommendations(
        campaignArn=campaign["campaignArn"],
        userId="fresh-user",
        numResults=50,
        metadataColumns={"ITEMS": ["GENRES"]},
    )["itemList"]
    assert ranked
    # When more events arrive and another version trains
    events.put_events(
        trackingId=tracking,
        sessionId="visit-2",
        userId="second-user",
        eventList=watched(["item-9"], "second"),
    )
    second = training.trained_version(solution)
    assert second["status"] == "ACTIVE", second.get("failureReason")
    # Then it has both users: the compacted events and the new file, which alone was read
    prefix = f"solutions/{solution.rsplit('/', 1)[1]}/{second['solutionVersionArn'].rsplit('/', 1)[1]}/"
    assert version_users(second["solutionVersionArn"], ["fresh-user", "second-user"]) == {
        "fresh-user",
        "second-user",
    }
    record = get_workspace().records.get(record.arn)
    assert record is not None
    compacted = record.attributes["events"]["compacted"]
    assert len(compacted) == 2
    assert decode_interactions(bucket.read(compacted[1])).user_ids == ["second-user"]
    items = bucket.read(prefix + "items/schema.json")
    assert b"space-opera" in items
