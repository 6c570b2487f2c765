"""The scorer against an independent, plain computation of the seeds' formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from personalize_core.modelstore.item_matrix import ItemMatrix
from personalize_core.serving import native
from personalize_core.serving.batch_scoring import batch_user_top_k
from personalize_core.serving.scoring import (
    high_scan_error_bound,
    log_normalisers,
    logsumexp,
    max_row_norm,
    popular_top_k,
    rank_items,
    related_top_k,
    user_top_k,
)
from tests.utils import softmax_reference


@pytest.fixture(autouse=True, params=["native", "numpy"])
def selection_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs twice: with the compiled candidate selection and with numpy's."""
    if request.param == "numpy":
        monkeypatch.setattr(native, "kernels", lambda: None)
    else:
        assert native.kernels() is not None, "the selection kernel is not built: make native (needs cc)"
    return str(request.param)


def test_user_scores_on_a_hand_checkable_catalog() -> None:
    # Given three items whose dot products with the user are 1, 0 and 2
    items = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]], dtype=np.float32)
    user = np.array([1.0, 0.0], dtype=np.float32)
    # When the top 3 are asked for
    chosen, scores = user_top_k(items, user, 3)
    # Then the order follows the dot products and scores are exp(x) / (e^1 + e^0 + e^2)
    denominator = math.e + 1 + math.e**2
    assert chosen.tolist() == [2, 0, 1]
    assert scores == pytest.approx(
        [math.e**2 / denominator, math.e / denominator, 1 / denominator], rel=1e-12
    )


@pytest.mark.parametrize(
    ("num_items", "dims", "k", "seed"),
    [(50, 4, 5, 1), (1000, 32, 25, 2), (5000, 64, 500, 3), (30, 8, 100, 4)],
)
def test_user_scores_match_the_formula_over_the_whole_catalog(
    num_items: int, dims: int, k: int, seed: int
) -> None:
    # Given a random catalog and user
    rng = np.random.default_rng(seed)
    items = rng.normal(0, 1, (num_items, dims)).astype(np.float32)
    user = rng.normal(0, 1, dims).astype(np.float32)
    # When the top k are chosen
    chosen, scores = user_top_k(items, user, k)
    # Then they are the formula's top k, with the formula's scores (within 1e-6 relative)
    reference = softmax_reference(items, user)
    expected = np.argsort(-reference, kind="stable")[: min(k, num_items)]
    assert chosen.tolist() == expected.tolist()
    np.testing.assert_allclose(scores, reference[expected], rtol=1e-6)
    assert np.all(np.diff(scores) <= 0)


def test_scores_sum_to_one_over_the_catalog() -> None:
    rng = np.random.default_rng(5)
    items = rng.normal(0, 1, (400, 8)).astype(np.float32)
    user = rng.normal(0, 1, 8).astype(np.float32)
    _, scores = user_top_k(items, user, 400)
    assert scores.sum() == pytest.approx(1.0, rel=1e-6)


def test_huge_dot_products_do_not_overflow() -> None:
    # Given dot products of ~1000, where a naive exp() overflows to inf
    items = np.array([[1000.0], [999.0], [-1000.0]], dtype=np.float32)
    user = np.array([1.0], dtype=np.float32)
    chosen, scores = user_top_k(items, user, 3)
    # Then scores are finite and correct: softmax(1000, 999, -1000)
    assert chosen.tolist() == [0, 1, 2]
    assert scores[:2] == pytest.approx([1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))], rel=1e-12)
    assert np.isfinite(scores).all()
    assert logsumexp(np.array([1000.0, 1000.0])) == pytest.approx(1000 + math.log(2))


def test_allowed_mask_restricts_candidates_but_not_the_normaliser() -> None:
    items = np.array([[3.0], [2.0], [1.0]], dtype=np.float32)
    user = np.array([1.0], dtype=np.float32)
    chosen, scores = user_top_k(items, user, 3, allowed=np.array([False, True, True]))
    reference = softmax_reference(items, user)
    assert chosen.tolist() == [1, 2]
    np.testing.assert_allclose(scores, reference[[1, 2]], rtol=1e-9)


