"""The events API (personalize-events) and event trackers, through unchanged boto3 clients on real
HTTP, with the events table and the Firehose stream in the embedded AWS."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from personalize_core.events.items import entity_key
from tests.conftest import events_clients
from tests.events_helpers import Tracked, event, publish_tracked, recorded_rows
from tests.faults import FaultProxy, dynamodb_error
from tests.utils import ACCOUNT, REGION, clear_process_caches


@pytest.fixture
def clients(events_api: str) -> tuple[Any, Any, Any]:
    return events_clients(events_api)


@pytest.fixture
def tracked(s3: Any, serving_bucket: str, clients: tuple[Any, Any, Any]) -> Tracked:
    return publish_tracked(s3, serving_bucket, clients[2])


def post(url: str, path: str, body: Any) -> tuple[int, str, dict[str, Any]]:
    """A raw POST (what a client that skips botocore's checks sends): status, error type, body."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, response.getheader("x-amzn-ErrorType") or "", json.loads(data) if data else {}


def stored(moto_url: str, table: str, group_arn: str, entity: str) -> dict[str, Any]:
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_url, region_name=REGION)
    key = entity_key(group_arn.rsplit("/", 1)[1], entity)
    item: dict[str, Any] = dynamodb.get_item(TableName=table, Key={"pk": {"S": key}}).get("Item", {})
    return item


def event_ids(item: dict[str, Any]) -> set[str]:
    return {name[2:] for name in item if name.startswith("e:")}


def test_put_events_from_an_unchanged_client_is_recorded_and_sent_to_s3(
    clients: tuple[Any, Any, Any], tracked: Tracked, s3: Any, serving_bucket: str
) -> None:
    events, runtime, _ = clients
    # Given an anonymous session's events, with everything an event may carry
    events.put_events(
        trackingId=tracked.tracking_id,
        sessionId="session-a",
        eventList=[
            event(4, eventId="a-1", eventValue=4.5, properties='{"numberOfRatings": "12"}'),
            event(6, "click", eventId="a-2", impression=["item-6", "item-8"], recommendationId="RID-x"),
            event(8, eventId="a-3", metricAttribution={"eventAttributionSource": "email campaign"}),
        ],
    )
    # Then GetRecommendations for the session (its sessionId as the userId) is personalised: the
    # answer differs from an unknown user's and comes with scores
    mine = runtime.get_recommendations(campaignArn=tracked.campaign_arn, userId="session-a", numResults=10)
    nobody = runtime.get_recommendations(campaignArn=tracked.campaign_arn, userId="nobody", numResults=10)
    assert [i["itemId"] for i in mine["itemList"]] != [i["itemId"] for i in nobody["itemList"]]
    assert all(0 < item["score"] < 1 for item in mine["itemList"])
    # And every event is a line of Personalize's Interactions format in S3
    rows = {row.event_id: row for row in recorded_rows(s3, serving_bucket, tracked.group_arn)}
    assert set(rows) == {"a-1", "a-2", "a-3"}
    assert (rows["a-1"].user_id, rows["a-1"].session_id, rows["a-1"].item_id) == ("session-a",) * 2 + (
        "item-4",
    )
    assert (rows["a-1"].event_type, rows["a-1"].event_value) == ("watch", "4.5")
    assert json.loads(rows["a-1"].properties) == {"numberOfRatings": "12"}
    assert (rows["a-2"].impression, rows["a-2"].recommendation_id) == ("item-6|item-8", "RID-x")
    assert rows["a-3"].attribution_source == "email campaign"
    assert abs(rows["a-3"].timestamp - time.time()) < 60


