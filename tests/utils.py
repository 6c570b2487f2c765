"""Helpers shared by the tests: handlers loaded as SAM loads them, events from files, a small model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from lambda_personalize.lambda_context import LocalLambdaContext
from lambda_personalize.local_runtime import load_handler_module
from personalize_core.batch import get_worker
from personalize_core.control.batch_jobs import get_batch_jobs
from personalize_core.control.records import get_records
from personalize_core.control.workspace import get_workspace
from personalize_core.edge.authorization import get_authorizer
from personalize_core.events.delivery import get_delivery
from personalize_core.events.recording import get_recorder
from personalize_core.events.table import get_events_table
from personalize_core.modelstore.bucket import get_model_bucket
from personalize_core.modelstore.objects import Received, S3Objects
from personalize_core.modelstore.store import get_store
from personalize_core.serving.live import get_live
from personalize_core.settings import get_settings
from personalize_core.training.worker import get_training_worker

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account


def clear_process_caches() -> None:
    """Forget the process-wide settings, clients and stores (a test changed the environment)."""
    for cached in (
        get_settings,
        get_store,
        get_model_bucket,
        get_batch_jobs,
        get_worker,
        get_records,
        get_workspace,
        get_training_worker,
        get_events_table,
        get_delivery,
        get_live,
        get_recorder,
        get_authorizer,
    ):
        cached.cache_clear()


@cache
def load_function(name: str) -> ModuleType:
    """functions/<name>/app.py as its own module, loaded as the local runtime loads it (one instance)."""
    return load_handler_module(ROOT / "functions" / name, "app")


def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = load_function(function).lambda_handler(
        event, LocalLambdaContext(function_name=function)
    )
    return result


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def campaign_arn(name: str) -> str:
    return f"arn:aws:personalize:{REGION}:{ACCOUNT}:campaign/{name}"


def random_model(num_items: int, num_users: int, dims: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "item_ids": [f"item-{i}" for i in range(num_items)],
        "user_ids": [f"user-{u}" for u in range(num_users)],
        "item_factors": rng.normal(0, 0.5, (num_items, dims)).astype(np.float32),
        "user_factors": rng.normal(0, 0.5, (num_users, dims)).astype(np.float32),
        "popularity": rng.integers(0, 1000, num_items).astype(np.float32),
    }


def softmax_reference(item_factors: np.ndarray, user_vector: np.ndarray) -> np.ndarray:
    """The seeds' formula, computed plainly in float64: exp(u·i) / Σ_j exp(u·j)."""
    logits = item_factors.astype(np.float64) @ user_vector.astype(np.float64)
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def response_headers(result: dict[str, Any]) -> dict[str, str]:
    """A proxy result's headers, whether given as ``headers`` or ``multiValueHeaders``."""
    headers = dict(result.get("headers") or {})
    headers.update({k: ",".join(v) for k, v in (result.get("multiValueHeaders") or {}).items()})
    return headers


class CountingObjects(S3Objects):
    """The model store's S3 reads, recorded (real S3 underneath): what a load or a request fetched."""

    def __init__(self, bucket: str) -> None:
        super().__init__(bucket)
        self.reads: list[str] = []

    def read(self, key: str) -> bytes:
        self.reads.append(key)
        return super().read(key)

    def read_chunks(self, key: str, chunk_size: int = 4 << 20) -> Iterator[bytes]:
        self.reads.append(key)
        return super().read_chunks(key, chunk_size)

    def receive(self, key: str, size: int) -> Received:
        self.reads.append(key)
        return super().receive(key, size)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        self.reads.append(key)
        return super().read_range(key, start, length)
