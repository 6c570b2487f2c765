"""Every events/ file through its handler, as `sam local invoke <Function> -e events/<file>` would."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from tests.utils import EVENTS, invoke, load_event, response_headers

#: event file -> (function folder, status, error type or None)
EXPECTED = {
    "get_recommendations_user.json": ("get_recommendations", 200, None),
    "get_recommendations_cold_start_user.json": ("get_recommendations", 200, None),
    "get_recommendations_related_items.json": ("get_recommendations", 200, None),
    "get_recommendations_popular_items.json": ("get_recommendations", 200, None),
    "get_recommendations_bad_request.json": ("get_recommendations", 400, "InvalidInputException"),
    "get_recommendations_unknown_campaign.json": ("get_recommendations", 404, "ResourceNotFoundException"),
    "get_personalized_ranking.json": ("get_personalized_ranking", 200, None),
    "get_personalized_ranking_bad_request.json": ("get_personalized_ranking", 400, "InvalidInputException"),
}


#: events/put_*.json: PutEvents / PutItems through the events function -> (status, error type or None)
EVENTS_EXPECTED = {
    "put_events.json": (200, None),
    "put_events_bad_request.json": (400, "InvalidInputException"),
    "put_items.json": (200, None),
}


def test_every_event_file_is_covered() -> None:
    assert {p.name for p in EVENTS.glob("get_*.json")} == set(EXPECTED)
    assert {p.name for p in EVENTS.glob("put_*.json")} == set(EVENTS_EXPECTED)


@pytest.mark.usefixtures("serving_env")
@pytest.mark.parametrize("event_file", sorted(EXPECTED))
def test_event_through_handler(event_file: str) -> None:
    # Given a sample API Gateway event and the demo campaigns it names, published in (moto) S3
    function, status, error_type = EXPECTED[event_file]
    event = load_event(event_file)
    # When the handler is invoked with it
    result = invoke(function, event)
    # Then the proxy result has Personalize's status, headers and body shape
    assert result["statusCode"] == status, result["body"]
    headers = response_headers(result)
    assert headers["Content-Type"] == "application/json"
    assert headers["x-amzn-RequestId"] == event["requestContext"]["requestId"]
    body = json.loads(result["body"])
    if error_type:
        assert headers["x-amzn-ErrorType"] == error_type
        assert set(body) == {"message"}
        assert body["message"]
        return
    items = body["itemList" if function == "get_recommendations" else "personalizedRanking"]
    assert body["recommendationId"] == f"RID-{event['requestContext']['requestId']}"
    request = json.loads(event["body"])
    if "numResults" in request:
        assert len(items) == request["numResults"]
    assert all(isinstance(item["itemId"], str) for item in items)


@pytest.mark.usefixtures("serving_env")
def test_user_event_answers_with_scores_and_related_without() -> None:
    user = json.loads(invoke("get_recommendations", load_event("get_recommendations_user.json"))["body"])
    related = json.loads(
        invoke("get_recommendations", load_event("get_recommendations_related_items.json"))["body"]
    )
    assert all(0 < item["score"] < 1 for item in user["itemList"])
    assert all("score" not in item for item in related["itemList"])
    assert "item-5" not in [item["itemId"] for item in related["itemList"]]


@pytest.mark.usefixtures("events_env")
def test_the_events_samples_through_the_events_function(personalize: Any) -> None:
    # Given make run's demo dataset group, its Items dataset and its event tracker (same name, same
    # group: the same trackingId the samples carry)
    with contextlib.suppress(personalize.exceptions.ResourceAlreadyExistsException):
        group = personalize.create_dataset_group(name="demo")["datasetGroupArn"]
        fields = [
            {"name": "ITEM_ID", "type": "string"},
            {"name": "TITLE", "type": "string", "textual": True},
            {"name": "GENRES", "type": ["null", "string"], "categorical": True},
            {"name": "YEAR", "type": "int"},
            {"name": "PRICE", "type": "float"},
        ]
        schema = json.dumps({"type": "record", "name": "Items", "fields": fields, "version": "1.0"})
        schema_arn = personalize.create_schema(name="demo-items", schema=schema)["schemaArn"]
        personalize.create_dataset(
            name="demo-items", schemaArn=schema_arn, datasetGroupArn=group, datasetType="ITEMS"
        )
        personalize.create_event_tracker(name="demo-events", datasetGroupArn=group)
    for event_file, (status, error_type) in EVENTS_EXPECTED.items():
        event = load_event(event_file)
        # When the events function is invoked with each sample
        result = invoke("events", event)
        # Then PutEvents / PutItems answer 200 with an empty body, or Personalize's error
        assert result["statusCode"] == status, (event_file, result["body"])
        headers = response_headers(result)
        assert headers["x-amzn-RequestId"] == event["requestContext"]["requestId"]
        if error_type is None:
            assert result["body"] == ""
        else:
            assert headers["x-amzn-ErrorType"] == error_type
            assert "reserved key 'userId'" in json.loads(result["body"])["message"]