def _bodies(tracking: str) -> list[tuple[str, dict[str, Any]]]:
    good = {"eventType": "watch", "itemId": "item-1", "sentAt": 1700000000}

    def one(**changes: Any) -> dict[str, Any]:
        entry = {**good, **changes}
        return {
            "trackingId": tracking,
            "sessionId": "s-bad",
            "eventList": [{k: v for k, v in entry.items() if v is not None}],
        }

    return [
        ("no trackingId", {"sessionId": "s-bad", "eventList": [good]}),
        ("empty trackingId", {"trackingId": "", "sessionId": "s-bad", "eventList": [good]}),
        ("long trackingId", {"trackingId": "t" * 257, "sessionId": "s-bad", "eventList": [good]}),
        ("no sessionId", {"trackingId": tracking, "eventList": [good]}),
        ("long sessionId", {"trackingId": tracking, "sessionId": "s" * 257, "eventList": [good]}),
        ("empty userId", {"trackingId": tracking, "sessionId": "s-bad", "userId": "", "eventList": [good]}),
        (
            "long userId",
            {"trackingId": tracking, "sessionId": "s-bad", "userId": "u" * 257, "eventList": [good]},
        ),
        ("no eventList", {"trackingId": tracking, "sessionId": "s-bad"}),
        ("empty eventList", {"trackingId": tracking, "sessionId": "s-bad", "eventList": []}),
        ("11 events", {"trackingId": tracking, "sessionId": "s-bad", "eventList": [good] * 11}),
        ("eventList not a list", {"trackingId": tracking, "sessionId": "s-bad", "eventList": good}),
        ("unknown field", {"trackingId": tracking, "sessionId": "s-bad", "eventList": [good], "extra": 1}),
        ("no eventType", one(eventType=None)),
        ("long eventType", one(eventType="t" * 257)),
        ("no sentAt", one(sentAt=None)),
        ("sentAt a string", one(sentAt="yesterday")),
        ("sentAt a boolean", one(sentAt=True)),
        ("negative sentAt", one(sentAt=-1)),
        ("empty eventId", one(eventId="")),
        ("long eventId", one(eventId="e" * 257)),
        ("eventValue a string", one(eventValue="4")),
        ("long itemId", one(itemId="i" * 257)),
        ("properties not JSON", one(properties="{not json")),
        ("properties a JSON list", one(properties="[1, 2]")),
        ("properties nested", one(properties='{"a": {"b": 1}}')),
        ("properties too long", one(properties=json.dumps({"k": "v" * 1100}))),
        ("properties empty", one(properties="")),
        ("reserved key userId", one(properties='{"userId": "u"}')),
        ("reserved key in another case", one(properties='{"IMPRESSION": "x"}')),
        ("reserved key timestamp", one(properties='{"timestamp": "1"}')),
        ("long recommendationId", one(recommendationId="R" * 41)),
        ("empty impression", one(impression=[])),
        ("26 impressions", one(impression=["item-1"] * 26)),
        ("impression not strings", one(impression=[1, 2])),
        ("metricAttribution without source", one(metricAttribution={})),
        ("attribution source blank", one(metricAttribution={"eventAttributionSource": "   "})),
        ("attribution source too long", one(metricAttribution={"eventAttributionSource": "a" * 1025})),
        ("event not an object", {"trackingId": tracking, "sessionId": "s-bad", "eventList": ["watch"]}),
    ]


def test_every_limit_of_the_events_model_is_an_invalid_input_and_stores_nothing(
    events_api: str, tracked: Tracked, s3: Any, serving_bucket: str, events_table: str, moto_url: str
) -> None:
    for case, body in _bodies(tracked.tracking_id):
        # When a request breaks one limit of botocore's model
        status, kind, answer = post(events_api, "/events", body)
        # Then it is a 400 InvalidInputException whose message says what is wrong
        assert (status, kind) == (400, "InvalidInputException"), (case, answer)
        assert answer["message"], case
    # And not the JSON body itself
    assert post(events_api, "/events", b"{nope")[:2] == (400, "InvalidInputException")
    # And nothing of any of them was stored or sent on
    assert stored(moto_url, events_table, tracked.group_arn, "s-bad") == {}
    assert recorded_rows(s3, serving_bucket, tracked.group_arn) == []