def test_ranking_scores_are_a_softmax_over_the_input_list_only() -> None:
    # Given a catalog of 100 items and a list of 4 of them
    rng = np.random.default_rng(9)
    items = rng.normal(0, 1, (100, 6)).astype(np.float32)
    user = rng.normal(0, 1, 6).astype(np.float32)
    listed = np.array([40, 3, 77, 12])
    # When they are ranked
    ranked, scores = rank_items(items, user, listed)
    # Then scores are the formula over the 4 items, summing to 1, best first
    reference = softmax_reference(items[listed], user)
    order = np.argsort(-reference, kind="stable")
    assert ranked.tolist() == listed[order].tolist()
    np.testing.assert_allclose(scores, reference[order], rtol=1e-9)
    assert scores.sum() == pytest.approx(1.0, rel=1e-12)


def test_related_items_break_ties_by_catalog_order_and_never_return_excluded() -> None:
    # Given items 1, 2 and 4 equally similar to item 0, item 3 filtered out
    items = np.array([[1, 0], [2, 0], [3, 0], [4, 0], [5, 0], [0, 1]], dtype=np.float32)
    norms = np.linalg.norm(items, axis=1).astype(np.float32)
    allowed = np.array([True, True, True, False, True, True])
    # Then ties come in catalog order, the excluded item never, and k past the catalog is fine
    assert related_top_k(items, norms, 0, 2, allowed).tolist() == [1, 2]
    assert related_top_k(items, norms, 0, 10, allowed).tolist() == [1, 2, 4, 5]
    assert related_top_k(items, norms, 0, 0).tolist() == []


def _cosines(items: np.ndarray, item: int) -> np.ndarray:
    exact = items.astype(np.float64)
    cosines = exact @ exact[item] / (np.linalg.norm(exact, axis=1) * np.linalg.norm(exact[item]))
    cosines[item] = -np.inf
    return cosines


@pytest.mark.parametrize("seed", range(12))
def test_related_items_are_exact_at_near_ties(seed: int) -> None:
    # Given 40 items pointing almost the way item 0 does: their cosines differ by ~1e-7, below
    # float32's resolution
    rng = np.random.default_rng(seed)
    items = rng.normal(0, 1, (300, 64)).astype(np.float32)
    for j in range(1, 40):
        items[j] = (items[0] * rng.uniform(0.5, 2) + rng.normal(0, 1e-3, 64)).astype(np.float32)
    norms = np.linalg.norm(items, axis=1).astype(np.float32)
    # When the 10 most related are asked for
    related = related_top_k(items, norms, 0, 10)
    # Then they are the exact cosine's top 10, in its order
    expected = np.lexsort((np.arange(300), -_cosines(items, 0)))[:10]
    assert related.tolist() == expected.tolist()


def test_scores_never_exceed_one_when_one_item_dominates() -> None:
    # Given catalogs where one item's logit dwarfs the others' (its score rounds to 1)
    rng = np.random.default_rng(0)
    saturated = 0
    for _ in range(300):
        items = rng.normal(0, 1, (int(rng.integers(2, 50)), 8)).astype(np.float32)
        items[0] *= rng.uniform(5, 60)
        user = rng.normal(0, 1, 8).astype(np.float32)
        lognorm = float(log_normalisers(items, user[None])[0])
        # Then every path keeps scores in [0, 1]: the catalog's normaliser, the published one,
        # the ranking's, and the batch kernel's
        for scores in (
            user_top_k(items, user, 1)[1],
            user_top_k(items, user, 1, log_normaliser=lognorm)[1],
            rank_items(items, user, np.arange(len(items)))[1],
            batch_user_top_k(items, user[None], 1, log_normalisers=np.array([lognorm]))[1][0],
        ):
            assert 0.0 <= scores.max() <= 1.0
            saturated += scores.max() == 1.0
    assert saturated > 0  # the cases where rounding pushed a score past 1 were exercised


def test_a_float64_user_vector_is_scored_at_its_own_precision() -> None:
    # Given a user vector that float32 cannot hold exactly (a context shift makes one)
    rng = np.random.default_rng(11)
    items = rng.normal(0, 1, (2000, 16)).astype(np.float32)
    user = rng.normal(0, 1, 16) + 1e-9
    # When its top 25 are scored
    chosen, scores = user_top_k(items, user, 25)
    # Then they are the formula's for that vector: rounding it to float32 put every score ~3e-7 off;
    # what is left is the float32 terms of the catalog's tail in the normaliser (~1e-9 here)
    logits = items.astype(np.float64) @ user
    reference = np.exp(logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum())))
    expected = np.lexsort((np.arange(2000), -logits))[:25]
    assert chosen.tolist() == expected.tolist()
    np.testing.assert_allclose(scores, reference[expected], rtol=2e-8)
    ranked, ranked_scores = rank_items(items, user, expected[::-1].copy())
    assert ranked.tolist() == expected.tolist()
    np.testing.assert_allclose(
        ranked_scores, np.exp(logits[expected] - np.log(np.exp(logits[expected]).sum())), rtol=1e-12
    )


