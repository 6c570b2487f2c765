"""Every limit of the runtime requests is enforced with a message that names the field."""

from __future__ import annotations

from typing import Any

import pytest

from personalize_core.edge.requests import RankingRequest, RecommendationsRequest
from personalize_core.errors import InvalidInputException

ARN = "arn:aws:personalize:us-east-1:123456789012:campaign/movies"


def recs(**fields: Any) -> dict[str, Any]:
    return {"campaignArn": ARN, "userId": "u1", **fields}


def test_defaults() -> None:
    request = RecommendationsRequest.parse(recs())
    assert request.num_results == 25
    assert request.campaign_arn == ARN
    assert request.promotions == ()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "request body"),
        ("x", "request body"),
        (recs(numResults=501), "numResults"),
        (recs(numResults=-1), "numResults"),
        (recs(numResults="5"), "numResults"),
        (recs(numResults=True), "numResults"),
        (recs(numResults=2.5), "numResults"),
        (recs(numResults=51, metadataColumns={"ITEMS": ["TITLE"]}), "numResults"),
        (recs(userId="u" * 257), "userId"),
        (recs(userId=""), "userId"),
        (recs(userId=5), "userId"),
        (recs(itemId="i" * 257), "itemId"),
        ({"userId": "u1"}, "campaignArn"),
        (recs(recommenderArn=ARN), "recommenderArn"),
        (recs(campaignArn="campaign/movies"), "campaignArn"),
        (recs(campaignArn=ARN + "x" * 256), "campaignArn"),
        (recs(context={"k": "v" * 1001}), "context"),
        (recs(context={"bad key": "v"}), "context"),
        (recs(context={f"k{i}": "v" for i in range(151)}), "context"),
        (recs(context={"k": 1}), "context"),
        (recs(filterValues={f"K{i}": '"a"' for i in range(26)}), "filterValues"),
        (recs(filterValues={"K": "v" * 1001}), "filterValues"),
        (recs(filterValues={"bad-key": "v"}), "filterValues"),
        (recs(filterArn="nope"), "filterArn"),
        (recs(promotions=[{"name": "p", "percentPromotedItems": 10, "filterArn": ARN}] * 2), "promotions"),
        (
            recs(promotions=[{"name": "-p", "percentPromotedItems": 10, "filterArn": ARN}]),
            "promotions[0].name",
        ),
        (
            recs(promotions=[{"name": "p", "percentPromotedItems": 101, "filterArn": ARN}]),
            "promotions[0].percentPromotedItems",
        ),
        (
            recs(promotions=[{"name": "p", "percentPromotedItems": 0, "filterArn": ARN}]),
            "promotions[0].percentPromotedItems",
        ),
        (recs(promotions=[{"name": "p", "percentPromotedItems": 10}]), "promotions[0].filterArn"),
        (
            recs(promotions=[{"name": "p", "percentPromotedItems": 10, "filterArn": ARN, "x": 1}]),
            "promotions[0].x",
        ),
        (recs(metadataColumns={"USERS": ["A"]}), "metadataColumns"),
        (recs(metadataColumns={"ITEMS": [f"C{i}" for i in range(11)]}), "metadataColumns.ITEMS"),
        (recs(metadataColumns={"ITEMS": ["C" * 151]}), "metadataColumns.ITEMS"),
        (recs(surprise=1), "surprise"),
    ],
)
def test_recommendations_limits(body: Any, field: str) -> None:
    with pytest.raises(InvalidInputException) as caught:
        RecommendationsRequest.parse(body)
    assert field in caught.value.message


def test_limits_accept_their_maximum() -> None:
    request = RecommendationsRequest.parse(
        recs(
            numResults=500,
            userId="u" * 256,
            context={f"k{i}": "v" * 1000 for i in range(150)},
            filterValues={f"K{i}": "v" * 1000 for i in range(25)},
        )
    )
    assert request.num_results == 500
    assert len(request.options.context) == 150


def ranking(**fields: Any) -> dict[str, Any]:
    return {"campaignArn": ARN, "userId": "u1", "inputList": ["a", "b"], **fields}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"campaignArn": ARN, "userId": "u1"}, "inputList"),
        ({"campaignArn": ARN, "inputList": ["a"]}, "userId"),
        ({"userId": "u", "inputList": ["a"]}, "campaignArn"),
        (ranking(inputList=[]), "inputList"),
        (ranking(inputList=["a"] * 501), "inputList"),
        (ranking(inputList=["a"] * 51, metadataColumns={"ITEMS": ["TITLE"]}), "inputList"),
        (ranking(inputList=["a", 3]), "inputList[1]"),
        (ranking(inputList=["x" * 257]), "inputList[0]"),
        (ranking(inputList="a,b"), "inputList"),
        (ranking(numResults=5), "numResults"),
        (ranking(promotions=[]), "promotions"),
    ],
)
def test_ranking_limits(body: Any, field: str) -> None:
    with pytest.raises(InvalidInputException) as caught:
        RankingRequest.parse(body)
    assert field in caught.value.message


def test_ranking_accepts_500_items() -> None:
    assert len(RankingRequest.parse(ranking(inputList=[f"i{i}" for i in range(500)])).input_list) == 500
