"""The model's array helpers: .npy encoding in both orders, and the popularity order."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from personalize_core.errors import ArtifactError
from personalize_core.modelstore.layout import FileEntry
from personalize_core.modelstore.model import popularity_order
from personalize_core.modelstore.npy import decode_npy, encode_npy, npy_header


@pytest.mark.parametrize("fortran_order", [True, False])
def test_npy_files_of_either_order_decode_to_the_same_array_without_a_copy(fortran_order: bool) -> None:
    array = np.arange(24, dtype=np.float32).reshape(6, 4)
    data = encode_npy(array, fortran_order=fortran_order)
    # numpy reads our file as it reads its own
    np.testing.assert_array_equal(np.load(io.BytesIO(data)), array)
    header = npy_header(data)
    assert header is not None
    assert header.fortran_order is fortran_order
    assert header.offset % 64 == 0  # aligned data: a view of a received buffer is aligned too
    decoded = decode_npy(data, FileEntry("", len(data), "<f4", (6, 4), fortran_order))
    np.testing.assert_array_equal(decoded, array)
    assert np.shares_memory(decoded, np.frombuffer(data, dtype=np.uint8))
    # Fortran order is the dimension-major layout: each column (dimension) is contiguous
    assert decoded.T.flags.c_contiguous is fortran_order


def test_npy_with_python_objects_is_refused() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ArtifactError, match="Python objects"):
        npy_header(buffer.getvalue())


def stable_descending(popularity: np.ndarray) -> np.ndarray:
    return np.argsort(-popularity.astype(np.float64), kind="stable")


@given(
    hnp.arrays(
        np.float32,
        st.integers(0, 300),
        # few distinct values: many ties, which must stay in catalog order; and both zeros
        elements=st.sampled_from([0.0, -0.0, 1.0, 2.5, 3.0, 1e30, 7e-45, 3.4e38]),
    )
)
def test_popularity_order_is_a_stable_descending_argsort(popularity: np.ndarray) -> None:
    order = popularity_order(popularity)
    assert order.dtype == np.int64
    assert order.tolist() == stable_descending(popularity).tolist()


@given(hnp.arrays(st.sampled_from([np.float64, np.int64, np.float32]), st.integers(0, 50)))
def test_popularity_order_of_any_numeric_vector_matches_the_plain_sort(popularity: np.ndarray) -> None:
    # Negative, NaN or other dtypes (versions published by hand) take the plain sort
    popularity = np.nan_to_num(popularity)
    assert popularity_order(popularity).tolist() == stable_descending(popularity).tolist()
