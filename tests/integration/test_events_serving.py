"""Serving with events: fold-in for known and unknown users, interaction filters that see an event
at once, PutItems / PutUsers over the version's metadata, read-your-writes across containers,
untracked groups paying nothing, and batch inference using the same vectors."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from personalize_core.batch.inference import Line, answer_lines
from personalize_core.edge.requests import RankingRequest, RecommendationsRequest
from personalize_core.events.table import EventsTable
from personalize_core.modelstore.layout import FoldIn
from personalize_core.modelstore.objects import S3Objects
from personalize_core.modelstore.store import ModelStore
from personalize_core.serving import operations
from personalize_core.serving.live import LiveStore
from tests.conftest import events_clients
from tests.events_helpers import event, item_numbers, publish_tracked
from tests.faults import FaultProxy
from tests.utils import ACCOUNT, REGION, clear_process_caches

STRONG = FoldIn(alpha=20.0, regularization=1.0)


@pytest.fixture
def clients(events_api: str) -> tuple[Any, Any, Any]:
    return events_clients(events_api)


def comedies(items: list[dict[str, Any]]) -> int:
    return sum(1 for n in item_numbers(items) if n % 2 == 0)


def test_an_exclude_filter_hides_a_just_watched_item_on_the_very_next_request(
    clients: tuple[Any, Any, Any], s3: Any, serving_bucket: str
) -> None:
    events, runtime, personalize = clients
    tracked = publish_tracked(s3, serving_bucket, personalize)
    unwatched = personalize.create_filter(
        name=f"unwatched-{uuid.uuid4().hex[:8]}",
        datasetGroupArn=tracked.group_arn,
        filterExpression='EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("watch")',
    )["filterArn"]
    for who, session in (("user-2", "s-2"), (None, "anonymous-2")):  # a known user, then a session
        target = who or session
        top = runtime.get_recommendations(
            campaignArn=tracked.campaign_arn, userId=target, filterArn=unwatched
        )
        first = top["itemList"][0]["itemId"]
        # When they watch the first item they were shown
        events.put_events(
            trackingId=tracked.tracking_id,
            sessionId=session,
            eventList=[event(first)],
            **({"userId": who} if who else {}),
        )
        # Then the very next request does not show it
        after = runtime.get_recommendations(
            campaignArn=tracked.campaign_arn, userId=target, filterArn=unwatched, numResults=100
        )
        assert first not in {item["itemId"] for item in after["itemList"]}, target
        # And a click is not a watch
        events.put_events(
            trackingId=tracked.tracking_id,
            sessionId=session,
            eventList=[event(after["itemList"][0]["itemId"], "click")],
            **({"userId": who} if who else {}),
        )
        again = runtime.get_recommendations(
            campaignArn=tracked.campaign_arn, userId=target, filterArn=unwatched, numResults=100
        )
        assert after["itemList"][0]["itemId"] in {item["itemId"] for item in again["itemList"]}


def test_events_move_known_and_unknown_users_towards_what_they_did(
    clients: tuple[Any, Any, Any], s3: Any, serving_bucket: str
) -> None:
    events, runtime, personalize = clients
    tracked = publish_tracked(s3, serving_bucket, personalize, fold_in=STRONG)
    campaign = tracked.campaign_arn
    before = runtime.get_recommendations(campaignArn=campaign, userId="user-4", numResults=20)["itemList"]
    # When a known user and a newcomer each watch eight comedies (even items), and another newcomer
    # eight dramas (odd items)
    for who, first in (("user-4", 0), ("comedy-fan", 0), ("drama-fan", 1)):
        watched = [event(2 * i + first, eventId=f"{who}-{i}") for i in range(8)]
        events.put_events(trackingId=tracked.tracking_id, sessionId=f"s-{who}", userId=who, eventList=watched)
    # Then each is recommended what they watched more of, at once (the known user's stored taste
    # still counts: it is the fold-in's prior), with softmax scores over the catalog
    known = runtime.get_recommendations(campaignArn=campaign, userId="user-4", numResults=20)["itemList"]
    fan = runtime.get_recommendations(campaignArn=campaign, userId="comedy-fan", numResults=20)["itemList"]
    other = runtime.get_recommendations(campaignArn=campaign, userId="drama-fan", numResults=20)["itemList"]
    assert item_numbers(known) != item_numbers(before)
    assert comedies(known) >= comedies(before) + 5
    assert comedies(fan) >= 18
    assert comedies(other) <= 2
    assert all(0 < item["score"] < 1 for item in known + fan + other)
    # And a ranking uses the same vector: comedies first
    ranked = runtime.get_personalized_ranking(
        campaignArn=tracked.ranking_arn,
        userId="comedy-fan",
        inputList=["item-1", "item-2", "item-3", "item-4"],
    )["personalizedRanking"]
    assert {item["itemId"] for item in ranked[:2]} == {"item-2", "item-4"}
    assert sum(item["score"] for item in ranked) == pytest.approx(1.0)


def test_put_items_and_put_users_reach_filters_and_metadata_within_seconds(
    clients: tuple[Any, Any, Any], s3: Any, serving_bucket: str
) -> None:
    events, runtime, personalize = clients
    tracked = publish_tracked(s3, serving_bucket, personalize)
    items_dataset = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset/{tracked.solution}/ITEMS"
    users_dataset = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset/{tracked.solution}/USERS"
    comedy = personalize.create_filter(
        name=f"comedy-{uuid.uuid4().hex[:8]}",
        datasetGroupArn=tracked.group_arn,
        filterExpression='INCLUDE ItemID WHERE Items.GENRE IN ("comedy") AND Items.PRICE < 50 '
        'IF CurrentUser.TIER = "gold"',
    )["filterArn"]

    def shown(user: str) -> set[int]:
        answer = runtime.get_recommendations(
            campaignArn=tracked.campaign_arn, userId=user, numResults=100, filterArn=comedy
        )
        return set(item_numbers(answer["itemList"]))

    assert shown("user-0") == set(range(0, 50, 2))
    # When item-3 becomes a cheap comedy and item-4 an expensive one (PutItems), and user-1 gold
    events.put_items(
        datasetArn=items_dataset,
        items=[
            {"itemId": "item-3", "properties": '{"genre": "comedy|drama", "price": 3}'},
            {"itemId": "item-4", "properties": '{"genre": "comedy", "price": "99"}'},
            {"itemId": "item-new", "properties": '{"genre": "comedy"}'},  # not in the version: no effect
        ],
    )
    events.put_users(datasetArn=users_dataset, users=[{"userId": "user-1", "properties": '{"tier": "gold"}'}])
    # Then the next requests see it, in filters and in metadataColumns
    assert shown("user-0") == (set(range(0, 50, 2)) - {4}) | {3}
    assert shown("user-1") == (set(range(0, 50, 2)) - {4}) | {3}
    ranked = runtime.get_personalized_ranking(
        campaignArn=tracked.ranking_arn,
        userId="user-0",
        inputList=["item-3", "item-5"],
        metadataColumns={"ITEMS": ["GENRE", "PRICE"]},
    )["personalizedRanking"]
    assert {item["itemId"]: item["metadata"] for item in ranked} == {
        "item-3": {"GENRE": "comedy|drama", "PRICE": "3"},
        "item-5": {"GENRE": "drama", "PRICE": "5"},
    }
    # And a field the dataset does not have, or a value of the wrong type, is refused
    with pytest.raises(events.exceptions.InvalidInputException, match="COLOUR"):
        events.put_items(
            datasetArn=items_dataset, items=[{"itemId": "item-1", "properties": '{"colour": "red"}'}]
        )
    with pytest.raises(events.exceptions.InvalidInputException, match="not a number"):
        events.put_items(
            datasetArn=items_dataset, items=[{"itemId": "item-1", "properties": '{"price": "cheap"}'}]
        )
    with pytest.raises(events.exceptions.InvalidInputException, match="writes a Users dataset"):
        events.put_users(datasetArn=items_dataset, users=[{"userId": "user-1"}])


def test_put_items_checks_a_real_datasets_schema(clients: tuple[Any, Any, Any]) -> None:
    events, _, personalize = clients
    group = personalize.create_dataset_group(name=f"g-{uuid.uuid4().hex[:8]}")["datasetGroupArn"]
    schema = personalize.create_schema(
        name=f"s-{uuid.uuid4().hex[:8]}",
        schema='{"type": "record", "name": "Items", "fields": [{"name": "ITEM_ID", "type": "string"},'
        ' {"name": "NUMBER_OF_RATINGS", "type": "int"}], "version": "1.0"}',
    )["schemaArn"]
    dataset = personalize.create_dataset(
        name=f"d-{uuid.uuid4().hex[:8]}", schemaArn=schema, datasetGroupArn=group, datasetType="ITEMS"
    )["datasetArn"]
    events.put_items(datasetArn=dataset, items=[{"itemId": "i-1", "properties": '{"numberOfRatings": "12"}'}])
    with pytest.raises(events.exceptions.InvalidInputException, match="not an integer"):
        events.put_items(
            datasetArn=dataset, items=[{"itemId": "i-1", "properties": '{"numberOfRatings": "x"}'}]
        )


def _containers(serving_bucket: str, events_table: str) -> list[tuple[ModelStore, LiveStore]]:
    # Each as a warm serving container holds them: its own model store and its own live store,
    # trusting what it read of a group for a minute.
    return [
        (ModelStore(S3Objects(serving_bucket)), LiveStore(EventsTable(events_table), group_ttl_seconds=60))
        for _ in range(2)
    ]


def test_read_your_writes_holds_across_containers(
    clients: tuple[Any, Any, Any], s3: Any, serving_bucket: str, events_table: str
) -> None:
    events, _, personalize = clients
    tracked = publish_tracked(s3, serving_bucket, personalize, fold_in=STRONG)
    containers = _containers(serving_bucket, events_table)
    request = RecommendationsRequest.parse(
        {"campaignArn": tracked.campaign_arn, "userId": "reader", "numResults": 20}
    )
    warm = [operations.get_recommendations(request, store, live=live).items for store, live in containers]
    assert warm[0] == warm[1]
    for round_ in range(3):
        # When an event is acknowledged
        events.put_events(
            trackingId=tracked.tracking_id,
            sessionId="reader",
            eventList=[event(2 * round_, eventId=f"r{round_}")],
        )
        # Then every warm container's next answer reflects it, and they agree
        answers = [
            operations.get_recommendations(request, store, live=live).items for store, live in containers
        ]
        assert answers[0] == answers[1] != warm[0]
        warm = answers


def test_a_group_without_a_tracker_reads_dynamodb_once_per_ttl_not_per_request(
    events_api: str, s3: Any, serving_bucket: str, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = FaultProxy(moto_url).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
        monkeypatch.setenv("EVENT_GROUP_TTL_SECONDS", "60")
        clear_process_caches()
        untracked = publish_tracked(s3, serving_bucket, None)
        runtime = events_clients(events_api)[1]
        for _ in range(20):
            runtime.get_recommendations(campaignArn=untracked.campaign_arn, userId="user-1")
        assert len(proxy.seen) == 1  # the group's state, once: no tracker, so no user reads
    finally:
        proxy.stop()


def test_batch_inference_uses_the_same_vectors_as_real_time(
    clients: tuple[Any, Any, Any], s3: Any, serving_bucket: str, events_table: str
) -> None:
    events, _, personalize = clients
    tracked = publish_tracked(s3, serving_bucket, personalize, fold_in=STRONG)
    # Given users with events (known and unknown), a linked session, and users without any
    events.put_events(trackingId=tracked.tracking_id, sessionId="b-s1", eventList=[event(2), event(4)])
    events.put_events(trackingId=tracked.tracking_id, sessionId="b-s2", userId="user-6", eventList=[event(6)])
    events.put_events(trackingId=tracked.tracking_id, sessionId="b-s2", eventList=[event(8)])
    users = ["b-s1", "user-6", "b-s2", "user-9", "stranger"]
    store, live = _containers(serving_bucket, events_table)[0]
    _, model = store.campaign(tracked.campaign_arn)
    # When a batch job answers them (its worker reads the events in batches)
    lines = [Line(given={"userId": u}, user_id=u, scored=True) for u in users]
    answer_lines(model, lines, 10, None, live.read_many(model, users))
    # Then each line is what GetRecommendations answers the same user, to the score
    for line, user in zip(lines, users, strict=True):
        request = RecommendationsRequest.parse(
            {"campaignArn": tracked.campaign_arn, "userId": user, "numResults": 10}
        )
        real_time = operations.get_recommendations(request, store, live=live).items
        assert line.output is not None
        assert line.output["recommendedItems"] == [item["itemId"] for item in real_time], user
        np.testing.assert_allclose(line.output["scores"], [item["score"] for item in real_time], rtol=1e-9)
    ranking = RankingRequest.parse(
        {"campaignArn": tracked.ranking_arn, "userId": "b-s1", "inputList": ["item-1", "item-2"]}
    )
    assert operations.get_personalized_ranking(ranking, store, live=live).items[0]["itemId"] == "item-2"


def test_unknown_users_without_events_still_get_the_cold_vector(
    clients: tuple[Any, Any, Any], s3: Any, serving_bucket: str
) -> None:
    _, runtime, personalize = clients
    tracked = publish_tracked(s3, serving_bucket, personalize)
    untracked = publish_tracked(s3, serving_bucket, None)
    # The same model, one group tracked and one not: an unknown user without events is scored alike
    answers = [
        runtime.get_recommendations(campaignArn=t.campaign_arn, userId="someone", numResults=10)["itemList"]
        for t in (tracked, untracked)
    ]
    assert answers[0] == answers[1]
