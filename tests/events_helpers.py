"""Helpers of the events tests: a solution published with a tracker on its dataset group."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from personalize_core.events.delivery import EventRow, read_event_rows
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.layout import FoldIn, Recipe
from personalize_core.modelstore.writer import prepare_extras, prepare_version, put_campaign, upload_version
from tests.utils import ACCOUNT, REGION, campaign_arn

#: Items 0-99: genre "comedy" (even) or "drama" (odd); price = the item's number.
ITEMS = 100
USERS = 20


@dataclass(frozen=True)
class Tracked:
    solution: str
    campaign_arn: str
    group_arn: str
    tracker_arn: str
    tracking_id: str

    @property
    def ranking_arn(self) -> str:
        """The campaign of the same solution's PERSONALIZED_RANKING version (same dataset group)."""
        return campaign_arn(f"{self.solution}-ranking")


def clustered_model(seed: int = 5, dims: int = 8) -> dict[str, Any]:
    """Two taste clusters: comedies (even items) along one direction, dramas along another."""
    rng = np.random.default_rng(seed)
    directions = np.eye(dims)[:2] * 2.0
    items = np.stack([directions[i % 2] for i in range(ITEMS)]) + rng.normal(0, 0.3, (ITEMS, dims))
    users = rng.normal(0, 0.5, (USERS, dims))
    return {
        "item_ids": [f"item-{i}" for i in range(ITEMS)],
        "item_factors": items.astype(np.float32),
        "user_ids": [f"user-{u}" for u in range(USERS)],
        "user_factors": users.astype(np.float32),
        "popularity": rng.integers(1, 1000, ITEMS).astype(np.float32),
    }


def publish_tracked(
    s3: Any,
    bucket: str,
    personalize: Any | None,
    recipe: Recipe = Recipe.USER_PERSONALIZATION,
    fold_in: FoldIn | None = None,
    model: dict[str, Any] | None = None,
) -> Tracked:
    """A solution of its own (so its dataset group, ``dataset-group/<solution>``, is the test's),
    with GENRE / PRICE items, user-0's interactions, a campaign (and a PERSONALIZED_RANKING one:
    ``ranking_arn``), and (given ``personalize``) an event tracker on its group."""
    model = model or clustered_model()
    name = f"ev-{uuid.uuid4().hex[:10]}"
    extras = prepare_extras(
        model["item_ids"],
        model["item_factors"].shape[1],
        items={
            "GENRE": ["comedy" if i % 2 == 0 else "drama" for i in range(ITEMS)],
            "PRICE": [str(i) for i in range(ITEMS)],
        },
        users=(["user-0", "user-1"], {"TIER": ["gold", "basic"]}),
        interactions=[("user-0", "item-0", 100.0, "watch"), ("user-0", "item-1", 101.0, "click")],
    )
    model_bucket = ModelBucket(s3, bucket)
    for served, campaign in ((recipe, name), (Recipe.PERSONALIZED_RANKING, f"{name}-ranking")):
        prepared = prepare_version(
            solution=name,
            recipe=served,
            region=REGION,
            account=ACCOUNT,
            item_ids=model["item_ids"],
            item_factors=model["item_factors"],
            user_ids=model["user_ids"],
            user_factors=model["user_factors"],
            popularity=model["popularity"],
            extra_files=extras,
            fold_in=fold_in,
            version=served.value.lower().replace("_", "-"),
        )
        put_campaign(model_bucket, campaign, upload_version(model_bucket, prepared))
    group = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset-group/{name}"
    tracker_arn = tracking_id = ""
    if personalize is not None:
        created = personalize.create_event_tracker(name=name, datasetGroupArn=group)
        tracker_arn, tracking_id = created["eventTrackerArn"], created["trackingId"]
    return Tracked(name, campaign_arn(name), group, tracker_arn, tracking_id)


def event(item: int | str, event_type: str = "watch", **more: Any) -> dict[str, Any]:
    item_id = item if isinstance(item, str) else f"item-{item}"
    return {"eventType": event_type, "itemId": item_id, "sentAt": time.time(), **more}


def recorded_rows(s3: Any, bucket: str, group_arn: str) -> list[EventRow]:
    """Every line Firehose wrote for ``group_arn`` under events/."""
    rows: list[EventRow] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="events/"):
        for found in page.get("Contents", []):
            data = s3.get_object(Bucket=bucket, Key=found["Key"])["Body"].read()
            rows += [r for r in read_event_rows(data) if r.dataset_group_arn == group_arn]
    return rows


def item_numbers(items: list[dict[str, Any]]) -> list[int]:
    return [int(item["itemId"].split("-")[1]) for item in items]
