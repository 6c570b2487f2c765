"""Users fetched on demand (issue 19) through the real handler and real (moto) S3 behind a proxy
that sees every request: a miss is one ranged GET, a hit none; an evicted user is fetched again; a
broken page is refused and the last good version answers; a campaign switch never mixes versions;
versions published before user pages keep serving the same answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from lambda_personalize.local_api import proxy_event
from personalize_core.batch.inference import answer_lines, parse_line
from personalize_core.edge.requests import RecommendationsRequest
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.objects import S3Objects
from personalize_core.modelstore.store import ModelStore, get_store
from personalize_core.modelstore.writer import put_campaign, read_manifest
from personalize_core.serving import operations
from tests.conftest import publish
from tests.faults import FaultProxy
from tests.legacy_layout import publish_legacy
from tests.utils import (
    CountingObjects,
    campaign_arn,
    clear_process_caches,
    invoke,
    random_model,
    softmax_reference,
)

K = 10


@pytest.fixture
def proxy(moto_url: str) -> Iterator[FaultProxy]:
    server = FaultProxy(moto_url).start()
    yield server
    server.stop()


@pytest.fixture
def serving(proxy: FaultProxy, bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The serving functions' environment on ``bucket``, reading S3 through the proxy."""
    monkeypatch.setenv("MODEL_BUCKET", bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    monkeypatch.setenv("CAMPAIGN_CACHE_TTL_SECONDS", "100")
    monkeypatch.setenv("USER_CACHE_SIZE", "2")
    clear_process_caches()
    yield bucket
    clear_process_caches()


def page_gets(proxy: FaultProxy) -> list[str]:
    """The GETs of user pages so far; each was a ranged GET (the only ones these tests make)."""
    found = [path for method, path in proxy.seen if method == "GET" and "/user_pages/" in path]
    ranged = [h for h in proxy.headers_seen if any(name.lower() == "range" for name in h)]
    assert len(ranged) == len(found)
    return found


def recommend(campaign: str, user: str) -> tuple[str, list[dict[str, Any]]]:
    body = json.dumps({"campaignArn": campaign_arn(campaign), "userId": user, "numResults": K}).encode()
    result = invoke("get_recommendations", proxy_event("POST", "/recommendations", {}, body))
    assert result["statusCode"] == 200, result["body"]
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    return headers["x-personalize-solution-version-arn"], json.loads(result["body"])["itemList"]


def request_of(user: str, campaign: str = "c") -> RecommendationsRequest:
    return RecommendationsRequest.parse(
        {"campaignArn": campaign_arn(campaign), "userId": user, "numResults": K}
    )


def line_of(user: str) -> Any:
    return parse_line(json.dumps({"userId": user}).encode(), Recipe.USER_PERSONALIZATION)


def expected(model: dict[str, Any], user: int) -> tuple[list[str], np.ndarray]:
    reference = softmax_reference(model["item_factors"], model["user_factors"][user])
    top = np.argsort(-reference, kind="stable")[:K]
    return [model["item_ids"][i] for i in top], reference[top]


def assert_answer(items: list[dict[str, Any]], model: dict[str, Any], user: int) -> None:
    ids, scores = expected(model, user)
    assert [item["itemId"] for item in items] == ids
    # Exact: the normaliser computed on first use is the float64 one the publisher used to store
    np.testing.assert_allclose([item["score"] for item in items], scores, rtol=1e-11)


def test_a_miss_is_one_ranged_get_and_a_hit_none(proxy: FaultProxy, serving: str, s3: Any) -> None:
    # Given a campaign over 3,000 users (3 pages)
    model = random_model(300, 3000, 16, seed=1)
    publish(s3, serving, "sol", Recipe.USER_PERSONALIZATION, model, campaign="c")
    # When a user asks twice
    _, first = recommend("c", "user-42")
    after_miss = len(page_gets(proxy))
    _, second = recommend("c", "user-42")
    # Then the first request read their page with one ranged GET, the second read nothing
    assert after_miss == 1
    assert len(page_gets(proxy)) == 1
    assert first == second
    assert_answer(first, model, 42)
    # An unknown user costs one read too, once, and is scored with the cold-user vector
    _, unknown = recommend("c", "nobody")
    _, again = recommend("c", "nobody")
    assert len(page_gets(proxy)) == 2
    assert unknown == again
    assert all("score" in item for item in unknown)


def test_an_evicted_user_is_fetched_again_and_answered_the_same(
    proxy: FaultProxy, serving: str, s3: Any
) -> None:
    # Given a cache of two users (USER_CACHE_SIZE=2)
    model = random_model(300, 3000, 16, seed=2)
    publish(s3, serving, "sol", Recipe.USER_PERSONALIZATION, model, campaign="c")
    _, first = recommend("c", "user-1")
    recommend("c", "user-2")
    recommend("c", "user-1")  # user-2 is now the least recently used
    recommend("c", "user-3")  # ...and goes
    assert len(page_gets(proxy)) == 3
    # When both come back
    _, kept = recommend("c", "user-1")
    assert len(page_gets(proxy)) == 3  # still cached
    _, evicted = recommend("c", "user-2")
    # Then the evicted one was read again, and answered as before
    assert len(page_gets(proxy)) == 4
    assert kept == first
    assert_answer(evicted, model, 2)
    assert len(get_store().user_cache) == 2


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_broken_user_page_is_refused_and_the_last_good_version_answers(
    proxy: FaultProxy, serving: str, s3: Any, damage: str
) -> None:
    # Given a campaign serving v1, switched to v2 (verified), whose user pages then break
    model_1, model_2 = random_model(300, 500, 16, seed=3), random_model(300, 500, 16, seed=4)
    v1 = publish(s3, serving, "sol", Recipe.USER_PERSONALIZATION, model_1, campaign="c")
    assert recommend("c", "user-7")[0] == v1
    v2 = publish(s3, serving, "sol", Recipe.USER_PERSONALIZATION, model_2)
    manifest_2 = read_manifest(ModelBucket(s3, serving), v2)
    put_campaign(ModelBucket(s3, serving), "c", manifest_2)
    put_campaign(ModelBucket(s3, serving), "only-v2", manifest_2)  # a campaign with nothing before
    break_pages(s3, serving, v2, damage)
    get_store().pointer_ttl_seconds = 0  # the switch is seen now
    # When a user of the broken page asks
    arn, items = recommend("c", "user-9")
    # Then v1 answers, all of it (v2 is refused, as a version that fails to load is)
    assert arn == v1
    assert_answer(items, model_1, 9)
    get_store().pointer_ttl_seconds = 100
    assert recommend("c", "user-11")[0] == v1
    # A cold function falls back the same way: the campaign's record names v1 as served before
    clear_process_caches()
    assert recommend("c", "user-9")[0] == v1
    # ...and a campaign with no version before it is a clear 503 naming the page
    body = json.dumps({"campaignArn": campaign_arn("only-v2"), "userId": "user-9"}).encode()
    result = invoke("get_recommendations", proxy_event("POST", "/recommendations", {}, body))
    assert result["statusCode"] == 503
    message = json.loads(result["body"])["message"]
    assert "user page" in message
    assert "user_pages/000000.bin" in message
    assert ("CRC-32" if damage == "corrupt" else "does not exist") in message


def break_pages(s3: Any, bucket: str, version_arn: str, damage: str) -> None:
    """The version's first page file XORed with 0x5A (its pages fail their CRC-32s), or removed."""
    solution, version = version_arn.split("/")[-2:]
    key = f"solutions/{solution}/{version}/user_pages/000000.bin"
    if damage == "corrupt":
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(b ^ 0x5A for b in data))
    else:
        s3.delete_object(Bucket=bucket, Key=key)


