"""The fold-in (Hu, Koren & Volinsky eq. 4) against implicit's own, the known-user blend, the event
rules against training's, and the JSON client's signature against botocore's."""

from __future__ import annotations

import datetime
from unittest import mock

import numpy as np
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials
from implicit.cpu.als import AlternatingLeastSquares
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from personalize_core.aws.sigv4 import Credentials, sign_v4
from personalize_core.datasets.data import Interactions
from personalize_core.events.items import RecentEvent, recent
from personalize_core.modelstore.layout import FoldIn
from personalize_core.serving.foldin import GRAM_BLOCK, confidences, fold_in, item_gram
from personalize_core.training.config import EventWeight, TrainingConfig
from personalize_core.training.trainer import fold_in_of, weigh

NOW = datetime.datetime(2026, 11, 24, 7, 30, 15, tzinfo=datetime.UTC)


def factors(items: int = 200, dims: int = 16, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.3, (items, dims)).astype(np.float32)


@pytest.mark.parametrize(("alpha", "regularization"), [(1.0, 1.0), (5.0, 0.1), (40.0, 10.0)])
def test_the_fold_in_is_implicits_recalculate_user(alpha: float, regularization: float) -> None:
    # Given a version's item factors and a user's weighed interactions
    y = factors()
    rows = np.array([3, 17, 42, 150])
    weights = np.array([1.0, 2.0, 0.5, 1.0])
    with threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(factors=y.shape[1], regularization=regularization, alpha=alpha)
        als.item_factors = y
        user_items = csr_matrix((weights, (np.zeros(4, int), rows)), shape=(1, y.shape[0]))
        expected = als.recalculate_user(0, user_items)
    # When we fold them in
    ours = fold_in(y, item_gram(y), rows, alpha * weights, regularization)
    # Then the vector is implicit's (which trained the version), to float32 precision
    np.testing.assert_allclose(ours, expected, rtol=2e-4, atol=2e-5)


def test_a_known_user_without_new_events_keeps_their_vector_and_new_ones_pull_it() -> None:
    y = factors()
    stored = np.random.default_rng(2).normal(0, 1, y.shape[1])
    gram = item_gram(y)
    # Then with no events the prior is the answer
    unchanged = fold_in(y, gram, np.empty(0, int), np.empty(0), 1.0, prior=stored)
    np.testing.assert_allclose(unchanged, stored, rtol=1e-10)
    # And events on an item raise that item's logit
    moved = fold_in(y, gram, np.array([7]), np.array([40.0]), 1.0, prior=stored)
    assert moved @ y[7] > stored @ y[7]


def test_the_gram_matrix_is_summed_over_blocks() -> None:
    y = factors(items=GRAM_BLOCK + 37, dims=4)
    np.testing.assert_allclose(item_gram(y), y.astype(np.float64).T @ y.astype(np.float64), rtol=1e-5)


def test_event_rules_weigh_as_training_does() -> None:
    # Given a solution's event rules and interactions of every kind
    config = TrainingConfig(
        events=(EventWeight("Watch", 1.0, 2.0), EventWeight("click", 0.5, None)),
        value_threshold=1.0,
    )
    types = ["watch", "CLICK", "purchase"]
    rng = np.random.default_rng(4)
    codes = rng.integers(-1, 3, 200).astype(np.int16)
    values = rng.uniform(0, 4, 200).astype(np.float32)
    values[::7] = np.nan
    data = Interactions(
        ["u"],
        ["i"],
        np.zeros(200, np.int32),
        np.zeros(200, np.int32),
        np.zeros(200, np.int64),
        types,
        codes,
        values,
    )
    # Then the weight serving gives each event is the weight training gave its row
    rules = fold_in_of(config)
    for code, value, weight in zip(
        codes.tolist(), values.tolist(), weigh(data, config).tolist(), strict=True
    ):
        kind = types[code] if code >= 0 else ""
        assert rules.weight(kind, None if np.isnan(value) else value) == pytest.approx(weight), (kind, value)
    only = fold_in_of(TrainingConfig(event_type="Purchase"))
    assert (only.weight("purchase", None), only.weight("watch", None)) == (1.0, 0.0)


def test_confidences_sum_an_items_events_and_skip_what_cannot_count() -> None:
    index = {"a": 0, "b": 1}
    events = [
        RecentEvent("1", "watch", "a", 10.0, None, 100.0),
        RecentEvent("2", "watch", "a", 11.0, None, 101.0),
        RecentEvent("3", "watch", "b", 12.0, None, 50.0),  # received before the version: not counted
        RecentEvent("4", "watch", "zzz", 13.0, None, 102.0),  # an item the version does not know
        RecentEvent("5", "watch", None, 14.0, None, 103.0),  # no item
    ]
    rows, confidence = confidences(events, index, FoldIn(alpha=3.0), since=60.0)
    assert (rows.tolist(), confidence.tolist()) == ([0], [6.0])


def test_recent_keeps_the_100_newest_of_each_event_type() -> None:
    events = [
        RecentEvent(f"w{i}", "Watch" if i % 2 else "watch", "a", float(i), None, 0.0) for i in range(250)
    ]
    events += [RecentEvent("c", "click", "a", 0.0, None, 0.0)]
    kept = recent(events)
    assert [e.event_id for e in kept if e.event_type.lower() == "watch"] == [
        f"w{i}" for i in range(249, 149, -1)
    ]
    assert kept[-1].event_id == "c"


def test_json_requests_are_signed_as_botocore_signs_them() -> None:
    # Given a DynamoDB request as the JSON client sends it
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "token/+=")
    body = b'{"TableName":"events","Key":{"pk":{"S":"E#g#u"}},"ConsistentRead":true}'
    headers = {"content-type": "application/x-amz-json-1.0", "x-amz-target": "DynamoDB_20120810.GetItem"}
    ours = sign_v4(
        "POST",
        "dynamodb.eu-west-3.amazonaws.com",
        "/",
        headers,
        credentials,
        "eu-west-3",
        NOW,
        "dynamodb",
        body,
    )
    # When botocore signs the same request
    request = AWSRequest(
        method="POST", url="https://dynamodb.eu-west-3.amazonaws.com/", data=body, headers=headers
    )
    signer = SigV4Auth(BotocoreCredentials(*credentials), "dynamodb", "eu-west-3")
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        signer.add_auth(request)
    # Then the Authorization headers are byte for byte the same
    assert ours["authorization"] == request.headers["Authorization"]
    assert "x-amz-content-sha256" not in ours
