"""The compiled kernels on their own: the selection keeps what its bound admits, for any order of
the logits, and the item planes' scan, rows, tiles and norms agree with numpy and float64, in
every vector loop this CPU has. ``make test`` also runs this file on aarch64 (qemu-user), against
the layer's cross-compiled kernel and an aarch64 numpy: it imports nothing but the layer, numpy,
pytest and hypothesis."""

from __future__ import annotations

import platform
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from personalize_core.modelstore.item_matrix import BLOCK_ITEMS, ItemMatrix
from personalize_core.serving import native
from personalize_core.serving.scoring import high_scan_error_bound, logit_error_bound
from personalize_core.settings import get_settings

ALL_LOOPS = ("avx512", "avx2", "neon", "portable")


def available_loops() -> list[str]:
    """The loops this CPU runs, best first (["not built"] without the library: every test fails)."""
    loaded = native.kernels()
    if loaded is None:
        return ["not built"]
    names = [name for name in ALL_LOOPS if loaded.use(name)]
    loaded.use("auto")
    return names


LOOPS = available_loops()


@pytest.fixture(scope="module")
def kernels() -> native.Kernels:
    loaded = native.kernels()
    assert loaded is not None, "the selection kernel is not built: make native (needs cc)"
    return loaded


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest, kernels: native.Kernels) -> Iterator[str]:
    """Each test taking it runs once per vector loop (the portable one too)."""
    assert kernels.use(request.param), f"{request.param} cannot run here"
    yield str(request.param)
    kernels.use("auto")


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
    # The best loop is the default, the portable one is always there, NEON exactly on aarch64
    assert kernels.name == LOOPS[0]
    assert LOOPS[-1] == "portable"
    assert ("neon" in LOOPS) == (platform.machine() == "aarch64")
    assert not kernels.use("sve")
    assert kernels.name == LOOPS[0]


