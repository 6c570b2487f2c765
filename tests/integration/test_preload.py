"""PRELOAD_CAMPAIGNS (the SnapStart option): models load during init, and a bad ARN never breaks init."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from personalize_core.errors import ResourceNotFoundException
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.objects import Received, S3Objects
from personalize_core.modelstore.s3_reader import S3Error
from personalize_core.modelstore.store import ModelStore, get_store, preload
from personalize_core.modelstore.warm_start import begin_preload, take_objects
from personalize_core.settings import get_settings
from tests.conftest import publish
from tests.utils import CountingObjects, campaign_arn, random_model


def test_preloaded_campaign_answers_its_first_request_without_reading_s3(s3: Any, bucket: str) -> None:
    # Given a published campaign and a store preloaded with it (plus one campaign that does not exist)
    arn = publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, random_model(50, 5, 4), campaign="c")
    objects = CountingObjects(bucket)
    store = ModelStore(objects, pointer_ttl_seconds=60)
    preload(store, (campaign_arn("c"), campaign_arn("missing")))
    reads = len(objects.reads)
    assert reads > 0
    # When the first request comes
    _, model = store.campaign(campaign_arn("c"))
    # Then it is served from memory
    assert model.arn == arn
    assert len(objects.reads) == reads


def test_preload_setting_is_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRELOAD_CAMPAIGNS", f" {campaign_arn('a')},,{campaign_arn('b')} ")
    get_settings.cache_clear()
    try:
        assert get_settings().preload_campaigns == (campaign_arn("a"), campaign_arn("b"))
    finally:
        get_settings.cache_clear()


# -- the head start (warm_start.begin_preload): the model's download overlaps the imports ----------


@pytest.fixture
def preload_env(bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """PRELOAD_CAMPAIGNS' environment, a cold store, and every S3 read recorded as (key, thread)."""
    reads: list[tuple[str, str]] = []
    get, receive = S3Objects._get, S3Objects._receive

    def recorded_get(self: S3Objects, key: str) -> bytes:
        reads.append((key, threading.current_thread().name))
        return get(self, key)

    def recorded_receive(self: S3Objects, key: str, size: int) -> Received:
        reads.append((key, threading.current_thread().name))
        return receive(self, key, size)

    monkeypatch.setattr(S3Objects, "_get", recorded_get)
    monkeypatch.setattr(S3Objects, "_receive", recorded_receive)
    monkeypatch.setenv("MODEL_BUCKET", bucket)
    monkeypatch.setenv("CAMPAIGN_CACHE_TTL_SECONDS", "0")
    get_settings.cache_clear()
    get_store.cache_clear()
    yield reads
    take_objects(bucket)  # whatever a failed test left
    get_settings.cache_clear()
    get_store.cache_clear()


def start_function(
    monkeypatch: pytest.MonkeyPatch, *campaign_arns: str, imports_take_long: bool = True
) -> ModelStore:
    """What GetRecommendations' init does: the head start, the imports, preload. The imports take
    longer than the head start (as numpy's do against a 100k-item model), or no time at all."""
    monkeypatch.setenv("PRELOAD_CAMPAIGNS", ",".join(campaign_arns))
    get_settings.cache_clear()
    head_start = begin_preload()
    assert head_start is not None
    if imports_take_long:
        head_start.join()
    store = get_store()
    preload(store, get_settings().preload_campaigns)
    return store