def test_a_campaign_switch_while_users_are_cached_answers_from_exactly_one_version(
    s3: Any, bucket: str
) -> None:
    # Given two versions with other vectors for the same users, and a store that has cached
    # users of the first
    model_1, model_2 = random_model(200, 400, 8, seed=5), random_model(200, 400, 8, seed=6)
    v1 = publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, model_1, campaign="c")
    v2 = publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, model_2)
    models = {v1: model_1, v2: model_2}
    manifests = {arn: read_manifest(ModelBucket(s3, bucket), arn) for arn in models}
    store = ModelStore(S3Objects(bucket), pointer_ttl_seconds=0, user_cache_size=1000)
    users = [f"user-{u}" for u in range(12)]

    def ask(user: str) -> tuple[str, str, list[dict[str, Any]]]:
        answer = operations.get_recommendations(request_of(user), store)
        return user, answer.solution_version_arn, answer.items

    for user in users:
        ask(user)
    # When requests run on four threads while the campaign switches back and forth
    stop = threading.Event()

    def switch() -> None:
        target = v2
        while not stop.is_set():
            put_campaign(ModelBucket(s3, bucket), "c", manifests[target])
            target = v1 if target == v2 else v2

    switcher = threading.Thread(target=switch)
    switcher.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, users * 8))
    finally:
        stop.set()
        switcher.join()
    # Then each answer is entirely the version it names: that version's vector, scores and items
    assert {arn for _, arn, _ in answers} == {v1, v2}
    for user, arn, items in answers:
        assert_answer(items, models[arn], int(user.split("-")[1]))


