"""Training's numpy path to the recent interactions writes the same files as the tuples' path."""

from __future__ import annotations

import numpy as np
import pytest

from personalize_core.modelstore import recent
from personalize_core.modelstore.attributes import RECENT_PER_EVENT_TYPE, load_extras
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.writer import prepare_version


def rows(seed: int, count: int, users: int, items: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, users, count),
        rng.integers(0, items, count),
        rng.integers(0, 50, count).astype(np.int64),  # few stamps: many ties
        rng.integers(-1, 4, count),  # -1: a row without an event type
    )


# "Click" and "click" are one type once lower-cased, as Personalize's filters read them.
EVENT_TYPES = ["click", "Watch", "Click", "purchase"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_arrays_give_the_bytes_of_the_tuples(seed: int) -> None:
    users, items, stamps, codes = rows(seed, 6_000, 40, 300)
    users[users >= 36] = 36 + seed  # a few users with far more than the kept rows per type
    # Ids whose sorted order is not their index order.
    user_ids = [f"u{(u * 7919) % 1000:04d}-{u}" for u in range(41)]
    item_ids = [f"i{i}" for i in range(300)]
    names = [*EVENT_TYPES, ""]
    events = [
        (user_ids[u], item_ids[i], float(t), names[c])
        for u, i, t, c in zip(users.tolist(), items.tolist(), stamps.tolist(), codes.tolist(), strict=True)
    ]
    expected = recent.from_events({item: n for n, item in enumerate(item_ids)}, events)
    got = recent.from_arrays(user_ids, users, items, stamps, EVENT_TYPES, codes)
    assert got.files() == expected.files()
    # The cut to the most recent applied, and "Click" joined "click".
    assert expected.items.size < users.size
    assert np.diff(expected.indptr).max() == RECENT_PER_EVENT_TYPE * 4
    assert sorted(expected.event_types) == ["", "click", "purchase", "watch"]


def test_a_version_reads_back_what_training_wrote() -> None:
    users, items, stamps, codes = rows(3, 500, 10, 20)
    user_ids = [f"u{u}" for u in range(10)]
    item_ids = [f"i{i}" for i in range(20)]
    prepared = prepare_version(
        solution="s",
        recipe=Recipe.USER_PERSONALIZATION,
        region="us-east-1",
        account="123456789012",
        item_ids=item_ids,
        item_factors=np.ones((20, 4), dtype=np.float32),
        user_ids=user_ids,
        user_factors=np.ones((10, 4), dtype=np.float32),
        extra_files=recent.from_arrays(user_ids, users, items, stamps, EVENT_TYPES, codes).files(),
    )
    table = load_extras(prepared.manifest, prepared.files.__getitem__).interactions
    assert table is not None
    newest_first = sorted(
        ((float(t), i) for u, i, t, c in zip(users, items, stamps, codes, strict=True) if u == 0 and c == 1),
        key=lambda pair: -pair[0],
    )
    assert newest_first
    assert [i for _, i in newest_first] == table.items_of("u0", ["WATCH"]).tolist()
