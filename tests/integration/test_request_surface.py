"""Filters, promotions, context and item metadata, through unchanged boto3 clients on real HTTP.

The model is small and built so that every right answer is known in advance: for user-0 (and
user-1) the items rank item-0 > item-1 > ... > item-9; the DEVICE=phone context reverses that.
Filters are created through the control plane (boto3 ``personalize``), then used through the
runtime (boto3 ``personalize-runtime``).
"""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config

from lambda_personalize.publish import (
    read_context_factors,
    read_interaction_events,
    read_items_csv,
    read_users_csv,
)
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.writer import prepare_extras, prepare_version, put_campaign, upload_version
from tests.conftest import BatchEnv
from tests.utils import ACCOUNT, REGION, campaign_arn

N = 10
ITEMS = [f"item-{i}" for i in range(N)]
ITEMS_CSV = "ITEM_ID,GENRE,PRICE,TITLE\n" + "".join(
    f"item-{i},{'comedy|drama' if i == 3 else 'comedy' if i % 2 == 0 else 'drama'},"
    f"{'' if i == 9 else i * 10},Title {i}\n"
    for i in range(N)
)
USERS_CSV = "USER_ID,AGE,TIER\nuser-0,30,gold\nuser-1,12,basic\n"
INTERACTIONS_CSV = (
    "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n"
    "user-0,item-0,100,watched\nuser-0,item-1,101,Watched\nuser-0,item-2,102,click\nuser-1,item-7,100,click\n"
)
CONTEXT_JSON = '{"DEVICE": {"phone": [-3.0, 3.0], "desktop": [0.0, 0.0], "tablet": [0.1, 0.3]}}'


def known_model() -> dict[str, Any]:
    return {
        "item_ids": ITEMS,
        # logit(user-0, item i) = (10 - i) / 10: the catalog order is the ranking.
        "item_factors": np.array([[(N - i) / N, i / N] for i in range(N)], dtype=np.float32),
        "user_ids": ["user-0", "user-1"],
        "user_factors": np.array([[1.0, 0.0], [1.0, 0.0]], dtype=np.float32),
        "popularity": np.arange(N, 0, -1, dtype=np.float32),
    }