def test_related_items_use_cosine_similarity_and_exclude_the_query_item() -> None:
    # Given item 0 = (1, 0); item 1 points the same way but is long; item 2 is orthogonal; item 3 is close
    items = np.array([[1, 0], [10, 0], [0, 1], [1, 0.2], [-1, 0]], dtype=np.float32)
    norms = np.linalg.norm(items, axis=1).astype(np.float32)
    # When the items related to item 0 are asked for
    related = related_top_k(items, norms, 0, 10)
    # Then direction matters, not length, and item 0 is not among them
    assert related.tolist() == [1, 3, 2, 4]


def test_popular_items_in_precomputed_order_with_a_mask() -> None:
    order = np.array([3, 1, 0, 2])
    assert popular_top_k(order, 2).tolist() == [3, 1]
    assert popular_top_k(order, 3, allowed=np.array([True, False, True, False])).tolist() == [0, 2]


@pytest.mark.parametrize(
    ("num_items", "users", "k", "block", "threads"),
    [(500, 37, 25, 8, 1), (500, 37, 25, 8, 3), (40, 5, 100, 256, 2), (1000, 3, 1, 2, None)],
)
def test_batch_top_k_equals_the_single_user_kernel(
    num_items: int, users: int, k: int, block: int, threads: int | None
) -> None:
    # Given a catalog and a batch of users
    rng = np.random.default_rng(num_items)
    items = rng.normal(0, 1, (num_items, 16)).astype(np.float32)
    vectors = rng.normal(0, 1, (users, 16)).astype(np.float32)
    # When they are scored in blocks (threads: blocks spread over threads; None: as many as BLAS uses)
    indices, scores = batch_user_top_k(items, vectors, k, block=block, threads=threads)
    # Then each row is what the real-time kernel answers for that user
    assert indices.shape == scores.shape == (users, min(k, num_items))
    for row in range(users):
        expected_items, expected_scores = user_top_k(items, vectors[row], k)
        assert indices[row].tolist() == expected_items.tolist()
        np.testing.assert_allclose(scores[row], expected_scores, rtol=1e-6)


def dimension_major(matrix: np.ndarray) -> np.ndarray:
    """The layout the model store serves: [d, items] in memory, seen as an [items, d] matrix."""
    return np.ascontiguousarray(matrix.T).T


def plain_top_k(items: np.ndarray, user: np.ndarray, k: int, allowed: np.ndarray | None = None):
    reference = softmax_reference(items, user)
    ranked = np.argsort(-reference, kind="stable")
    if allowed is not None:
        ranked = ranked[allowed[ranked]]
    return ranked[:k], reference[ranked[:k]]


@pytest.mark.parametrize("layout", ["row-major", "dimension-major"])
@pytest.mark.parametrize("precomputed", [False, True])
@pytest.mark.parametrize("k", [1, 25, 500])
def test_large_catalog_kernel_matches_the_formula(layout: str, precomputed: bool, k: int) -> None:
    # Given a catalog past the small-catalog path (the group-maximum threshold is used)
    rng = np.random.default_rng(k)
    items = rng.normal(0, 0.4, (120_000, 16)).astype(np.float32)
    users = rng.normal(0, 0.4, (3, 16)).astype(np.float32)
    served = dimension_major(items) if layout == "dimension-major" else items
    norms = log_normalisers(items, users) if precomputed else [None] * 3
    for user, norm in zip(users, norms, strict=True):
        # When the top k are chosen (with or without the publish-time normaliser)
        chosen, scores = user_top_k(served, user, k, log_normaliser=norm)
        # Then they are the formula's top k with its scores
        expected, expected_scores = plain_top_k(items, user, k)
        assert chosen.tolist() == expected.tolist()
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)


def test_log_normalisers_are_the_formulas_denominator() -> None:
    rng = np.random.default_rng(11)
    items = rng.normal(0, 3, (3000, 8)).astype(np.float32)
    users = rng.normal(0, 3, (7, 8)).astype(np.float32)
    got = log_normalisers(items, users, block=3)
    for user, value in zip(users, got, strict=True):
        logits = items.astype(np.float64) @ user.astype(np.float64)
        assert value == pytest.approx(logsumexp(logits), rel=1e-12)