@pytest.mark.parametrize("order", ["random", "ascending", "descending", "equal"])
@pytest.mark.parametrize("k", [1, 25, 300])
def test_keeps_exactly_the_values_within_slack_of_the_kth(
    kernels: native.Kernels, loop: str, order: str, k: int
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


# -- the item planes ---------------------------------------------------------------------------


def awkward_matrix(rows: int, dims: int, seed: int) -> np.ndarray:
    """float32 values of every kind a scan meets: signs, magnitudes far apart, zeros, -0.0 and
    subnormals (below float32's normal range the truncation error is absolute, not relative)."""
    rng = np.random.default_rng(seed)
    matrix = (rng.normal(0, 1, (rows, dims)) * 10.0 ** rng.integers(-3, 4, (rows, dims))).astype(np.float32)
    matrix[rng.random((rows, dims)) < 0.02] = 0.0
    matrix[rng.random((rows, dims)) < 0.02] = -0.0
    matrix[rng.random((rows, dims)) < 0.02] = np.float32(3e-39)  # subnormal
    return matrix


SHAPES = [(1, 1), (7, 3), (1023, 5), (1024, 16), (2500, 64), (3073, 9)]


@pytest.mark.parametrize(("rows", "dims"), SHAPES)
def test_the_scan_is_within_its_error_bound_of_the_exact_logits(
    kernels: native.Kernels, loop: str, rows: int, dims: int
) -> None:
    # Given a matrix with a ragged last block (or one short block) and a user
    matrix = awkward_matrix(rows, dims, seed=rows)
    items = ItemMatrix.from_matrix(matrix)
    user = np.random.default_rng(dims).normal(0, 1, dims).astype(np.float32)
    exact = matrix.astype(np.float64) @ user.astype(np.float64)
    user_norm = float(np.linalg.norm(user.astype(np.float64)))
    item_norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
    for both_planes, bound in ((True, logit_error_bound), (False, high_scan_error_bound)):
        # When every logit is scanned, from both planes or from the high halves alone
        out = np.full(rows, np.nan, dtype=np.float32)
        kernels.scan(items, user, both_planes, out=out)
        # Then each is within the bound for that item's norm, as numpy's scan is
        allowance = np.array([bound(dims, user_norm, float(norm)) for norm in item_norms])
        assert (np.abs(out - exact) <= allowance).all()
        assert (np.abs(items.scan(user, both_planes) - exact) <= allowance).all()


def test_the_high_scan_truncates_toward_zero_and_reads_no_low_half(
    kernels: native.Kernels, loop: str
) -> None:
    # Given a matrix whose low halves are all ones: a scan of the high halves must not see them
    matrix = awkward_matrix(2100, 6, seed=5)
    items = ItemMatrix.from_matrix(matrix)
    items.planes[1][:] = 0xFFFF
    user = np.ones(6, dtype=np.float32)
    out = np.empty(2100, dtype=np.float32)
    kernels.scan(items, user, False, out=out)
    high = (matrix.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32).astype(np.float64)
    np.testing.assert_allclose(out, high.sum(axis=1), rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("k", [1, 25])
def test_the_scan_feeds_the_selection_block_by_block_without_the_excluded(
    kernels: native.Kernels, loop: str, k: int
) -> None:
    # Given 5,000 items, a third of them excluded
    rng = np.random.default_rng(k)
    matrix = rng.normal(0, 1, (5_000, 12)).astype(np.float32)
    items = ItemMatrix.from_matrix(matrix)
    user = rng.normal(0, 1, 12).astype(np.float32)
    allowed = rng.random(5_000) > 0.33
    # When the high-half scan feeds a selection as it goes
    selection = kernels.selection(1, k, np.array([0.05]))
    out = np.empty(5_000, dtype=np.float32)
    kernels.scan(items, user, False, out=out, selection=selection, allowed=allowed)
    _, kept, values = selection.take()
    # Then it keeps what the bound admits among the allowed items, with their scanned logits
    assert set(kept.tolist()) == expected_candidates(np.where(allowed, out, -np.inf), k, 0.05)
    np.testing.assert_array_equal(values, out[kept])


def test_rows_tiles_and_exact_logits_read_the_float32_values_back(kernels: native.Kernels) -> None:
    # Given a matrix of awkward values, in planes
    matrix = awkward_matrix(3000, 10, seed=1)
    items = ItemMatrix.from_matrix(matrix)
    rng = np.random.default_rng(2)
    wanted = rng.integers(0, 3000, 400)
    # Then rows come back bit for bit (numpy's and the kernel's)
    assert np.array_equal(kernels.rows(items, wanted).view(np.uint32), matrix[wanted].view(np.uint32))
    assert np.array_equal(items.rows(wanted).view(np.uint32), matrix[wanted].view(np.uint32))
    # ...and so do tiles of whole blocks, the last one ragged
    out = np.full((10, 2 * BLOCK_ITEMS), np.nan, dtype=np.float32)
    assert np.array_equal(kernels.columns(items, 1, 2, out), matrix[1024:3000].T)
    assert np.array_equal(items.columns(1, 2), matrix[1024:3000].T)
    # ...and exact logits are float64 dot products of the float32 values
    users = rng.normal(0, 1, (4, 10)).astype(np.float32)
    rows = rng.integers(0, 4, 400)
    expected = np.einsum("md,md->m", matrix[wanted].astype(np.float64), users[rows].astype(np.float64))
    np.testing.assert_allclose(
        kernels.exact_logits(items, users, rows, wanted), expected, rtol=1e-13, atol=1e-300
    )
    with pytest.raises(IndexError):
        kernels.rows(items, np.array([3000]))


def test_norms_find_every_row_with_a_nan_or_an_infinity(kernels: native.Kernels) -> None:
    matrix = np.random.default_rng(3).normal(0, 1, (2050, 7)).astype(np.float32)
    matrix[17, 3], matrix[1500, 0], matrix[2049, 6] = np.nan, np.inf, -np.inf
    items = ItemMatrix.from_matrix(matrix)
    for exact in (True, False):
        squared = kernels.squared_norms(items, exact)
        assert np.flatnonzero(~np.isfinite(squared)).tolist() == [17, 1500, 2049]
        np.testing.assert_allclose(squared, items.squared_norms(exact), rtol=1e-5)
    finite = np.isfinite(matrix).all(axis=1)
    reference = (matrix[finite].astype(np.float64) ** 2).sum(axis=1)
    np.testing.assert_allclose(kernels.squared_norms(items, True)[finite], reference, rtol=1e-5)


@pytest.mark.parametrize("k", [1, 25, 300])
def test_top_k_is_the_exact_top_k_at_near_ties(kernels: native.Kernels, loop: str, k: int) -> None:
    # Given 6,000 items whose best 600 bfloat16 cannot tell apart (one vector perturbed by ~2^-10
    # of each value), a float64 user vector (as context makes it), and a mask
    rng = np.random.default_rng(k)
    user = rng.normal(0, 1, 48)
    matrix = rng.normal(0, 0.3, (6_000, 48)).astype(np.float32)
    leaders = rng.choice(6_000, 600, replace=False)
    base = np.sign(user) * rng.uniform(0.5, 2, 48)
    matrix[leaders] = (base * (1 + rng.normal(0, 2.0**-10, (600, 48)))).astype(np.float32)
    items = ItemMatrix.from_matrix(matrix)
    largest = float(np.linalg.norm(matrix.astype(np.float64), axis=1).max())
    user32 = user.astype(np.float32)
    rounding = float(np.linalg.norm(user32.astype(np.float64) - user)) * largest
    exact = matrix.astype(np.float64) @ user
    for allowed in (None, rng.random(6_000) > 0.5, np.arange(6_000) < 7):
        for both_planes, bound in ((False, high_scan_error_bound), (True, logit_error_bound)):
            slack = 2 * (bound(48, float(np.linalg.norm(user32.astype(np.float64))), largest) + rounding)
            # When the top k are asked for in one call
            out = np.empty(6_000, dtype=np.float32)
            chosen, logits = kernels.top_k(items, user, k, slack, both_planes, allowed, out=out)
            # Then they are float64's top k among the allowed, ties by item, with exact logits
            eligible = np.flatnonzero(allowed) if allowed is not None else np.arange(6_000)
            expected = eligible[np.lexsort((eligible, -exact[eligible]))][:k]
            assert chosen.tolist() == expected.tolist()
            np.testing.assert_allclose(logits, exact[expected], rtol=1e-13)
            # ...and every item's scanned logit is within half the slack of its exact one
            assert (np.abs(out - exact) <= slack / 2).all()
