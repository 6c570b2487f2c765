"""PRELOAD_CAMPAIGNS (the SnapStart option): models load during init, and a bad ARN never breaks init."""

from __future__ import annotations

from typing import Any

import pytest

from personalize_core.artifacts import Recipe
from personalize_core.settings import get_settings
from personalize_core.store import ModelStore, preload
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
