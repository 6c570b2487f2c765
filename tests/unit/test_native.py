"""The compiled candidate selection on its own: what it keeps, for any order of the logits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from personalize_core.serving import native
from personalize_core.settings import get_settings


@pytest.fixture(scope="module")
def kernels() -> native.Kernels:
    loaded = native.kernels()
    assert loaded is not None, "the selection kernel is not built: make native (needs cc)"
    return loaded


def expected_candidates(values: np.ndarray, k: int, slack: float) -> set[int]:
    """Every value at or above (k-th largest finite value - slack), the bound rounded down to float32."""
    finite = values[np.isfinite(values)]
    if finite.size < k:
        return set(np.flatnonzero(np.isfinite(values)).tolist())
    kth = float(np.sort(finite)[-k])
    bound = np.float32(kth - slack)
    if float(bound) > kth - slack:
        bound = np.nextafter(bound, np.float32(-np.inf))
    return set(np.flatnonzero(values >= bound).tolist())


def select(kernels: native.Kernels, rows: np.ndarray, k: int, slack: float, tile: int) -> list[set[int]]:
    selection = kernels.selection(rows.shape[0], k, np.full(rows.shape[0], slack))
    for first in range(0, rows.shape[1], tile):
        selection.feed(rows[:, first : first + tile], first)
    row_of, items, values = selection.take()
    np.testing.assert_array_equal(values, rows[row_of, items])
    return [set(items[row_of == r].tolist()) for r in range(rows.shape[0])]


def test_the_kernel_reports_the_loop_it_runs(kernels: native.Kernels) -> None:
    assert kernels.name in {"avx512", "avx2", "portable"}


@pytest.mark.parametrize("order", ["random", "ascending", "descending", "equal"])
@pytest.mark.parametrize("k", [1, 25, 300])
def test_keeps_exactly_the_values_within_slack_of_the_kth(
    kernels: native.Kernels, order: str, k: int
) -> None:
    # Given logits in an adversarial order: ascending raises the bound at every block, equal
    # values are all within slack of the k-th
    rng = np.random.default_rng(k)
    values = rng.normal(0, 1, (3, 20_011)).astype(np.float32)
    if order == "ascending":
        values.sort(axis=1)
    elif order == "descending":
        values = -np.sort(values, axis=1)
    elif order == "equal":
        values[:] = np.float32(0.5)
    # When they are fed in tiles (a ragged last tile, a row stride wider than the tile)
    got = select(kernels, values, k, 1e-3, tile=4096)
    # Then each row keeps exactly what the bound admits
    for row, kept in zip(values, got, strict=True):
        assert kept == expected_candidates(row, k, 1e-3)


def test_excluded_items_are_never_kept_even_when_fewer_than_k_remain(kernels: native.Kernels) -> None:
    values = np.full((1, 5_000), -np.inf, dtype=np.float32)
    values[0, [3, 4_999, 700]] = [1.0, -2.0, 0.5]
    assert select(kernels, values, 25, 0.0, tile=5_000) == [{3, 700, 4_999}]
    assert select(kernels, np.full((2, 100), -np.inf, dtype=np.float32), 1, 0.0, tile=64) == [set(), set()]


@settings(max_examples=150, deadline=None)
@given(
    values=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 3), st.integers(1, 700)),
        elements=st.one_of(st.floats(-1e3, 1e3, width=32), st.sampled_from([-np.inf, 0.0, 1.0, 1.0000001])),
    ),
    k=st.integers(1, 80),
    slack=st.sampled_from([0.0, 1e-6, 0.01, 5.0]),
    tile=st.integers(1, 300),
)
def test_any_logits_any_tiling(
    kernels: native.Kernels, values: np.ndarray, k: int, slack: float, tile: int
) -> None:
    got = select(kernels, values, k, slack, tile)
    for row, kept in zip(values, got, strict=True):
        assert kept == expected_candidates(row, k, slack)


@pytest.mark.parametrize("layout", ["row-major", "dimension-major"])
def test_exact_logits_are_float64_dot_products(kernels: native.Kernels, layout: str) -> None:
    rng = np.random.default_rng(4)
    items = rng.normal(0, 1, (1_000, 48)).astype(np.float32)
    served = np.ascontiguousarray(items.T).T if layout == "dimension-major" else items
    users = rng.normal(0, 1, (5, 48)).astype(np.float32)
    rows, cols = rng.integers(0, 5, 300), rng.integers(0, 1_000, 300)
    got = kernels.exact_logits(served, users, rows, cols)
    expected = np.einsum("md,md->m", items[cols].astype(np.float64), users[rows].astype(np.float64))
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-12)


def test_misuse_is_refused(kernels: native.Kernels) -> None:
    selection = kernels.selection(2, 3, np.zeros(2))
    with pytest.raises(ValueError, match="float32"):
        selection.feed(np.zeros((2, 10)), 0)
    with pytest.raises(ValueError, match="contiguous"):
        selection.feed(np.zeros((2, 10), dtype=np.float32)[:, ::2], 0)
    selection.feed(np.ones((2, 10), dtype=np.float32), 0)
    assert len(selection.take()[0]) == 20
    with pytest.raises(RuntimeError, match="already taken"):
        selection.take()
    with pytest.raises(ValueError, match="one slack per row"):
        kernels.selection(2, 3, np.zeros(3))


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    def read_again() -> None:
        get_settings.cache_clear()
        native.kernels.cache_clear()

    monkeypatch.setenv(native.DISABLE_VARIABLE, "0")
    read_again()
    try:
        assert native.kernels() is None
    finally:
        monkeypatch.delenv(native.DISABLE_VARIABLE)
        read_again()
    assert native.kernels() is not None


def test_best_ranks_each_rows_candidates_on_exact_logits_ties_by_item(kernels: native.Kernels) -> None:
    # Given candidates grouped by row, with a tie (items 9 and 4 at 2.0) in row 0
    rows = np.array([0, 0, 0, 0, 1, 1, 1])
    items = np.array([9, 4, 7, 1, 3, 8, 5])
    exact = np.array([2.0, 2.0, 3.0, -1.0, 0.5, 0.25, 0.75])
    # When the best 3 of each row are asked for
    positions = kernels.best(rows, items, exact, 2, 3)
    # Then larger logits come first and the tie goes to the smaller item
    assert items[positions].tolist() == [[7, 4, 9], [5, 3, 8]]
    with pytest.raises(ValueError, match="at least k"):
        kernels.best(rows, items, exact, 2, 4)
    with pytest.raises(ValueError, match="at least k"):
        kernels.best(rows, items, exact, 1, 3)  # a row the caller did not count