def test_sorted_catalog_where_every_top_item_shares_a_group() -> None:
    # Given items whose logits rise with the index: the best 500 sit in the last rows, and
    # items i and i + 1024 share a group (the adversarial case for the group threshold)
    n = 70_000
    items = np.zeros((n, 2), dtype=np.float32)
    items[:, 0] = np.linspace(-1, 1, n, dtype=np.float32)
    items[::1024, 0] = 0.999  # one item per group close to the top
    user = np.array([5.0, 0.0], dtype=np.float32)
    chosen, scores = user_top_k(items, user, 100)
    expected, expected_scores = plain_top_k(items, user, 100)
    assert chosen.tolist() == expected.tolist()
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)


def test_near_ties_are_ranked_on_exact_logits_not_float32() -> None:
    # Given two items whose logits differ by less than float32 can tell apart, in reverse order
    base = np.float32(1.0)
    items = np.array([[base, np.float32(1e-4)], [base, np.float32(1.5e-4)]], dtype=np.float32)
    items = np.vstack([items, np.zeros((40_000, 2), dtype=np.float32)])
    user = np.array([3e3, 1e-3], dtype=np.float32)
    # When the top 1 is asked for
    chosen, _ = user_top_k(items, user, 1)
    # Then the exact winner (item 1, larger second component) is returned
    assert chosen.tolist() == plain_top_k(items, user, 1)[0].tolist() == [1]


@pytest.mark.parametrize("num_items", [500, 50_000])
def test_allowed_mask_on_small_and_large_catalogs(num_items: int) -> None:
    # Given a mask allowing a random third of the items
    rng = np.random.default_rng(num_items)
    items = dimension_major(rng.normal(0, 0.5, (num_items, 12)).astype(np.float32))
    user = rng.normal(0, 0.5, 12).astype(np.float32)
    allowed = rng.random(num_items) < 0.33
    norm = float(log_normalisers(items, user[None, :])[0])
    for log_normaliser in (None, norm):
        # When the top 25 allowed items are chosen
        chosen, scores = user_top_k(items, user, 25, allowed, log_normaliser=log_normaliser)
        # Then they are the formula's best allowed items, scored over the whole catalog
        expected, expected_scores = plain_top_k(items, user, 25, allowed)
        assert chosen.tolist() == expected.tolist()
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)


def test_a_mask_allowing_fewer_than_k_items_returns_only_those() -> None:
    rng = np.random.default_rng(3)
    items = rng.normal(0, 0.5, (40_000, 4)).astype(np.float32)
    user = rng.normal(0, 0.5, 4).astype(np.float32)
    allowed = np.zeros(40_000, dtype=bool)
    allowed[[7, 39_999, 123]] = True
    chosen, scores = user_top_k(items, user, 25, allowed)
    expected, expected_scores = plain_top_k(items, user, 25, allowed)
    assert sorted(chosen.tolist()) == [7, 123, 39_999]
    assert chosen.tolist() == expected.tolist()
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)
    assert user_top_k(items, user, 25, np.zeros(40_000, dtype=bool))[0].tolist() == []


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("precomputed", [False, True])
def test_blocked_batch_kernel_on_a_large_catalog(precomputed: bool, threads: int) -> None:
    # Given a catalog large enough for the item-blocked path (several item blocks, a ragged tail)
    rng = np.random.default_rng(21)
    items = rng.normal(0, 0.4, (70_001, 16)).astype(np.float32)
    vectors = rng.normal(0, 0.4, (9, 16)).astype(np.float32)
    norms = log_normalisers(items, vectors) if precomputed else None
    # When a batch is scored in blocks of 4 users (on one thread, or blocks spread over two)
    indices, scores = batch_user_top_k(
        dimension_major(items), vectors, 25, block=4, log_normalisers=norms, threads=threads
    )
    # Then every row is the formula's top 25 with its scores
    for row in range(9):
        expected, expected_scores = plain_top_k(items, vectors[row], 25)
        assert indices[row].tolist() == expected.tolist()
        np.testing.assert_allclose(scores[row], expected_scores, rtol=1e-6)


# -- the high-half scan: no item is lost at near-ties --------------------------------------------


