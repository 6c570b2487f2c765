"""Events against `make run` (the local runtime as a process, its demo trained with an event
tracker): unchanged boto3 clients, anonymous sessions personalised from the demo's taste clusters,
known users moved by their events, and an event visible on the very next request."""

from __future__ import annotations

import csv
import time
import uuid
from collections import Counter
from typing import Any

from lambda_personalize.local_process import LocalStack
from tests.utils import ACCOUNT, REGION

DEMO_GROUP = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset-group/demo"
FOR_YOU = f"arn:aws:personalize:{REGION}:{ACCOUNT}:campaign/demo-user-personalization"
POPULAR = f"arn:aws:personalize:{REGION}:{ACCOUNT}:campaign/demo-popular-items"


def tracking_id(stack: LocalStack) -> str:
    personalize = stack.client("personalize")
    (tracker,) = personalize.list_event_trackers(datasetGroupArn=DEMO_GROUP)["eventTrackers"]
    described = personalize.describe_event_tracker(eventTrackerArn=tracker["eventTrackerArn"])["eventTracker"]
    assert described["status"] == "ACTIVE"
    return str(described["trackingId"])


def genres(stack: LocalStack) -> dict[str, set[str]]:
    with (stack.data_dir / "items.csv").open(newline="") as f:
        return {row["ITEM_ID"]: set(row["GENRES"].split("|")) for row in csv.DictReader(f)}


def test_a_new_session_in_one_taste_cluster_gets_that_cluster(local_stack: LocalStack) -> None:
    events, runtime = local_stack.client("personalize-events"), local_stack.client("personalize-runtime")
    of = genres(local_stack)
    popular = [
        i["itemId"] for i in runtime.get_recommendations(campaignArn=POPULAR, numResults=25)["itemList"]
    ]
    # Given a genre the popular items seldom have, and ten items of that genre alone
    single = Counter(next(iter(g)) for g in of.values() if len(g) == 1)
    share_in_popular = {genre: sum(genre in of[i] for i in popular) / len(popular) for genre in single}
    genre = max((g for g in single if share_in_popular[g] <= 0.2), key=lambda g: single[g])
    picked = [item for item, g in of.items() if g == {genre}][:10]
    # When a new visitor interacts with them, anonymously
    session = f"visitor-{uuid.uuid4().hex[:8]}"
    events.put_events(
        trackingId=tracking_id(local_stack),
        sessionId=session,
        eventList=[
            {"eventId": f"{session}-{n}", "eventType": "watch", "itemId": item, "sentAt": time.time()}
            for n, item in enumerate(picked)
        ],
    )
    # Then their recommendations (the sessionId as userId) come from that cluster, scored
    answer = runtime.get_recommendations(campaignArn=FOR_YOU, userId=session, numResults=25)["itemList"]
    share = sum(genre in of[item["itemId"]] for item in answer) / len(answer)
    assert share >= 0.6, (genre, share, share_in_popular[genre])
    assert share >= 3 * max(share_in_popular[genre], 0.04)
    assert all(0 < item["score"] < 1 for item in answer)


def test_a_known_users_recommendations_change_after_events(local_stack: LocalStack) -> None:
    events, runtime = local_stack.client("personalize-events"), local_stack.client("personalize-runtime")
    of = genres(local_stack)
    before = runtime.get_recommendations(campaignArn=FOR_YOU, userId="user-7", numResults=50)["itemList"]
    shown = {g for item in before[:10] for g in of[item["itemId"]]}
    # When user-7 watches eight items of a genre none of their first ten recommendations has
    single = Counter(next(iter(g)) for g in of.values() if len(g) == 1)
    genre = next(g for g, _ in single.most_common() if g not in shown)
    picked = [item for item, g in of.items() if g == {genre}][:8]
    events.put_events(
        trackingId=tracking_id(local_stack),
        sessionId=f"s-{uuid.uuid4().hex[:8]}",
        userId="user-7",
        eventList=[{"eventType": "watch", "itemId": item, "sentAt": time.time()} for item in picked],
    )
    # Then the very next answer differs, and leans to that genre (their trained taste still counts)
    after = runtime.get_recommendations(campaignArn=FOR_YOU, userId="user-7", numResults=50)["itemList"]
    assert [i["itemId"] for i in after] != [i["itemId"] for i in before]

    def of_genre(items: list[dict[str, Any]]) -> int:
        return sum(genre in of[i["itemId"]] for i in items)

    assert of_genre(after) >= of_genre(before) + 5, (genre, of_genre(before), of_genre(after))


def test_cli_put_events_and_describe_through_make_run(local_stack: LocalStack) -> None:
    personalize: Any = local_stack.client("personalize")
    listed = personalize.list_event_trackers()["eventTrackers"]
    assert any(t["name"] == "demo-events" for t in listed)
    # (the AWS CLI's put-events is among the commands `make run` prints, which
    # test_drop_in_clients.py::test_the_printed_commands_work_as_printed runs)
    assert any("personalize-events put-events" in c for c in local_stack.printed_commands)