def test_botocore_raises_its_own_exception_classes(events_api: str, tracked: Tracked) -> None:
    events = boto3.client(
        "personalize-events",
        endpoint_url=events_api,
        region_name=REGION,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    good = event(1)
    with pytest.raises(events.exceptions.InvalidInputException, match="eventList"):
        events.put_events(trackingId=tracked.tracking_id, sessionId="s", eventList=[good] * 11)
    with pytest.raises(events.exceptions.InvalidInputException, match=r"properties is not valid JSON"):
        events.put_events(
            trackingId=tracked.tracking_id, sessionId="s", eventList=[{**good, "properties": "{x"}]
        )
    with pytest.raises(events.exceptions.ResourceNotFoundException, match="trackingId"):
        events.put_events(trackingId=str(uuid.uuid4()), sessionId="s", eventList=[good])
    dataset = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset/nowhere/ITEMS"
    with pytest.raises(events.exceptions.ResourceNotFoundException, match="nowhere"):
        events.put_items(datasetArn=dataset, items=[{"itemId": "item-1"}])
    with pytest.raises(events.exceptions.InvalidInputException, match="items"):
        events.put_items(datasetArn=dataset, items=[{"itemId": "item-1"}] * 11)


def test_a_duplicate_event_id_counts_once(
    clients: tuple[Any, Any, Any],
    s3: Any,
    serving_bucket: str,
    events_table: str,
    moto_url: str,
) -> None:
    events, runtime, personalize = clients
    twice, once = (
        publish_tracked(s3, serving_bucket, personalize),
        publish_tracked(s3, serving_bucket, personalize),
    )
    # Given the same event sent twice in one call and once more in another, to one group, and once
    # to another group with the same model
    repeated = event(2, eventId="dup-1")
    events.put_events(trackingId=twice.tracking_id, sessionId="s-1", eventList=[repeated, repeated])
    events.put_events(
        trackingId=twice.tracking_id, sessionId="s-1", eventList=[repeated, event(4, eventId="x")]
    )
    events.put_events(
        trackingId=once.tracking_id, sessionId="s-1", eventList=[repeated, event(4, eventId="x")]
    )
    # Then the session holds it once
    assert event_ids(stored(moto_url, events_table, twice.group_arn, "s-1")) == {"dup-1", "x"}
    # And it weighs as one event: both sessions get the same scores
    first = runtime.get_recommendations(campaignArn=twice.campaign_arn, userId="s-1")["itemList"]
    second = runtime.get_recommendations(campaignArn=once.campaign_arn, userId="s-1")["itemList"]
    assert [(i["itemId"], round(i["score"], 12)) for i in first] == [
        (i["itemId"], round(i["score"], 12)) for i in second
    ]


def test_a_session_linked_to_a_user_carries_its_history(
    clients: tuple[Any, Any, Any], tracked: Tracked, events_table: str, moto_url: str
) -> None:
    events, runtime, personalize = clients
    exclude = personalize.create_filter(
        name=f"seen-{uuid.uuid4().hex[:8]}",
        datasetGroupArn=tracked.group_arn,
        filterExpression='EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("watch")',
    )["filterArn"]
    # Given a visitor's anonymous events, then an event once they log in as user-3
    events.put_events(
        trackingId=tracked.tracking_id, sessionId="visit-9", eventList=[event(10, eventId="v1")]
    )
    events.put_events(
        trackingId=tracked.tracking_id,
        sessionId="visit-9",
        userId="user-3",
        eventList=[event(12, eventId="v2")],
    )
    # Then user-3 holds both, and the session is linked to them
    assert event_ids(stored(moto_url, events_table, tracked.group_arn, "user-3")) == {"v1", "v2"}
    assert stored(moto_url, events_table, tracked.group_arn, "visit-9")["link"] == {"S": "user-3"}
    # And an anonymous event of the linked session is the user's too
    events.put_events(
        trackingId=tracked.tracking_id, sessionId="visit-9", eventList=[event(14, eventId="v3")]
    )
    assert event_ids(stored(moto_url, events_table, tracked.group_arn, "user-3")) == {"v1", "v2", "v3"}
    # And filters read the whole history, for the user and for the session
    for who in ("user-3", "visit-9"):
        answer = runtime.get_recommendations(
            campaignArn=tracked.campaign_arn, userId=who, numResults=100, filterArn=exclude
        )
        shown = {item["itemId"] for item in answer["itemList"]}
        assert {"item-10", "item-12", "item-14"}.isdisjoint(shown), who
        assert len(shown) == 97


def test_a_recommendation_id_becomes_implicit_impressions(
    clients: tuple[Any, Any, Any], tracked: Tracked, s3: Any, serving_bucket: str
) -> None:
    events, runtime, _ = clients
    # Given an answer for a session
    answer = runtime.get_recommendations(campaignArn=tracked.campaign_arn, userId="user-5", numResults=4)
    shown = [item["itemId"] for item in answer["itemList"]]
    # When the user clicks one of its items, naming the recommendation but no impression
    clicked = event(shown[1], "click", eventId="c-1", recommendationId=answer["recommendationId"])
    explicit = event(
        shown[0], "click", eventId="c-2", recommendationId=answer["recommendationId"], impression=["item-1"]
    )
    events.put_events(
        trackingId=tracked.tracking_id, sessionId="s-5", userId="user-5", eventList=[clicked, explicit]
    )
    # Then the recorded event's impression is what the recommendation showed (an explicit one wins)
    rows = {row.event_id: row for row in recorded_rows(s3, serving_bucket, tracked.group_arn)}
    assert rows["c-1"].impression.split("|") == shown
    assert rows["c-1"].recommendation_id == answer["recommendationId"]
    assert rows["c-2"].impression == "item-1"


def test_event_trackers_in_the_control_plane(
    clients: tuple[Any, Any, Any], s3: Any, serving_bucket: str
) -> None:
    events, _, personalize = clients
    tracked = publish_tracked(s3, serving_bucket, None)
    # Given a tracker on a CLI-published solution's dataset group
    created = personalize.create_event_tracker(name=tracked.solution, datasetGroupArn=tracked.group_arn)
    described = personalize.describe_event_tracker(eventTrackerArn=created["eventTrackerArn"])["eventTracker"]
    assert described["trackingId"] == created["trackingId"]
    assert (described["status"], described["datasetGroupArn"], described["accountId"]) == (
        "ACTIVE",
        tracked.group_arn,
        ACCOUNT,
    )
    # Then it is listed (boto3's paginator walks the pages), by group too
    listed = [
        t["eventTrackerArn"]
        for page in personalize.get_paginator("list_event_trackers").paginate(
            PaginationConfig={"PageSize": 1}
        )
        for t in page["eventTrackers"]
    ]
    assert created["eventTrackerArn"] in listed
    mine = personalize.list_event_trackers(datasetGroupArn=tracked.group_arn)["eventTrackers"]
    assert [t["name"] for t in mine] == [tracked.solution]
    # And a group has one tracker; a name is taken once; an unknown group is not found
    with pytest.raises(personalize.exceptions.ResourceAlreadyExistsException, match="already has"):
        personalize.create_event_tracker(name="another", datasetGroupArn=tracked.group_arn)
    other = publish_tracked(s3, serving_bucket, None)
    with pytest.raises(personalize.exceptions.ResourceAlreadyExistsException, match="already exists"):
        personalize.create_event_tracker(name=tracked.solution, datasetGroupArn=other.group_arn)
    missing = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset-group/no-such-group"
    with pytest.raises(personalize.exceptions.ResourceNotFoundException):
        personalize.create_event_tracker(name="t-missing", datasetGroupArn=missing)
    # When it is deleted, Then its trackingId is unknown (to a fresh events function) and the group
    # takes a new tracker
    personalize.delete_event_tracker(eventTrackerArn=created["eventTrackerArn"])
    with pytest.raises(personalize.exceptions.ResourceNotFoundException):
        personalize.describe_event_tracker(eventTrackerArn=created["eventTrackerArn"])
    clear_process_caches()
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.put_events(trackingId=created["trackingId"], sessionId="s", eventList=[event(1)])
    personalize.create_event_tracker(name=f"{tracked.solution}-2", datasetGroupArn=tracked.group_arn)


def test_a_real_dataset_group_keeps_its_tracker_until_it_is_deleted(clients: tuple[Any, Any, Any]) -> None:
    _, _, personalize = clients
    group = personalize.create_dataset_group(name=f"g-{uuid.uuid4().hex[:8]}")["datasetGroupArn"]
    tracker = personalize.create_event_tracker(name=f"t-{uuid.uuid4().hex[:8]}", datasetGroupArn=group)
    with pytest.raises(personalize.exceptions.ResourceInUseException, match="event-tracker"):
        personalize.delete_dataset_group(datasetGroupArn=group)
    personalize.delete_event_tracker(eventTrackerArn=tracker["eventTrackerArn"])
    personalize.delete_dataset_group(datasetGroupArn=group)


def test_a_new_tracker_is_pending_until_every_container_can_see_it(
    events_api: str, s3: Any, serving_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given serving containers that trust what they read of a group for 0.4 s
    monkeypatch.setenv("EVENT_GROUP_TTL_SECONDS", "0.4")
    clear_process_caches()
    events, _, personalize = events_clients(events_api)
    tracked = publish_tracked(s3, serving_bucket, personalize)
    # Then the tracker is CREATE PENDING and refuses events until 0.8 s (TTL + margin) have passed
    status = personalize.describe_event_tracker(eventTrackerArn=tracked.tracker_arn)["eventTracker"]["status"]
    assert status == "CREATE PENDING"
    with pytest.raises(events.exceptions.InvalidInputException, match="not ACTIVE yet"):
        events.put_events(trackingId=tracked.tracking_id, sessionId="s", eventList=[event(1)])
    time.sleep(0.9)
    assert personalize.describe_event_tracker(eventTrackerArn=tracked.tracker_arn)["eventTracker"][
        "status"
    ] == ("ACTIVE")
    events.put_events(trackingId=tracked.tracking_id, sessionId="s", eventList=[event(1)])


@pytest.fixture
def dynamodb_faults(events_api: str, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """DynamoDB behind a fault-injecting proxy (everything else as before)."""
    proxy = FaultProxy(moto_url).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
    monkeypatch.setenv("EVENTS_MAX_ATTEMPTS", "2")
    clear_process_caches()
    yield proxy
    proxy.stop()


def test_throttling_or_failure_is_a_retryable_error_and_nothing_is_half_written(
    events_api: str,
    tracked: Tracked,
    dynamodb_faults: FaultProxy,
    events_table: str,
    moto_url: str,
) -> None:
    events, runtime, _ = events_clients(events_api)
    batch = [event(i, eventId=f"t-{i}") for i in range(5)]
    # Given DynamoDB throttling every write, for longer than the function retries (2 attempts)
    throttling = dynamodb_faults.add(
        dynamodb_error("ProvisionedThroughputExceededException", "UpdateItem", 99)
    )
    # Then PutEvents says so with botocore's retryable throttling code
    with pytest.raises(events.exceptions.ClientError) as refused:
        events.put_events(trackingId=tracked.tracking_id, sessionId="s-t", userId="user-7", eventList=batch)
    assert refused.value.response["Error"]["Code"] == "ThrottlingException"
    assert throttling.hits >= 2
    throttling.times = 0
    # And the user's item holds none of the events (each item is all of a call's events or none)
    assert stored(moto_url, events_table, tracked.group_arn, "user-7") == {}
    # Given DynamoDB failing (500), Then a 503 ServiceUnavailableException, which botocore retries
    failing = dynamodb_faults.add(dynamodb_error("InternalServerError", "UpdateItem", 99, status=500))
    with pytest.raises(events.exceptions.ClientError) as failed:
        events.put_events(trackingId=tracked.tracking_id, sessionId="s-t", userId="user-7", eventList=batch)
    assert (
        failed.value.response["Error"]["Code"],
        failed.value.response["ResponseMetadata"]["HTTPStatusCode"],
    ) == (
        "ServiceUnavailableException",
        503,
    )
    failing.times = 0
    assert stored(moto_url, events_table, tracked.group_arn, "user-7") == {}
    # When the client retries after the store recovers, Then every event is there once
    events.put_events(trackingId=tracked.tracking_id, sessionId="s-t", userId="user-7", eventList=batch)
    assert event_ids(stored(moto_url, events_table, tracked.group_arn, "user-7")) == {
        f"t-{i}" for i in range(5)
    }
    # And a throttled read while serving is the same retryable error, not a stale answer
    reads = dynamodb_faults.add(dynamodb_error("ThrottlingException", "(GetItem|BatchGetItem)", 99))
    with pytest.raises(runtime.exceptions.ClientError) as throttled:
        runtime.get_recommendations(campaignArn=tracked.campaign_arn, userId="user-7")
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    reads.times = 0
    assert runtime.get_recommendations(campaignArn=tracked.campaign_arn, userId="user-7")["itemList"]


def test_the_events_api_is_authorised_by_the_callers_policies(
    clients: tuple[Any, Any, Any], tracked: Tracked, moto_url: str, events_api: str
) -> None:
    # Given an IAM user of the embedded IAM allowed to put events, and items of one dataset only
    iam = boto3.client("iam", endpoint_url=moto_url, region_name=REGION)
    user = f"sender-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    allowed = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset/{tracked.solution}/ITEMS"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "personalize:PutEvents", "Resource": "*"},
            {"Effect": "Allow", "Action": "personalize:PutItems", "Resource": allowed},
        ],
    }
    iam.put_user_policy(UserName=user, PolicyName="events", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    events = boto3.client(
        "personalize-events",
        endpoint_url=events_api,
        region_name=REGION,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=Config(retries={"max_attempts": 1}),
    )
    # Then what the policy allows is done, and the rest is Personalize's AccessDeniedException
    events.put_events(trackingId=tracked.tracking_id, sessionId="signed", eventList=[event(3)])
    events.put_items(datasetArn=allowed, items=[{"itemId": "item-3", "properties": '{"genre": "drama"}'}])
    users = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset/{tracked.solution}/USERS"
    with pytest.raises(events.exceptions.ClientError) as refused:
        events.put_users(datasetArn=users, users=[{"userId": "user-1"}])
    error = refused.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert f"personalize:PutUsers on resource: {users}" in error["Message"]
