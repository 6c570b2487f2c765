"""The item matrix's layout: two bfloat16-half planes that hold the float32 matrix bit for bit."""

from __future__ import annotations

import io

import numpy as np
import pytest

from personalize_core.modelstore.item_matrix import (
    BLOCK_ITEMS,
    ItemMatrix,
    encode_item_matrix,
    join,
    write_rows,
)


def any_floats(rows: int, dims: int, seed: int) -> np.ndarray:
    """Random float32 bit patterns (every exponent, subnormals, both zeros), NaNs left out."""
    bits = np.random.default_rng(seed).integers(0, 1 << 32, (rows, dims), dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values[~np.isfinite(values)] = 1.5
    return values


@pytest.mark.parametrize(("rows", "dims"), [(1, 1), (1023, 3), (1024, 2), (2049, 17)])
def test_the_planes_hold_the_matrix_bit_for_bit_in_its_memory(rows: int, dims: int) -> None:
    matrix = any_floats(rows, dims, rows)
    items = ItemMatrix.from_matrix(matrix)
    assert items.nbytes == matrix.nbytes
    assert np.array_equal(items.matrix().view(np.uint32), matrix.view(np.uint32))
    # Block b is [d, its items], dimension-major: a block's first row is its items' first values
    _, width, high, low = items.block(rows // BLOCK_ITEMS)
    first = (rows // BLOCK_ITEMS) * BLOCK_ITEMS
    assert width == rows - first or width == BLOCK_ITEMS
    assert np.array_equal(join(high, low).T.view(np.uint32), matrix[first : first + width].view(np.uint32))


def test_a_high_half_is_the_value_truncated_toward_zero() -> None:
    # |x - hi(x)| < 2^-7 |hi(x)| for normal x, < 2^-133 below float32's normal range, |hi| <= |x|
    matrix = any_floats(4000, 8, 1).astype(np.float64)
    high = join(
        ItemMatrix.from_matrix(matrix.astype(np.float32)).rows(np.arange(4000)).view(np.uint32) >> 16, None
    )
    high64 = high.astype(np.float64)
    error = np.abs(matrix - high64)
    assert (np.abs(high64) <= np.abs(matrix)).all()
    assert (error <= 2.0**-7 * np.abs(high64) + 2.0**-133).all()
    assert (np.sign(high64) * np.sign(matrix) >= 0).all()


def test_rows_written_in_any_chunks_give_the_same_planes() -> None:
    # The loader converts a float32 matrix as it streams in, in chunks that straddle blocks
    matrix = any_floats(3000, 5, 2)
    planes = np.zeros((2, 3000 * 5), dtype=np.uint16)
    start = 0
    for size in (1, 700, 1500, 799):
        write_rows(planes, 3000, 5, start, matrix[start : start + size])
        start += size
    assert np.array_equal(planes, ItemMatrix.from_matrix(matrix).planes)


def test_the_published_file_is_a_npy_of_the_two_planes() -> None:
    matrix = any_floats(10, 4, 3)
    loaded = np.load(io.BytesIO(encode_item_matrix(matrix)))
    assert loaded.dtype == np.uint16
    assert loaded.shape == (2, 40)
    assert np.array_equal(ItemMatrix(loaded, 10, 4).matrix().view(np.uint32), matrix.view(np.uint32))
    with pytest.raises(ValueError, match="uint16"):
        ItemMatrix(loaded.astype(np.uint32), 10, 4)
