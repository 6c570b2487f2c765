"""Who interacted with what, both ways: the data of a RELATED_ITEMS version served by co-occurrence.

Training keeps it when it measures better than the item factors' cosine on the holdout
(docs/DESIGN.md, "Training"). Users are numbered by the version itself (no ids are needed: only
which items share users). Optional files of a version, like attributes.py's:

    co_occurrence/item_indptr.npy   int64 [items + 1]  CSR: item i's users, item_users[indptr[i]:indptr[i+1]]
    co_occurrence/item_users.npy    int32 [pairs]
    co_occurrence/user_indptr.npy   int64 [users + 1]  CSR: user u's items
    co_occurrence/user_items.npy    int32 [pairs]

Each (user, item) pair appears once, however often the user interacted with the item.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from personalize_core.errors import ArtifactError
from personalize_core.modelstore.npy import encode_npy

PREFIX = "co_occurrence/"
ITEM_INDPTR, ITEM_USERS = PREFIX + "item_indptr.npy", PREFIX + "item_users.npy"
USER_INDPTR, USER_ITEMS = PREFIX + "user_indptr.npy", PREFIX + "user_items.npy"


class CoOccurrence(NamedTuple):
    item_indptr: np.ndarray
    item_users: np.ndarray
    user_indptr: np.ndarray
    user_items: np.ndarray

    @property
    def item_counts(self) -> np.ndarray:
        """How many users interacted with each item."""
        counts: np.ndarray = np.diff(self.item_indptr)
        return counts


def _csr(rows: np.ndarray, columns: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((columns, rows))
    indptr = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=count), out=indptr[1:])
    return indptr, columns[order].astype(np.int32)


def encode_co_occurrence(
    users: np.ndarray, items: np.ndarray, num_users: int, num_items: int
) -> dict[str, bytes]:
    """The files for interactions given as (user, item) index pairs (repeats are counted once)."""
    pairs = np.unique(users.astype(np.int64) * num_items + items.astype(np.int64))
    unique_users, unique_items = np.divmod(pairs, num_items)
    item_indptr, item_users = _csr(unique_items, unique_users, num_items)
    user_indptr, user_items = _csr(unique_users, unique_items, num_users)
    return {
        ITEM_INDPTR: encode_npy(item_indptr),
        ITEM_USERS: encode_npy(item_users),
        USER_INDPTR: encode_npy(user_indptr),
        USER_ITEMS: encode_npy(user_items),
    }


class ArrayReader(Protocol):
    """A version's checked .npy files (attributes.VersionReader)."""

    def has(self, name: str) -> bool: ...
    def array(self, name: str, kind: str, shape: tuple[int, ...] | None = None) -> np.ndarray: ...


def load_co_occurrence(reader: ArrayReader, num_items: int) -> CoOccurrence | None:
    """The version's co-occurrence data, checked to index its items (None: it has none)."""
    if not reader.has(ITEM_INDPTR):
        return None
    item_indptr = reader.array(ITEM_INDPTR, "i", (num_items + 1,))
    item_users = reader.array(ITEM_USERS, "i")
    user_indptr = reader.array(USER_INDPTR, "i")
    user_items = reader.array(USER_ITEMS, "i", item_users.shape)
    users = user_indptr.size - 1
    for indptr, values, bound, name in (
        (item_indptr, item_users, users, ITEM_USERS),
        (user_indptr, user_items, num_items, USER_ITEMS),
    ):
        if (
            indptr.ndim != 1
            or indptr.size < 1
            or indptr[0] != 0
            or indptr[-1] != values.size
            or (np.diff(indptr) < 0).any()
            or (values.size and (values.min() < 0 or values.max() >= bound))
        ):
            raise ArtifactError(f"{name} and its index do not form a valid CSR over the version")
    return CoOccurrence(item_indptr, item_users, user_indptr, user_items)
