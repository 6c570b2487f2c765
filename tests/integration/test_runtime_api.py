"""The runtime API through an unchanged boto3 personalize-runtime client: botocore parses every answer.

The handlers run behind real HTTP on loopback (local_api), with their models in moto's S3.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config

from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.writer import put_campaign, read_manifest
from tests.conftest import publish
from tests.utils import REGION, campaign_arn, random_model, softmax_reference

USER_CAMPAIGN = campaign_arn("demo-user-personalization")
RANKING_CAMPAIGN = campaign_arn("demo-personalized-ranking")
MODEL = random_model(num_items=300, num_users=50, dims=16, seed=7)  # what conftest publishes


def test_user_personalization_matches_the_formula(runtime: Any) -> None:
    # When boto3 asks for a known user's top 20
    response = runtime.get_recommendations(campaignArn=USER_CAMPAIGN, userId="user-3", numResults=20)
    # Then botocore parses the documented shape, and items and scores are the formula's
    items = response["itemList"]
    reference = softmax_reference(MODEL["item_factors"], MODEL["user_factors"][3])
    expected = np.argsort(-reference, kind="stable")[:20]
    assert [item["itemId"] for item in items] == [f"item-{i}" for i in expected]
    np.testing.assert_allclose([item["score"] for item in items], reference[expected], rtol=1e-6)
    assert response["recommendationId"].startswith("RID-")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ResponseMetadata"]["RequestId"]


def test_default_num_results_is_25(runtime: Any) -> None:
    assert len(runtime.get_recommendations(campaignArn=USER_CAMPAIGN, userId="user-1")["itemList"]) == 25


def test_an_unknown_user_is_scored_with_the_cold_user_vector(runtime: Any) -> None:
    # Given a user the model does not know
    items = runtime.get_recommendations(campaignArn=USER_CAMPAIGN, userId="nobody", numResults=5)["itemList"]
    # Then the answer is the formula's for the mean user vector: every item carries its score
    mean = MODEL["user_factors"].astype(np.float64).mean(axis=0)
    logits = MODEL["item_factors"].astype(np.float64) @ mean
    scores = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    best = np.lexsort((np.arange(len(logits)), -logits))[:5]
    assert [item["itemId"] for item in items] == [f"item-{i}" for i in best]
    np.testing.assert_allclose([float(item["score"]) for item in items], scores[best], rtol=1e-9)
    assert all("reason" not in item for item in items)


def test_related_items_and_popular_items(runtime: Any) -> None:
    related = runtime.get_recommendations(
        campaignArn=campaign_arn("demo-related-items"), itemId="item-5", numResults=10
    )["itemList"]
    factors = MODEL["item_factors"].astype(np.float64)
    cosine = factors @ factors[5] / (np.linalg.norm(factors, axis=1) * np.linalg.norm(factors[5]))
    cosine[5] = -np.inf
    assert [item["itemId"] for item in related] == [
        f"item-{i}" for i in np.argsort(-cosine, kind="stable")[:10]
    ]
    unknown = runtime.get_recommendations(
        campaignArn=campaign_arn("demo-related-items"), itemId="gone", numResults=3
    )["itemList"]
    popular = runtime.get_recommendations(campaignArn=campaign_arn("demo-popular-items"), numResults=3)[
        "itemList"
    ]
    # An unknown item gets the popular items, marked as Personalize marks placeholder popular items
    expected = [f"item-{i}" for i in np.argsort(-MODEL["popularity"], kind="stable")[:3]]
    assert popular == [{"itemId": i} for i in expected]
    assert unknown == [{"itemId": i, "reason": ["Popular item"]} for i in expected]


def test_personalized_ranking_scores_sum_to_one_and_unknown_items_go_last(runtime: Any) -> None:
    listed = ["item-10", "ghost", "item-42", "item-7", "item-10"]
    ranking = runtime.get_personalized_ranking(
        campaignArn=RANKING_CAMPAIGN, userId="user-3", inputList=listed
    )["personalizedRanking"]
    known = [10, 42, 7]
    reference = softmax_reference(MODEL["item_factors"][known], MODEL["user_factors"][3])
    order = np.argsort(-reference, kind="stable")
    assert [item["itemId"] for item in ranking] == [f"item-{known[i]}" for i in order] + ["ghost"]
    np.testing.assert_allclose([item["score"] for item in ranking[:3]], reference[order], rtol=1e-6)
    assert sum(item["score"] for item in ranking[:3]) == pytest.approx(1.0)
    assert ranking[3] == {"itemId": "ghost", "score": 0.0}  # the guide: an unknown item scores 0
    # And an unknown user's ranking is scored with the cold-user vector
    cold = runtime.get_personalized_ranking(
        campaignArn=RANKING_CAMPAIGN, userId="nobody", inputList=["item-7", "ghost", "item-42"]
    )["personalizedRanking"]
    mean = MODEL["user_factors"].astype(np.float64).mean(axis=0)
    pair = MODEL["item_factors"][[7, 42]].astype(np.float64) @ mean
    expected = np.exp(pair - pair.max()) / np.exp(pair - pair.max()).sum()
    first = int(np.argmax(pair))
    assert [item["itemId"] for item in cold] == [
        f"item-{[7, 42][first]}",
        f"item-{[7, 42][1 - first]}",
        "ghost",
    ]
    np.testing.assert_allclose(
        [cold[0]["score"], cold[1]["score"]], [expected[first], expected[1 - first]], rtol=1e-9
    )
    assert cold[2]["score"] == 0.0


@pytest.mark.parametrize(
    ("operation", "params", "exception", "message"),
    [
        (
            "get_recommendations",
            {"campaignArn": campaign_arn("nope"), "userId": "u"},
            "ResourceNotFoundException",
            "nope",
        ),
        (
            "get_recommendations",
            {"campaignArn": USER_CAMPAIGN, "userId": "u", "numResults": 501},
            "InvalidInputException",
            "numResults",
        ),
        (
            "get_recommendations",
            {"campaignArn": USER_CAMPAIGN, "numResults": -3},
            "InvalidInputException",
            "numResults",
        ),
        ("get_recommendations", {"campaignArn": USER_CAMPAIGN}, "InvalidInputException", "userId"),
        (
            "get_recommendations",
            {"campaignArn": campaign_arn("demo-related-items")},
            "InvalidInputException",
            "itemId",
        ),
        (
            "get_recommendations",
            {"campaignArn": RANKING_CAMPAIGN, "userId": "u"},
            "InvalidInputException",
            "GetPersonalizedRanking",
        ),
        (
            "get_recommendations",
            {"campaignArn": "arn:aws:personalize:x:y:campaign/../etc", "userId": "u"},
            "InvalidInputException",
            "campaignArn",
        ),
        ("get_recommendations", {"userId": "u"}, "InvalidInputException", "campaignArn"),
        (
            "get_recommendations",
            {"campaignArn": USER_CAMPAIGN, "userId": "u", "context": {"DEVICE": "phone"}},
            "InvalidInputException",
            "context",
        ),
        (
            "get_personalized_ranking",
            {"campaignArn": RANKING_CAMPAIGN, "userId": "u", "inputList": ["a"] * 501},
            "InvalidInputException",
            "inputList",
        ),
        (
            "get_personalized_ranking",
            {"campaignArn": USER_CAMPAIGN, "userId": "u", "inputList": ["a"]},
            "InvalidInputException",
            "GetPersonalizedRanking",
        ),
        (
            "get_personalized_ranking",
            {"campaignArn": campaign_arn("nope"), "userId": "u", "inputList": ["a"]},
            "ResourceNotFoundException",
            "nope",
        ),
    ],
)
def test_errors_are_personalizes_typed_exceptions(
    runtime_url: str, operation: str, params: dict[str, Any], exception: str, message: str
) -> None:
    # Given a client that skips its own validation, so the server's is what answers
    client = boto3.client(
        "personalize-runtime",
        endpoint_url=runtime_url,
        region_name=REGION,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    # When the bad request is sent, Then botocore raises the typed exception with a message naming the problem
    with pytest.raises(getattr(client.exceptions, exception)) as caught:
        getattr(client, operation)(**params)
    error = caught.value.response
    assert message in error["Error"]["Message"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == (
        404 if exception == "ResourceNotFoundException" else 400
    )
    assert error["ResponseMetadata"]["RequestId"]


def test_malformed_bodies_are_invalid_input(runtime_url: str) -> None:

    for body in (b"{not json", b"[1, 2]", b"\xff\xfe", b'"text"'):
        request = urllib.request.Request(runtime_url + "/recommendations", data=body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 400
        assert caught.value.headers["x-amzn-ErrorType"] == "InvalidInputException"


def test_a_campaign_switch_under_requests_is_atomic(runtime: Any, serving_env: str, s3: Any) -> None:
    # Given a campaign on version A, and a version B whose item order is reversed
    model_a = random_model(num_items=200, num_users=20, dims=8, seed=11)
    model_b = {**model_a, "item_factors": -model_a["item_factors"]}
    arn_a = publish(s3, serving_env, "switching", Recipe.USER_PERSONALIZATION, model_a, campaign="switching")
    arn_b = publish(s3, serving_env, "switching", Recipe.USER_PERSONALIZATION, model_b)
    expected = {
        arn: [
            f"item-{i}" for i in np.argsort(-softmax_reference(m["item_factors"], m["user_factors"][0]))[:10]
        ]
        for arn, m in ((arn_a, model_a), (arn_b, model_b))
    }
    campaign = campaign_arn("switching")
    seen: list[str] = []

    def ask() -> None:
        response = runtime.get_recommendations(campaignArn=campaign, userId="user-0", numResults=10)
        version = response["ResponseMetadata"]["HTTPHeaders"]["x-personalize-solution-version-arn"]
        # Then every answer is entirely one version's answer
        assert [item["itemId"] for item in response["itemList"]] == expected[version]
        seen.append(version)

    # When requests keep coming while the campaign is switched to B

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(ask) for _ in range(20)]:
            future.result()
        put_campaign(
            ModelBucket(s3, serving_env), "switching", read_manifest(ModelBucket(s3, serving_env), arn_b)
        )

        deadline = time.monotonic() + 10
        while (not seen or seen[-1] != arn_b) and time.monotonic() < deadline:
            for future in [pool.submit(ask) for _ in range(8)]:
                future.result()
    # Then the switch happened (after the pointer TTL) and no request failed
    assert seen[0] == arn_a
    assert seen[-1] == arn_b
