"""RELATED_ITEMS by co-occurrence against a plain computation from the interactions themselves."""

from __future__ import annotations

import numpy as np
import pytest

from personalize_core.errors import ArtifactError
from personalize_core.modelstore.co_occurrence import (
    ITEM_INDPTR,
    USER_ITEMS,
    CoOccurrence,
    encode_co_occurrence,
    load_co_occurrence,
)
from personalize_core.modelstore.model import popularity_order
from personalize_core.modelstore.npy import encode_npy, npy_header
from personalize_core.serving.related import co_occurring_items


class Files:
    """The encoded files, read back as a version's reader reads them."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def has(self, name: str) -> bool:
        return name in self.files

    def array(self, name: str, kind: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        header = npy_header(self.files[name])
        assert header is not None
        array = np.frombuffer(self.files[name], dtype=header.dtype, offset=header.offset).reshape(
            header.shape
        )
        if array.dtype.kind != kind or (shape is not None and array.shape != shape):
            raise ArtifactError(f"{name} is {array.dtype}{list(array.shape)}")  # as VersionReader says
        return array


def reference(
    users: np.ndarray,
    items: np.ndarray,
    num_items: int,
    popularity: np.ndarray,
    item: int,
    k: int,
    allowed: np.ndarray | None = None,
) -> list[int]:
    """Cosine of the user sets, ties to the more popular item then catalog order, then popular items."""
    user_sets = [set(users[items == i].tolist()) for i in range(num_items)]
    query = user_sets[item]
    candidates = [j for j in range(num_items) if j != item and (allowed is None or allowed[j])]
    similarity = {
        j: len(user_sets[j] & query) / np.sqrt(len(user_sets[j]) * len(query))
        if user_sets[j] and query
        else 0.0
        for j in candidates
    }
    return sorted(candidates, key=lambda j: (-similarity[j], -popularity[j], j))[:k]


@pytest.mark.parametrize("seed", range(6))
def test_the_items_sharing_most_users_come_first(seed: int) -> None:
    # Given random interactions, with repeats (a user interacting twice with an item counts once)
    rng = np.random.default_rng(seed)
    num_users, num_items = 60, 40
    users = rng.integers(0, num_users, 400)
    items = np.minimum(rng.zipf(1.5, 400) - 1, num_items - 1)
    co = load_co_occurrence(Files(encode_co_occurrence(users, items, num_users, num_items)), num_items)
    assert co is not None
    popularity = np.bincount(items, minlength=num_items).astype(np.float32)
    order = popularity_order(popularity)
    allowed = rng.random(num_items) < 0.7
    for item in range(0, num_items, 7):
        # Then every answer is the reference's, with and without a filter, short and long
        for k in (1, 5, num_items):
            assert co_occurring_items(co, order, item, k).tolist() == reference(
                users, items, num_items, popularity, item, k
            )
            assert co_occurring_items(co, order, item, k, allowed).tolist() == reference(
                users, items, num_items, popularity, item, k, allowed
            )


def test_an_item_nobody_shares_gets_popular_items() -> None:
    # Given item 3, whose only user touched nothing else
    users = np.array([0, 0, 1, 1, 2, 5])
    items = np.array([0, 1, 0, 2, 1, 3])
    co = load_co_occurrence(Files(encode_co_occurrence(users, items, 6, 4)), 4)
    assert co is not None
    order = popularity_order(np.array([2, 2, 1, 1], dtype=np.float32))
    # Then its related items are the popular ones, itself excluded
    assert co_occurring_items(co, order, 3, 2).tolist() == [0, 1]
    # And item 0 (two users) shares one user with item 1 (two users: cosine 1/2) and one with item 2
    # (one user: cosine 1/sqrt(2)), so item 2 is the more related; item 3 shares none and follows
    assert co_occurring_items(co, order, 0, 3).tolist() == [2, 1, 3]


def test_a_corrupt_index_is_refused() -> None:
    files = encode_co_occurrence(np.array([0, 1]), np.array([0, 1]), 2, 2)
    bad = dict(files)
    bad[USER_ITEMS] = encode_npy(np.array([0, 7], dtype=np.int32))  # an item the version lacks
    with pytest.raises(ArtifactError, match="valid CSR"):
        load_co_occurrence(Files(bad), 2)
    with pytest.raises(ArtifactError, match=ITEM_INDPTR):
        load_co_occurrence(Files(files), 3)  # the index is for 2 items, the version has 3
    assert isinstance(load_co_occurrence(Files(files), 2), CoOccurrence)