def test_the_head_start_reads_each_file_once_and_loads_the_model_a_cold_load_does(
    s3: Any, bucket: str, preload_env: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a published campaign
    model = random_model(200, 20, 8)
    arn = publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, model, campaign="c")
    # When a function preloads it with the head start
    store = start_function(monkeypatch, campaign_arn("c"))
    keys = [key for key, _ in preload_env]
    _, loaded = store.campaign(campaign_arn("c"))
    # Then the head start read the pointer, the manifest and every file, each once, and the load
    # took all of them over (the store read nothing itself)
    prefix = f"solutions/sol/{loaded.manifest.version}/"
    expected = {"campaigns/c.json", prefix + "manifest.json"} | {prefix + f for f in loaded.manifest.files}
    assert sorted(keys) == sorted(expected)
    assert {thread for key, thread in preload_env if key.endswith("factors.npy")} == {"preload-read-ahead"}
    # And the model is the one a load without the head start gives
    _, cold = ModelStore(S3Objects(bucket)).campaign(campaign_arn("c"))
    assert loaded.arn == cold.arn == arn
    assert loaded.item_factors is not None
    assert cold.item_factors is not None
    assert np.array_equal(loaded.item_factors.planes, cold.item_factors.planes)
    for name in ("popularity", "popular_order", "cold_user_vector"):
        assert np.array_equal(getattr(loaded, name), getattr(cold, name)), name
    assert list(loaded.item_ids) == list(cold.item_ids)
    assert loaded.users is not None
    assert cold.users is not None
    for user in model["user_ids"]:
        warm_user, cold_user = loaded.users.get(user), cold.users.get(user)
        assert warm_user is not None
        assert cold_user is not None
        assert warm_user.row == cold_user.row
        assert np.array_equal(warm_user.vector, cold_user.vector)


def test_a_fault_in_the_head_start_is_the_loads_to_report_and_the_next_load_reads_again(
    s3: Any, bucket: str, preload_env: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a published campaign, and S3 failing the item matrix once (retries spent)
    publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, random_model(200, 20, 8), campaign="c")
    receive = S3Objects._receive
    failures = []

    def failing_once(self: S3Objects, key: str, size: int) -> Received:
        if key.endswith("item_factors.npy") and not failures:
            failures.append(key)
            raise S3Error(503, "SlowDown", "please reduce your request rate", key)
        return receive(self, key, size)

    monkeypatch.setattr(S3Objects, "_receive", failing_once)
    # When the function preloads it: init goes on (the failure is logged)
    store = start_function(monkeypatch, campaign_arn("c"))
    assert failures
    # Then the first request loads the version again, reading S3 itself
    _, model = store.campaign(campaign_arn("c"))
    assert model.item_factors is not None
    threads = [thread for key, thread in preload_env if key.endswith("item_factors.npy")]
    assert len(threads) == 1  # the failed read is not recorded (it raised before); this one is the store's
    assert threads[0] != "preload-read-ahead"


def test_campaigns_that_cannot_be_read_ahead_leave_the_others_and_init_alone(
    s3: Any, bucket: str, preload_env: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given one published campaign, one missing, and an ARN that is not a campaign's
    arn = publish(s3, bucket, "sol", Recipe.POPULAR_ITEMS, random_model(50, 0, 4), campaign="c")
    # When a function preloads them all
    store = start_function(monkeypatch, "not-an-arn", campaign_arn("missing"), campaign_arn("c"))
    keys = [key for key, _ in preload_env if key != "campaigns/missing.json"]
    # Then the good one is loaded, the missing one is reported as such, and nothing is read twice
    assert store.campaign(campaign_arn("c"))[1].arn == arn
    with pytest.raises(ResourceNotFoundException):
        store.campaign(campaign_arn("missing"))
    assert len(keys) == len(set(keys))
    assert not any(key.endswith("factors.npy") for key in keys)  # popular items: no matrices


def test_the_head_start_imports_no_numpy() -> None:
    # The point of it: it runs before numpy is imported, and must not import it itself
    probe = (
        "import sys, personalize_core.modelstore.warm_start; "
        "print(sorted(m for m in sys.modules if 'numpy' in m))"
    )
    layer = str(Path(__file__).resolve().parents[2] / "layers" / "core")
    result = subprocess.run(
        [sys.executable, "-c", probe],
        check=False,
        env={**os.environ, "PYTHONPATH": layer},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_load_that_overtakes_the_head_start_reads_nothing_twice(
    s3: Any, bucket: str, preload_env: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a published campaign
    publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, random_model(200, 20, 8), campaign="c")
    for _ in range(5):
        preload_env.clear()
        get_store.cache_clear()
        # When a function with no imports to speak of preloads it (the load races the head start)
        store = start_function(monkeypatch, campaign_arn("c"), imports_take_long=False)
        time.sleep(0.05)  # let a head start that lost the race finish
        # Then whoever read a file, nobody read it twice, and the model is whole
        keys = [key for key, _ in preload_env]
        assert len(keys) == len(set(keys)), sorted(keys)
        assert store.campaign(campaign_arn("c"))[1].item_factors is not None
