"""Every events/ file through its handler, as `sam local invoke <Function> -e events/<file>` would."""

from __future__ import annotations

import json

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


def test_every_event_file_is_covered() -> None:
    assert {p.name for p in EVENTS.glob("get_*.json")} == set(EXPECTED)


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