@pytest.mark.parametrize("normalisers", [True, False])
def test_versions_published_before_user_pages_serve_the_same_answers(
    s3: Any, bucket: str, normalisers: bool
) -> None:
    # Given one model published now (pages) and in the old layout (the whole matrix; with or
    # without every user's log-normaliser)
    model = random_model(300, 200, 16, seed=8)
    new = publish(s3, bucket, "new", Recipe.USER_PERSONALIZATION, model, campaign="new")
    old = publish_legacy(s3, bucket, "old", Recipe.USER_PERSONALIZATION, model, "old", normalisers)
    store = ModelStore(CountingObjects(bucket))
    # Then both give the same items and scores, real time and batch, users known or not
    tolerance = 1e-11 if normalisers else 1e-7  # (old versions without them: float32 tail terms)
    for user in ["user-0", "user-17", "user-199", "nobody"]:
        answers = []
        for campaign in ("new", "old"):
            answers.append(operations.get_recommendations(request_of(user, campaign), store))
        assert [a.solution_version_arn for a in answers] == [new, old.solution_version_arn]
        assert [i["itemId"] for i in answers[0].items] == [i["itemId"] for i in answers[1].items]
        np.testing.assert_allclose(
            [i["score"] for i in answers[0].items], [i["score"] for i in answers[1].items], rtol=tolerance
        )
    lines = [line_of(f"user-{u}") for u in range(50)]
    answer_lines(store.version("old", old.version), lines, K)
    for u, line in enumerate(lines):
        ids, scores = expected(model, u)
        assert line.output is not None
        assert line.output["recommendedItems"] == ids
        np.testing.assert_allclose(line.output["scores"], scores, rtol=tolerance)


def test_a_batch_reads_each_page_file_it_needs_once_and_answers_as_real_time(s3: Any, bucket: str) -> None:
    # Given 40,000 users at d = 8 (pages of 2,048, 16 a file: two files)
    model = random_model(200, 40_000, 8, seed=9)
    publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, model, campaign="c")
    objects = CountingObjects(bucket)
    store = ModelStore(objects, user_cache_size=100)
    loaded = store.campaign(campaign_arn("c"))[1]
    assert loaded.manifest.user_pages is not None
    assert loaded.manifest.user_pages.files == 2
    users = [f"user-{u}" for u in range(0, 40_000, 41)]
    lines = [line_of(u) for u in users]
    # When a batch of ~1,000 users is answered
    reads = len(objects.reads)
    answer_lines(loaded, lines, K)
    # Then each of the two page files was read once (a cache of 100 users did not matter)
    read = objects.reads[reads:]
    assert len(read) == 2
    assert len(set(read)) == 2
    assert all("/user_pages/" in key for key in read)
    # ...and every line is the real-time answer
    for user, line in zip(users, lines, strict=True):
        assert line.output is not None
        real_time = operations.get_recommendations(request_of(user), store).items
        assert line.output["recommendedItems"] == [item["itemId"] for item in real_time]
        np.testing.assert_allclose(line.output["scores"], [item["score"] for item in real_time], rtol=1e-12)