def high_scan_top(items: ItemMatrix, user: np.ndarray, k: int) -> list[int]:
    """The top k as the high halves alone rank them (what a scan without the re-rank would give)."""
    scanned = items.scan(user.astype(np.float32), exact=False)
    return np.lexsort((np.arange(items.num_items), -scanned.astype(np.float64)))[:k].tolist()


def near_tie_catalog(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """40,000 x 64 items built so that bfloat16 cannot rank the best of them:
    - "same-high-halves": every item has the same high halves, so the scan sees one logit for all
      and only the low halves (read in the re-rank) order them;
    - "below-resolution": the best 2,000 items are one vector perturbed by ~2^-10 of each value
      (below bfloat16's 2^-8), the rest far below them, so truncation reorders the leaders."""
    rng = np.random.default_rng(seed)
    user = rng.normal(0, 1, 64).astype(np.float32)
    base = (np.sign(user) * rng.uniform(0.5, 2.0, 64)).astype(np.float32)  # u·base is large
    if kind == "same-high-halves":
        bits = np.broadcast_to(base.view(np.uint32) & np.uint32(0xFFFF0000), (40_000, 64))
        low = rng.integers(0, 1 << 16, (40_000, 64), dtype=np.uint32)
        return (bits | low).view(np.float32), user
    items = rng.normal(0, 0.3, (40_000, 64)).astype(np.float32)
    leaders = rng.choice(40_000, 2_000, replace=False)
    items[leaders] = (base * (1 + rng.normal(0, 2.0**-10, (2_000, 64)))).astype(np.float32)
    return items, user


@pytest.mark.parametrize("kind", ["same-high-halves", "below-resolution"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [1, 25, 500])
def test_no_item_is_lost_at_near_ties_below_bfloat16s_resolution(kind: str, seed: int, k: int) -> None:
    # Given a catalog whose best items bfloat16 cannot tell apart, published as planes
    matrix, user = near_tie_catalog(kind, seed)
    items = ItemMatrix.from_matrix(matrix)
    expected, expected_scores = plain_top_k(matrix, user, k)
    # (the high halves alone would rank them wrongly: the test is adversarial)
    assert high_scan_top(items, user, k) != expected.tolist()
    norm = float(log_normalisers(matrix, user[None, :])[0])
    allowed = np.random.default_rng(seed).random(40_000) > 0.2
    expected_allowed, expected_allowed_scores = plain_top_k(matrix, user, k, allowed)
    for log_normaliser in (norm, None):
        # When the top k are chosen from the high-half scan (with the stored normaliser) or the
        # float32 scan (without), with the model's bound on the row norms, with and without a mask
        chosen, scores = user_top_k(
            items, user, k, log_normaliser=log_normaliser, max_norm=max_row_norm(items)
        )
        masked, masked_scores = user_top_k(items, user, k, allowed, log_normaliser=log_normaliser)
        # Then they are exactly the formula's, in its order, with its scores
        assert chosen.tolist() == expected.tolist()
        assert masked.tolist() == expected_allowed.tolist()
        rtol = 1e-12 if log_normaliser is not None else 1e-6
        np.testing.assert_allclose(scores, expected_scores, rtol=rtol)
        np.testing.assert_allclose(masked_scores, expected_allowed_scores, rtol=rtol)


def test_the_high_scan_bound_holds_for_every_item_of_a_near_tie_catalog() -> None:
    # The bound the candidates rest on, checked item by item against float64 (both loops)
    matrix, user = near_tie_catalog("below-resolution", 7)
    items = ItemMatrix.from_matrix(matrix)
    exact = matrix.astype(np.float64) @ user.astype(np.float64)
    scanned = items.scan(user, exact=False)
    allowance = high_scan_error_bound(64, float(np.linalg.norm(user)), max_row_norm(items))
    assert np.abs(scanned - exact).max() <= allowance
    # ...and it is not loose by orders of magnitude: the truncation does use a good part of it
    assert np.abs(scanned - exact).max() >= allowance / 64


def test_the_model_bound_on_row_norms_is_an_upper_bound() -> None:
    rng = np.random.default_rng(3)
    matrix = (rng.normal(0, 1, (5_000, 33)) * 10.0 ** rng.integers(-2, 3, (5_000, 1))).astype(np.float32)
    largest = float(np.linalg.norm(matrix.astype(np.float64), axis=1).max())
    bound = max_row_norm(ItemMatrix.from_matrix(matrix))
    assert largest <= bound <= largest * (1 + 2**-6)
