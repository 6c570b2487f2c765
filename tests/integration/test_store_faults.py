"""S3 faults under the model store's own S3 reader: retried, survived, or a clear 503."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from personalize_core.errors import ModelUnavailableError
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.objects import S3Objects
from personalize_core.modelstore.store import ModelStore
from personalize_core.settings import get_settings
from tests.conftest import publish
from tests.faults import Fault, FaultProxy
from tests.utils import campaign_arn, random_model


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def proxy(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    # Given the store's own S3 client (production settings path) talking to S3 through a fault proxy
    server = FaultProxy(moto_url).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.url)
    monkeypatch.setenv("S3_READ_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("S3_CONNECT_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("S3_MAX_ATTEMPTS", "4")
    get_settings.cache_clear()
    yield server
    server.stop()
    get_settings.cache_clear()


@pytest.fixture
def store_and_clock(proxy: FaultProxy, s3: Any, bucket: str) -> tuple[ModelStore, Clock]:
    publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, random_model(50, 5, 4), campaign="c")
    clock = Clock()
    return ModelStore(S3Objects(bucket), pointer_ttl_seconds=10, clock=clock), clock


def gets(proxy: FaultProxy, suffix: str) -> int:
    return sum(1 for method, path in proxy.seen if method == "GET" and path.split("?")[0].endswith(suffix))


@pytest.mark.parametrize(
    "fault",
    [
        Fault(r"item_factors\.npy", status=503, times=2),
        Fault(r"item_factors\.npy", status=500, times=1),
        Fault(r"user_pages\.index\.npy", status=None, delay_seconds=1.5, times=1),  # past the read timeout
        Fault(r"manifest\.json", status=None, drop_connection=True, times=1),
    ],
    ids=["503-twice", "500-once", "read-timeout", "dropped-connection"],
)
def test_transient_faults_are_retried_with_backoff(
    proxy: FaultProxy, store_and_clock: Any, fault: Fault
) -> None:
    store, _ = store_and_clock
    proxy.add(fault)
    # When the first request loads the model through the faults
    _, model = store.campaign(campaign_arn("c"))
    # Then it loaded, after retrying the faulty object
    assert model.num_items == 50
    assert fault.hits == fault.times
    suffix = fault.path_pattern.replace("\\", "")
    assert gets(proxy, suffix) == fault.times + 1


def test_a_persistent_fault_is_a_clear_503_and_recovers(proxy: FaultProxy, store_and_clock: Any) -> None:
    store, clock = store_and_clock
    fault = proxy.add(Fault(r"item_factors\.npy", status=503, times=1000))
    # When S3 keeps failing, Then the first load fails with a clear, retryable error (not a stack trace)
    with pytest.raises(ModelUnavailableError, match="cannot be loaded") as caught:
        store.campaign(campaign_arn("c"))
    assert caught.value.status == 503
    attempts = gets(proxy, "item_factors.npy")
    assert attempts == 4  # S3_MAX_ATTEMPTS
    # ...and it is not hammered on every request while it is down
    with pytest.raises(ModelUnavailableError):
        store.campaign(campaign_arn("c"))
    assert gets(proxy, "item_factors.npy") == attempts
    # When S3 recovers and the refusal has expired, Then the model loads
    fault.times = 0
    clock.now = 10
    assert store.campaign(campaign_arn("c"))[1].num_items == 50


def test_pointer_refresh_fault_keeps_serving_the_cached_campaign(
    proxy: FaultProxy, store_and_clock: Any
) -> None:
    store, clock = store_and_clock
    first = store.campaign(campaign_arn("c"))[1]
    proxy.add(Fault(r"campaigns/c\.json", status=503, times=1000))
    clock.now = 10
    # The pointer cannot be re-read: the cached one keeps serving
    assert store.campaign(campaign_arn("c"))[1] is first
    # A cold store with the same fault has nothing to serve: 503, not 404 and not a crash
    cold = ModelStore(S3Objects(store.objects.bucket))
    with pytest.raises(ModelUnavailableError, match="cannot be read"):
        cold.campaign(campaign_arn("c"))
