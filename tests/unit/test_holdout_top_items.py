"""The holdout's top items: the compiled selection and the numpy fallback give the same answer."""

from __future__ import annotations

import numpy as np
import pytest

from personalize_core.serving import native
from personalize_core.training.evaluation import top_items, top_items_numpy


@pytest.mark.parametrize(("items", "k"), [(5_000, 25), (30, 25), (10, 25)])
def test_the_kernels_and_numpy_agree(items: int, k: int) -> None:
    assert native.kernels() is not None, "make test builds the compiled kernels"
    rng = np.random.default_rng(items)
    scores = rng.normal(size=(300, items)).astype(np.float32)
    scores[7, :] = np.round(scores[7, :])  # ties: ranked by item
    # Every item of row 3 but 5 excluded (fewer than k left: -1 after them), a few of the others'.
    exclude_rows = np.r_[np.full(items - 5, 3), rng.integers(0, 300, 500)]
    exclude_items = np.r_[np.arange(5, items), rng.integers(0, items, 500)]
    got = top_items(scores, exclude_rows, exclude_items, k)
    logits = scores.copy()
    logits[exclude_rows, exclude_items] = -np.inf
    expected = top_items_numpy(logits, min(k, items))
    excluded = set(zip(exclude_rows.tolist(), exclude_items.tolist(), strict=True))
    assert got.shape == (300, min(k, items))
    assert all((r, i) not in excluded for r, row in enumerate(got.tolist()) for i in row if i >= 0)
    assert got[3].tolist()[:5] == sorted(range(5), key=lambda i: (-scores[3, i], i))
    assert (got[3, 5:] == -1).all()
    # Tied rows may pick different tied items at the k-th place; the rest agree exactly.
    untied = np.ones(300, dtype=bool)
    untied[7] = False
    np.testing.assert_array_equal(got[untied], expected[untied])
    np.testing.assert_array_equal(scores[7, got[7]], scores[7, expected[7]])
