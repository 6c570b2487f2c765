"""Personalize's metric names, computed on hand-checked cases, and its holdout split."""

from __future__ import annotations

import math

import numpy as np
import pytest

from personalize_core.training.evaluation import METRIC_NAMES, metrics, split


def test_metrics_of_one_user_are_the_textbook_values() -> None:
    # Given a top list whose 2nd and 4th items are the held-out ones
    recommended = [np.array([7, 3, 8, 5, *range(10, 31)])]
    found = metrics(recommended, [{3, 5}], catalog=100)
    # Then precision, MRR and NDCG are what their definitions give
    assert set(found) == set(METRIC_NAMES)
    assert found["precision_at_5"] == pytest.approx(2 / 5)
    assert found["precision_at_25"] == pytest.approx(2 / 25)
    assert found["mean_reciprocal_rank_at_25"] == pytest.approx(1 / 2)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3)
    assert found["normalized_discounted_cumulative_gain_at_5"] == pytest.approx(dcg / ideal, abs=1e-6)
    assert found["coverage"] == pytest.approx(25 / 100)


def test_no_hit_scores_zero_and_missing_slots_count_nothing() -> None:
    found = metrics([np.array([1, 2, -1, -1])], [{9}], catalog=10)
    assert found["precision_at_10"] == 0
    assert found["mean_reciprocal_rank_at_25"] == 0
    assert found["coverage"] == pytest.approx(2 / 10)


def test_the_split_holds_out_each_test_users_newest_tenth() -> None:
    # Given 200 users with 20 interactions each, at increasing times
    user_ids = [f"user-{u}" for u in range(200)]
    users = np.repeat(np.arange(200), 20)
    stamps = np.tile(np.arange(20), 200)[::-1].copy()  # newest first in row order
    parts = split(user_ids, users, stamps)
    tested = np.unique(users[~parts.train])
    # Then about one user in ten is tested, and of each exactly the 2 newest rows are held out
    assert 5 <= tested.size <= 40
    assert set(parts.test_users.tolist()) == set(tested.tolist())
    for user in tested.tolist():
        held = stamps[parts.holdout & (users == user)]
        assert sorted(held.tolist()) == [18, 19]
    assert not (parts.train & (parts.holdout | parts.test_input)).any()