@pytest.fixture(scope="module")
def solution(s3: Any, serving_bucket: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The known model published with the CLI's readers, as one solution with a campaign per recipe."""
    folder: Path = tmp_path_factory.mktemp("csv")
    for name, text in (
        ("items.csv", ITEMS_CSV),
        ("users.csv", USERS_CSV),
        ("interactions.csv", INTERACTIONS_CSV),
        ("context.json", CONTEXT_JSON),
    ):
        (folder / name).write_text(text)
    model = known_model()
    extras = prepare_extras(
        ITEMS,
        2,
        items=read_items_csv(folder / "items.csv", ITEMS),
        users=read_users_csv(folder / "users.csv"),
        interactions=read_interaction_events(folder / "interactions.csv"),
        context=read_context_factors(folder / "context.json"),
    )
    name = f"surface-{uuid.uuid4().hex[:8]}"
    for recipe in Recipe:
        prepared = prepare_version(
            solution=name,
            recipe=recipe,
            region=REGION,
            account=ACCOUNT,
            item_ids=ITEMS,
            item_factors=model["item_factors"],
            user_ids=model["user_ids"],
            user_factors=model["user_factors"],
            popularity=model["popularity"],
            version=recipe.value.lower().replace("_", "-"),
            extra_files=extras,
        )
        bucket = ModelBucket(s3, serving_bucket)
        put_campaign(bucket, f"{name}-{prepared.manifest.version}", upload_version(bucket, prepared))
    return name


def campaign(solution: str, recipe: Recipe) -> str:
    return campaign_arn(f"{solution}-{recipe.value.lower().replace('_', '-')}")


@pytest.fixture
def raw_runtime(runtime_url: str) -> Any:
    """A runtime client that skips its own validation, so the server's answers."""
    return boto3.client(
        "personalize-runtime",
        endpoint_url=runtime_url,
        region_name=REGION,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )


@pytest.fixture
def make_filter(personalize: Any, solution: str) -> Any:
    def create(expression: str) -> str:
        name = f"f-{uuid.uuid4().hex[:10]}"
        group = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset-group/{solution}"
        arn: str = personalize.create_filter(name=name, datasetGroupArn=group, filterExpression=expression)[
            "filterArn"
        ]
        return arn

    return create


def ids(items: list[dict[str, Any]]) -> list[int]:
    return [int(item["itemId"].split("-")[1]) for item in items]


def recommend(runtime: Any, solution: str, **params: Any) -> list[dict[str, Any]]:
    response = runtime.get_recommendations(
        campaignArn=campaign(solution, Recipe.USER_PERSONALIZATION), **{"userId": "user-0", **params}
    )
    items: list[dict[str, Any]] = response["itemList"]
    return items


# -- filters -----------------------------------------------------------------------------------------


def test_items_filter_applies_before_top_k(runtime: Any, solution: str, make_filter: Any) -> None:
    # Given a filter keeping drama items (1, 3 (comedy|drama), 5, 7, 9)
    drama = make_filter('INCLUDE ItemID WHERE Items.GENRE IN ("drama")')
    # When the top 3 are asked for, Then they are the 3 best dramas (the answer is still full)
    items = recommend(runtime, solution, filterArn=drama, numResults=3)
    assert ids(items) == [1, 3, 5]
    # And the scores are still the catalog-wide softmax
    logits = np.array([(N - i) / N for i in range(N)])
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose([i["score"] for i in items], expected[[1, 3, 5]], rtol=1e-6)
    # And NOT IN keeps the rest
    not_drama = make_filter('INCLUDE ItemID WHERE Items.GENRE NOT IN ("drama")')
    assert ids(recommend(runtime, solution, filterArn=not_drama)) == [0, 2, 4, 6, 8]


def test_interactions_filter_excludes_the_users_recent_items(
    runtime: Any, solution: str, make_filter: Any
) -> None:
    watched = make_filter('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("WATCHED")')
    anything = make_filter('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")')
    # Event types match without case; "*" is any event type; each user has their own interactions
    assert ids(recommend(runtime, solution, filterArn=watched, numResults=4)) == [2, 3, 4, 5]
    assert ids(recommend(runtime, solution, filterArn=anything, numResults=4)) == [3, 4, 5, 6]
    assert ids(recommend(runtime, solution, filterArn=anything, userId="user-1", numResults=8)) == [
        0, 1, 2, 3, 4, 5, 6, 8,
    ]  # fmt: skip
    # A cold-start user has no interactions: popular items, none excluded
    assert ids(recommend(runtime, solution, filterArn=anything, userId="nobody", numResults=3)) == [0, 1, 2]


def test_numeric_comparisons_and_parameters(runtime: Any, solution: str, make_filter: Any) -> None:
    cheap = make_filter("INCLUDE ItemID WHERE Items.PRICE < $MAX")
    assert ids(recommend(runtime, solution, filterArn=cheap, filterValues={"MAX": '"35"'})) == [0, 1, 2, 3]
    assert ids(recommend(runtime, solution, filterArn=cheap, filterValues={"MAX": "10"})) == [0]
    # AND binds tighter than OR; an item without a price never compares true
    mixed = make_filter(
        "INCLUDE ItemID WHERE Items.PRICE >= 50 AND Items.GENRE IN ($GENRE) OR Items.PRICE = 10"
    )
    assert ids(recommend(runtime, solution, filterArn=mixed, filterValues={"GENRE": '"comedy"'})) == [1, 6, 8]
    two = make_filter("INCLUDE ItemID WHERE Items.GENRE IN ($GENRES)")
    values = {"GENRES": '"comedy","drama"'}
    assert ids(recommend(runtime, solution, filterArn=two, filterValues=values)) == list(range(N))


def test_chains_and_missing_parameters(
    runtime: Any, raw_runtime: Any, solution: str, make_filter: Any
) -> None:
    chain = make_filter(
        'INCLUDE ItemID WHERE Items.GENRE IN ("drama") | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($T)'
    )
    # union of INCLUDEs minus union of EXCLUDEs
    assert ids(recommend(runtime, solution, filterArn=chain, filterValues={"T": '"watched"'})) == [3, 5, 7, 9]
    # an EXCLUDE whose parameter is missing is skipped
    assert ids(recommend(runtime, solution, filterArn=chain)) == [1, 3, 5, 7, 9]
    two_includes = make_filter(
        'INCLUDE ItemID WHERE Items.PRICE < 20 | INCLUDE ItemID WHERE Items.GENRE IN ("drama")'
    )
    assert ids(recommend(runtime, solution, filterArn=two_includes)) == [0, 1, 3, 5, 7, 9]
    # an INCLUDE whose parameter is missing is an InvalidInputException
    needs = make_filter("INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)")
    with pytest.raises(runtime.exceptions.InvalidInputException, match=r"\$GENRE"):
        recommend(runtime, solution, filterArn=needs)
    # malformed filterValues name the parameter
    with pytest.raises(runtime.exceptions.InvalidInputException, match=r"filterValues\.GENRE"):
        recommend(runtime, solution, filterArn=needs, filterValues={"GENRE": "comedy"})
    # a filter that does not exist is a 404
    with pytest.raises(raw_runtime.exceptions.ResourceNotFoundException):
        recommend(raw_runtime, solution, filterArn=f"arn:aws:personalize:{REGION}:{ACCOUNT}:filter/none")


def test_current_user_conditions(runtime: Any, solution: str, make_filter: Any) -> None:
    minors = make_filter('INCLUDE ItemID WHERE Items.GENRE IN ("comedy") IF CurrentUser.AGE < 18')
    # user-1 is 12: the expression applies; user-0 is 30: it is skipped, everything passes
    assert ids(recommend(runtime, solution, filterArn=minors, userId="user-1")) == [0, 2, 3, 4, 6, 8]
    assert ids(recommend(runtime, solution, filterArn=minors, userId="user-0")) == list(range(N))
    tier = make_filter("EXCLUDE ItemID WHERE Items.PRICE > 40 IF CurrentUser.TIER IN ($TIER)")
    assert ids(recommend(runtime, solution, filterArn=tier, filterValues={"TIER": '"gold"'})) == [
        0,
        1,
        2,
        3,
        4,
        9,
    ]


def test_current_item_conditions(runtime: Any, solution: str, make_filter: Any) -> None:
    related = campaign(solution, Recipe.RELATED_ITEMS)
    cheaper = make_filter("INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE")
    same_genre = make_filter("INCLUDE ItemID WHERE Items.GENRE IN CurrentItem.GENRE")

    def similar(item: str, arn: str) -> set[int]:
        items = runtime.get_recommendations(campaignArn=related, itemId=item, filterArn=arn)["itemList"]
        return set(ids(items))

    assert similar("item-5", cheaper) == {0, 1, 2, 3, 4}
    assert similar("item-4", same_genre) == {0, 2, 3, 6, 8}
    assert similar("item-3", same_genre) == set(range(N)) - {3}
    # Without an itemId there is no current item
    with pytest.raises(runtime.exceptions.InvalidInputException, match="CurrentItem"):
        recommend(runtime, solution, filterArn=cheaper)


def test_filters_in_personalized_ranking_and_popular_items(
    runtime: Any, solution: str, make_filter: Any
) -> None:
    drama = make_filter('INCLUDE ItemID WHERE Items.GENRE IN ("drama")')
    ranking = runtime.get_personalized_ranking(
        campaignArn=campaign(solution, Recipe.PERSONALIZED_RANKING),
        userId="user-0",
        inputList=["item-9", "item-2", "item-1", "ghost"],
        filterArn=drama,
    )["personalizedRanking"]
    # item-2 is filtered out, the unknown item is dropped; scores stay a softmax over the input list
    assert ids(ranking) == [1, 9]
    logits = np.array([0.1, 0.8, 0.9])
    np.testing.assert_allclose([r["score"] for r in ranking], (np.exp(logits) / np.exp(logits).sum())[[2, 0]])
    popular = runtime.get_recommendations(
        campaignArn=campaign(solution, Recipe.POPULAR_ITEMS), numResults=2, filterArn=drama
    )["itemList"]
    assert ids(popular) == [1, 3]


def test_create_filter_refuses_bad_expressions_with_their_position(personalize: Any, solution: str) -> None:
    group = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset-group/{solution}"
    for expression, position, message in (
        ('INCLUDE ItemID WHERE Items.GENRE IN ("a"', 41, '")"'),
        ('INCLUDE ItemID WHERE Items.COLOUR IN ("red")', 22, "COLOUR"),
        ("INCLUDE ItemID WHERE Items.GENRE < 3", 22, "not numeric"),
        ("INCLUDE ItemID WHERE Items.PRICE < 3 IF CurrentUser.HEIGHT > 2", 41, "HEIGHT"),
        ("INCLUDE ItemID WHERE Items.GENRE NOT IN ($GENRES)", 42, "cannot be used with NOT IN"),
    ):
        with pytest.raises(personalize.exceptions.InvalidInputException) as caught:
            personalize.create_filter(name="bad", datasetGroupArn=group, filterExpression=expression)
        assert f"position {position}" in caught.value.response["Error"]["Message"]
        assert message in caught.value.response["Error"]["Message"]
    with pytest.raises(personalize.exceptions.ResourceNotFoundException):
        personalize.create_filter(
            name="nowhere",
            datasetGroupArn=f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset-group/nothing-here",
            filterExpression='INCLUDE ItemID WHERE Items.GENRE IN ("a")',
        )


# -- promotions, context, metadata ------------------------------------------------------------------


def test_promotions_are_spread_labelled_and_never_duplicated(
    runtime: Any, solution: str, make_filter: Any
) -> None:
    drama = make_filter('INCLUDE ItemID WHERE Items.GENRE IN ("drama")')
    items = recommend(
        runtime,
        solution,
        numResults=10,
        promotions=[{"name": "drama-week", "percentPromotedItems": 20, "filterArn": drama}],
    )
    # 20% of 10: the two best dramas (1, 3), at spread positions; the rest are the best of the others
    assert ids(items) == [0, 2, 1, 4, 5, 6, 7, 3, 8, 9]
    promoted = [item for item in items if "promotionName" in item]
    assert ids(promoted) == [1, 3]
    assert all(
        item["promotionName"] == "drama-week" and item["reason"] == ["Promoted item"] for item in promoted
    )
    assert all("promotionName" not in item and "reason" not in item for item in items if item not in promoted)
    # The request's own filter applies to the other items
    comedy = make_filter('INCLUDE ItemID WHERE Items.GENRE IN ("comedy")')
    items = recommend(
        runtime,
        solution,
        numResults=4,
        filterArn=comedy,
        promotions=[{"name": "p", "percentPromotedItems": 50, "filterArn": drama}],
    )
    assert ids(items) == [0, 1, 2, 3]
    assert len({item["itemId"] for item in items}) == 4


def test_context_shifts_the_ranking(runtime: Any, raw_runtime: Any, solution: str) -> None:
    assert ids(recommend(runtime, solution, numResults=3)) == [0, 1, 2]
    # DEVICE=phone adds (-3, 3) to the user vector: the order reverses
    assert ids(recommend(runtime, solution, numResults=3, context={"DEVICE": "phone"})) == [9, 8, 7]
    assert ids(recommend(runtime, solution, numResults=3, context={"DEVICE": "desktop"})) == [0, 1, 2]
    ranking = runtime.get_personalized_ranking(
        campaignArn=campaign(solution, Recipe.PERSONALIZED_RANKING),
        userId="user-0",
        inputList=["item-1", "item-8"],
        context={"DEVICE": "phone"},
    )["personalizedRanking"]
    assert ids(ranking) == [8, 1]
    with pytest.raises(raw_runtime.exceptions.InvalidInputException, match="WEATHER"):
        recommend(raw_runtime, solution, context={"WEATHER": "rain"})


def test_context_scores_are_the_formula_for_the_shifted_vector(runtime: Any, solution: str) -> None:
    # Given DEVICE=tablet, whose vector (0.1, 0.3) moves user-0 to a point float32 cannot hold
    model = known_model()
    items = model["item_factors"].astype(np.float64)
    shifted = model["user_factors"][0].astype(np.float64) + np.array([0.1, 0.3], dtype=np.float32)
    logits = items @ shifted
    # When the whole catalog is asked for, and a ranking of two items
    answer = recommend(runtime, solution, numResults=N, context={"DEVICE": "tablet"})
    ranking = runtime.get_personalized_ranking(
        campaignArn=campaign(solution, Recipe.PERSONALIZED_RANKING),
        userId="user-0",
        inputList=["item-1", "item-8"],
        context={"DEVICE": "tablet"},
    )["personalizedRanking"]
    # Then the scores are the softmax of the float64 shifted vector (rounding it to float32 put
    # them ~1e-8 off)
    order = np.argsort(-logits, kind="stable")
    assert ids(answer) == order.tolist()
    expected = np.exp(logits[order] - np.log(np.exp(logits).sum()))
    np.testing.assert_allclose([item["score"] for item in answer], expected, rtol=1e-12)
    pair = logits[[1, 8]]
    np.testing.assert_allclose(
        [item["score"] for item in ranking],
        np.sort(np.exp(pair - np.log(np.exp(pair).sum())))[::-1],
        rtol=1e-12,
    )


def test_metadata_columns(runtime: Any, raw_runtime: Any, solution: str) -> None:
    items = recommend(runtime, solution, numResults=4, metadataColumns={"ITEMS": ["GENRE", "price"]})
    assert [item["metadata"] for item in items] == [
        {"GENRE": "comedy", "price": "0"},
        {"GENRE": "drama", "price": "10"},
        {"GENRE": "comedy", "price": "20"},
        {"GENRE": "comedy|drama", "price": "30"},
    ]
    ranking = runtime.get_personalized_ranking(
        campaignArn=campaign(solution, Recipe.PERSONALIZED_RANKING),
        userId="user-0",
        inputList=["item-9"],
        metadataColumns={"ITEMS": ["TITLE", "PRICE"]},
    )["personalizedRanking"]
    assert ranking[0]["metadata"] == {"TITLE": "Title 9", "PRICE": ""}
    with pytest.raises(raw_runtime.exceptions.InvalidInputException, match="COLOUR"):
        recommend(raw_runtime, solution, metadataColumns={"ITEMS": ["COLOUR"]})
    with pytest.raises(raw_runtime.exceptions.InvalidInputException, match="numResults"):
        recommend(raw_runtime, solution, numResults=51, metadataColumns={"ITEMS": ["GENRE"]})


def test_an_unknown_recommender_is_not_found(raw_runtime: Any) -> None:
    # recommenderArn is served (tests/integration/test_training.py); one that names nothing is a 404
    arn = f"arn:aws:personalize:{REGION}:{ACCOUNT}:recommender/r"
    with pytest.raises(
        raw_runtime.exceptions.ResourceNotFoundException, match=f"Recommender {arn} does not exist"
    ):
        raw_runtime.get_recommendations(recommenderArn=arn, userId="u")
    with pytest.raises(raw_runtime.exceptions.InvalidInputException, match="not a recommender ARN"):
        raw_runtime.get_recommendations(
            recommenderArn=f"arn:aws:personalize:{REGION}:{ACCOUNT}:campaign/r", userId="u"
        )


# -- the management API ---------------------------------------------------------------------------


def test_filter_lifecycle(personalize: Any, solution: str) -> None:
    # Given a filter created through boto3
    group = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset-group/{solution}"
    name = f"life-{uuid.uuid4().hex[:8]}"
    expression = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("watched")'
    arn = personalize.create_filter(name=name, datasetGroupArn=group, filterExpression=expression)[
        "filterArn"
    ]
    assert arn == f"arn:aws:personalize:{REGION}:{ACCOUNT}:filter/{name}"
    # Then it is described, listed (paginated) and refused a second time
    described = personalize.describe_filter(filterArn=arn)["filter"]
    assert described["filterExpression"] == expression
    assert described["status"] == "ACTIVE"
    assert described["datasetGroupArn"] == group
    assert described["creationDateTime"].timestamp() > 1.7e9
    with pytest.raises(personalize.exceptions.ResourceAlreadyExistsException):
        personalize.create_filter(name=name, datasetGroupArn=group, filterExpression=expression)
    for extra in ("a", "b"):
        personalize.create_filter(name=f"{name}-{extra}", datasetGroupArn=group, filterExpression=expression)
    pages = list(
        personalize.get_paginator("list_filters").paginate(
            datasetGroupArn=group, PaginationConfig={"PageSize": 1}
        )
    )
    listed = [f["name"] for page in pages for f in page["Filters"]]
    assert {name, f"{name}-a", f"{name}-b"} <= set(listed)
    assert len(listed) == len(set(listed))
    assert all(len(page["Filters"]) <= 1 for page in pages)
    with pytest.raises(personalize.exceptions.InvalidNextTokenException):
        personalize.list_filters(nextToken="not-a-token")
    # When it is deleted, Then it is gone
    personalize.delete_filter(filterArn=arn)
    for call in (personalize.describe_filter, personalize.delete_filter):
        with pytest.raises(personalize.exceptions.ResourceNotFoundException):
            call(filterArn=arn)
    with pytest.raises(personalize.exceptions.InvalidInputException, match="name"):
        personalize.create_filter(name="-bad", datasetGroupArn=group, filterExpression=expression)


def test_campaign_lifecycle_is_what_the_runtime_serves(
    personalize: Any, runtime: Any, solution: str, serving_env: str
) -> None:
    # Given two published versions of the solution
    versions = personalize.list_solution_versions(
        solutionArn=f"arn:aws:personalize:{REGION}:{ACCOUNT}:solution/{solution}"
    )["solutionVersions"]
    by_name = {v["solutionVersionArn"].rsplit("/", 1)[1]: v["solutionVersionArn"] for v in versions}
    assert set(by_name) == {r.value.lower().replace("_", "-") for r in Recipe}
    user_arn, popular_arn = by_name["user-personalization"], by_name["popular-items"]
    described = personalize.describe_solution_version(solutionVersionArn=user_arn)["solutionVersion"]
    assert described["status"] == "ACTIVE"
    assert described["recipeArn"] == "arn:aws:personalize:::recipe/aws-user-personalization"
    assert described["solutionArn"].endswith(f":solution/{solution}")
    # When a campaign is created on the first through boto3, Then the runtime serves it
    name = f"c-{uuid.uuid4().hex[:8]}"
    arn = personalize.create_campaign(name=name, solutionVersionArn=user_arn, minProvisionedTPS=2)[
        "campaignArn"
    ]
    assert ids(runtime.get_recommendations(campaignArn=arn, userId="user-0", numResults=2)["itemList"]) == [
        0,
        1,
    ]
    campaign_record = personalize.describe_campaign(campaignArn=arn)["campaign"]
    assert campaign_record["solutionVersionArn"] == user_arn
    assert campaign_record["minProvisionedTPS"] == 2
    assert campaign_record["status"] == "ACTIVE"
    with pytest.raises(personalize.exceptions.ResourceAlreadyExistsException):
        personalize.create_campaign(name=name, solutionVersionArn=user_arn)
    # And UpdateCampaign switches the version the runtime serves
    personalize.update_campaign(campaignArn=arn, solutionVersionArn=popular_arn)
    assert personalize.describe_campaign(campaignArn=arn)["campaign"]["solutionVersionArn"] == popular_arn
    assert personalize.describe_campaign(campaignArn=arn)["campaign"]["minProvisionedTPS"] == 2
    solution_arn = f"arn:aws:personalize:{REGION}:{ACCOUNT}:solution/{solution}"
    listed = [
        c["campaignArn"]
        for page in personalize.get_paginator("list_campaigns").paginate(
            solutionArn=solution_arn, PaginationConfig={"PageSize": 2}
        )
        for c in page["campaigns"]
    ]
    assert arn in listed
    assert len(listed) == len(set(listed)) == len(Recipe) + 1
    # And DeleteCampaign removes its record (the runtime answers 404 once its pointer TTL passes)
    personalize.delete_campaign(campaignArn=arn)
    with pytest.raises(personalize.exceptions.ResourceNotFoundException):
        personalize.describe_campaign(campaignArn=arn)
    # Errors: unknown version, unknown campaign, unknown solution, bad ARN
    missing_version = user_arn.rsplit("/", 1)[0] + "/nope"
    with pytest.raises(personalize.exceptions.ResourceNotFoundException):
        personalize.create_campaign(name=f"{name}-x", solutionVersionArn=missing_version)
    with pytest.raises(personalize.exceptions.ResourceNotFoundException):
        personalize.update_campaign(campaignArn=arn, solutionVersionArn=user_arn)
    with pytest.raises(personalize.exceptions.ResourceNotFoundException):
        personalize.delete_campaign(campaignArn=arn)
    with pytest.raises(personalize.exceptions.ResourceNotFoundException):
        personalize.describe_solution_version(solutionVersionArn=missing_version)
    with pytest.raises(personalize.exceptions.ResourceNotFoundException):
        personalize.list_solution_versions(solutionArn=solution_arn + "-none")
    with pytest.raises(personalize.exceptions.InvalidInputException, match="campaignArn"):
        personalize.describe_campaign(campaignArn=f"arn:aws:personalize:{REGION}:{ACCOUNT}:filter/x")
    with pytest.raises(personalize.exceptions.InvalidNextTokenException):
        personalize.list_solution_versions(nextToken="bad")
    walked = [
        v["solutionVersionArn"]
        for page in personalize.get_paginator("list_solution_versions").paginate(
            PaginationConfig={"PageSize": 3}
        )
        for v in page["solutionVersions"]
    ]
    assert set(by_name.values()) <= set(walked)
    assert len(walked) == len(set(walked))


# -- filters in batch inference jobs -----------------------------------------------------------------


def test_a_batch_job_applies_its_filter_with_each_lines_values(
    batch_env: BatchEnv, control_plane: Any, runtime: Any, s3: Any, solution: str, make_filter: Any
) -> None:
    # Given a filter with a parameter, and input lines giving it different values (or none)
    arn = make_filter("INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)")
    drama, comedy = {"GENRE": '"drama"'}, {"GENRE": '"comedy"'}
    given = [
        {"userId": "user-0", "filterValues": drama},
        {"userId": "user-1", "filterValues": comedy},
        {"userId": "user-0"},
        {"userId": "nobody", "filterValues": drama},
    ]
    bucket = batch_env.data_bucket
    s3.put_object(Bucket=bucket, Key="in.jsonl", Body="".join(json.dumps(g) + "\n" for g in given).encode())
    # When a job with that filter runs
    version = f"arn:aws:personalize:{REGION}:{ACCOUNT}:solution/{solution}/user-personalization"
    job = control_plane.create_batch_inference_job(
        jobName=f"filtered-{uuid.uuid4().hex[:6]}",
        solutionVersionArn=version,
        filterArn=arn,
        numResults=4,
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/personalize-batch-test",
        jobInput={"s3DataSource": {"path": f"s3://{bucket}/in.jsonl"}},
        jobOutput={"s3DataDestination": {"path": f"s3://{bucket}/out/"}},
    )["batchInferenceJobArn"]
    batch_env.poller.drain()
    described = control_plane.describe_batch_inference_job(batchInferenceJobArn=job)["batchInferenceJob"]
    assert described["status"] == "ACTIVE", described.get("failureReason")
    out = [
        json.loads(line) for line in s3.get_object(Bucket=bucket, Key="out/in.jsonl.out")["Body"].iter_lines()
    ]
    # Then each line is what the real-time API answers with the same filter and values
    assert [line["output"]["recommendedItems"] for line in out if line["error"] is None] == [
        ["item-1", "item-3", "item-5", "item-7"],
        ["item-0", "item-2", "item-3", "item-4"],
        ["item-1", "item-3", "item-5", "item-7"],  # unknown: the cold-user vector's best dramas
    ]
    for line in (out[0], out[1], out[3]):
        answer = runtime.get_recommendations(
            campaignArn=campaign(solution, Recipe.USER_PERSONALIZATION),
            userId=line["input"]["userId"],
            numResults=4,
            filterArn=arn,
            filterValues=line["input"]["filterValues"],
        )["itemList"]
        assert line["output"]["recommendedItems"] == [item["itemId"] for item in answer]
        if "scores" in line["output"]:
            np.testing.assert_allclose(
                line["output"]["scores"], [item["score"] for item in answer], rtol=1e-6
            )
    # And the line without the INCLUDE's value is an error line, as the real-time API refuses it
    assert out[2]["output"] == {"recommendedItems": [], "scores": []}
    assert "$GENRE" in out[2]["error"]


def test_concurrent_creates_of_one_name_give_exactly_one_record(personalize: Any, solution: str) -> None:
    # Given eight clients creating the same filter at the same moment
    name = f"race-{uuid.uuid4().hex[:8]}"
    group = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset-group/{solution}"
    barrier = threading.Barrier(8)

    def create(expression: str) -> str:
        barrier.wait()
        try:
            personalize.create_filter(name=name, datasetGroupArn=group, filterExpression=expression)
        except personalize.exceptions.ResourceAlreadyExistsException:
            return "exists"
        return expression

    expressions = [f'EXCLUDE ItemID WHERE Items.GENRE IN ("g{i}")' for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(create, expressions))
    # Then exactly one succeeded, and the stored filter is the winner's
    winners = [o for o in outcomes if o != "exists"]
    assert len(winners) == 1
    arn = f"arn:aws:personalize:{REGION}:{ACCOUNT}:filter/{name}"
    assert personalize.describe_filter(filterArn=arn)["filter"]["filterExpression"] == winners[0]


# -- one set of rules: batch lines are the real-time answers ----------------------------------------

EQUALITY_FILTERS = {
    "none": None,
    "items": "INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)",
    "interactions": 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("watched")',
}
EQUALITY_LINES: dict[Recipe, list[dict[str, Any]]] = {
    Recipe.USER_PERSONALIZATION: [{"userId": u} for u in ("user-0", "user-1", "nobody")],
    Recipe.POPULAR_ITEMS: [{"userId": u} for u in ("user-0", "nobody")],
    Recipe.RELATED_ITEMS: [{"itemId": i} for i in ("item-0", "item-5", "ghost")],
    Recipe.PERSONALIZED_RANKING: [
        {"userId": "user-0", "itemList": ["item-9", "item-2", "item-1", "ghost", "item-2", "item-4"]},
        {"userId": "nobody", "itemList": ["item-3", "item-8", "item-4"]},
        {"userId": "user-1", "itemList": ["ghost"]},
    ],
}


def _real_time(
    runtime: Any, solution: str, recipe: Recipe, given: dict[str, Any], extra: dict[str, Any]
) -> Any:
    """The real-time answer to a batch line, in the batch output's shape."""
    arn = campaign(solution, recipe)
    if recipe is Recipe.PERSONALIZED_RANKING:
        items = runtime.get_personalized_ranking(
            campaignArn=arn, userId=given["userId"], inputList=given["itemList"], **extra
        )["personalizedRanking"]
    else:
        key = "itemId" if recipe is Recipe.RELATED_ITEMS else "userId"
        items = runtime.get_recommendations(campaignArn=arn, numResults=4, **{key: given[key]}, **extra)[
            "itemList"
        ]
    output: dict[str, Any] = {"recommendedItems": [item["itemId"] for item in items]}
    if any("score" in item for item in items):
        output["scores"] = [item.get("score") for item in items]
    return output


@pytest.mark.parametrize("recipe", list(Recipe))
def test_batch_lines_equal_the_real_time_answers(
    batch_env: BatchEnv,
    control_plane: Any,
    runtime: Any,
    s3: Any,
    solution: str,
    make_filter: Any,
    recipe: Recipe,
) -> None:
    """Known and unknown users and items, without a filter and with an items and an interactions
    filter. (Batch input lines carry no context in Personalize, so context is real time only.)"""
    bucket = batch_env.data_bucket
    for kind, expression in EQUALITY_FILTERS.items():
        # Given the recipe's lines (with the filter's values, when it has a parameter)
        values = {"GENRE": '"drama"'} if kind == "items" else None
        given = [{**line, **({"filterValues": values} if values else {})} for line in EQUALITY_LINES[recipe]]
        key = f"{recipe.value}-{kind}.jsonl"
        s3.put_object(Bucket=bucket, Key=key, Body="".join(json.dumps(g) + "\n" for g in given).encode())
        filter_arn = make_filter(expression) if expression else None
        # When a batch job answers them
        job = control_plane.create_batch_inference_job(
            jobName=f"same-{uuid.uuid4().hex[:8]}",
            solutionVersionArn=f"arn:aws:personalize:{REGION}:{ACCOUNT}:solution/{solution}/"
            + recipe.value.lower().replace("_", "-"),
            numResults=4,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/personalize-batch-test",
            jobInput={"s3DataSource": {"path": f"s3://{bucket}/{key}"}},
            jobOutput={"s3DataDestination": {"path": f"s3://{bucket}/same/"}},
            **({"filterArn": filter_arn} if filter_arn else {}),
        )["batchInferenceJobArn"]
        batch_env.poller.drain()
        described = control_plane.describe_batch_inference_job(batchInferenceJobArn=job)["batchInferenceJob"]
        assert described["status"] == "ACTIVE", described.get("failureReason")
        body = s3.get_object(Bucket=bucket, Key=f"same/{key}.out")["Body"].read().decode()
        out = [json.loads(line) for line in body.splitlines()]
        # Then every line is the real-time answer to the same query: same items, same order, same scores
        assert [line["input"] for line in out] == given
        for line in out:
            extra = (
                {"filterArn": filter_arn, **({"filterValues": values} if values else {})}
                if filter_arn
                else {}
            )
            expected = _real_time(runtime, solution, recipe, line["input"], extra)
            assert line["error"] is None, line
            assert line["output"]["recommendedItems"] == expected["recommendedItems"], (kind, line)
            assert ("scores" in line["output"]) == ("scores" in expected), (kind, line)
            for got, want in zip(line["output"].get("scores", []), expected.get("scores", []), strict=True):
                assert (got is None) == (want is None), (kind, line)
                if want is not None:
                    assert got == pytest.approx(want, rel=1e-12, abs=0)


def test_a_filter_applies_only_in_its_own_dataset_group(
    batch_env: BatchEnv,
    control_plane: Any,
    runtime: Any,
    raw_runtime: Any,
    s3: Any,
    serving_bucket: str,
    solution: str,
    tmp_path: Path,
) -> None:
    # Given a second solution (its own dataset group) and a filter created there
    other = f"{solution}-other"
    model = known_model()
    (tmp_path / "items.csv").write_text(ITEMS_CSV)
    prepared = prepare_version(
        solution=other,
        recipe=Recipe.USER_PERSONALIZATION,
        region=REGION,
        account=ACCOUNT,
        item_ids=ITEMS,
        item_factors=model["item_factors"],
        user_ids=model["user_ids"],
        user_factors=model["user_factors"],
        popularity=model["popularity"],
        extra_files=prepare_extras(ITEMS, 2, items=read_items_csv(tmp_path / "items.csv", ITEMS)),
    )
    upload_version(ModelBucket(s3, serving_bucket), prepared)
    foreign = control_plane.create_filter(
        name=f"foreign-{uuid.uuid4().hex[:8]}",
        datasetGroupArn=f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset-group/{other}",
        filterExpression='EXCLUDE ItemID WHERE Items.GENRE IN ("drama")',
    )["filterArn"]
    # When it is used on a campaign of the first dataset group, in real time and in a batch job
    with pytest.raises(raw_runtime.exceptions.InvalidInputException, match="dataset group") as caught:
        recommend(raw_runtime, solution, filterArn=foreign)
    bucket = batch_env.data_bucket
    s3.put_object(Bucket=bucket, Key="foreign.jsonl", Body=b'{"userId": "user-0"}\n')
    with pytest.raises(control_plane.exceptions.InvalidInputException, match="dataset group"):
        control_plane.create_batch_inference_job(
            jobName=f"foreign-{uuid.uuid4().hex[:6]}",
            solutionVersionArn=f"arn:aws:personalize:{REGION}:{ACCOUNT}:solution/{solution}/user-personalization",
            filterArn=foreign,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/personalize-batch-test",
            jobInput={"s3DataSource": {"path": f"s3://{bucket}/foreign.jsonl"}},
            jobOutput={"s3DataDestination": {"path": f"s3://{bucket}/foreign/"}},
        )
    # Then both are refused, naming both dataset groups
    assert f"dataset-group/{other}" in str(caught.value)
    assert f"dataset-group/{solution}" in str(caught.value)
    # ... while the same filter serves the other group's own version
    put_campaign(ModelBucket(s3, serving_bucket), f"{other}-c", prepared.manifest)
    items = runtime.get_recommendations(
        campaignArn=campaign_arn(f"{other}-c"), userId="user-0", numResults=10, filterArn=foreign
    )["itemList"]
    assert ids(items) == [0, 2, 4, 6, 8]
