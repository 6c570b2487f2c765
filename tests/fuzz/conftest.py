"""Fixtures of the fuzz tests: the control plane over a model bucket of its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import EVENT_CAMPAIGNS, BatchEnv, new_bucket, publish
from tests.utils import clear_process_caches, random_model


@pytest.fixture
def fuzz_plane(
    batch_env: BatchEnv, s3: Any, events_table: str, events_stream: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The control plane's environment over a model bucket of its own (fuzzing writes and deletes),
    with the events table and stream."""
    bucket = new_bucket(s3)
    model = random_model(num_items=60, num_users=10, dims=4, seed=3)
    for campaign, recipe in EVENT_CAMPAIGNS.items():
        publish(s3, bucket, campaign, recipe, model, campaign=campaign)
    publish(s3, bucket, "demo-batch", EVENT_CAMPAIGNS["demo-user-personalization"], model, version="v1")
    monkeypatch.setenv("MODEL_BUCKET", bucket)
    monkeypatch.setenv("EVENTS_TABLE", events_table)
    monkeypatch.setenv("EVENTS_DELIVERY_STREAM", events_stream)
    monkeypatch.setenv("EVENT_GROUP_TTL_SECONDS", "0")
    clear_process_caches()
    yield bucket
    clear_process_caches()
