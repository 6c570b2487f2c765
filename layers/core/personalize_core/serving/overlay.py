"""PutItems and PutUsers records over a version's item and user metadata (filters, metadataColumns).

A record replaces its row, as Personalize's PutItems replaces the item: the fields it gives are
its values, the fields it does not give have none. Items the version does not know are left out
(they have no factors to be recommended by; the next training takes them in).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from personalize_core.modelstore.attributes import Column


class MetadataOverlay:
    """The records of one dataset group, at one metadata version, for one solution version."""

    __slots__ = ("items", "key", "users")

    def __init__(self, items: dict[int, dict[str, str]], users: dict[str, dict[str, str]], key: str) -> None:
        #: Item row of the version -> field (upper case) -> value.
        self.items = items
        #: User id -> field -> value.
        self.users = users
        #: Names this overlay's data (cached filter masks are kept per key).
        self.key = key

    @classmethod
    def build(
        cls,
        item_index: Mapping[str, int],
        items: Mapping[str, dict[str, str]],
        users: Mapping[str, dict[str, str]],
        key: str,
    ) -> MetadataOverlay:
        rows = {row: fields for item, fields in items.items() if (row := item_index.get(item)) is not None}
        return cls(rows, dict(users), key)

    def item_text(self, row: int, column: Column) -> str:
        """A metadataColumns value: the record's, when the item has one, else the version's."""
        fields = self.items.get(row)
        return column.text(row) if fields is None else fields.get(column.name, "")

    def item_values(self, row: int, column: Column) -> list[str]:
        fields = self.items.get(row)
        if fields is None:
            return column.values_of(row)
        value = fields.get(column.name, "")
        return value.split("|") if value else []

    def item_number(self, row: int, column: Column) -> float:
        fields = self.items.get(row)
        if fields is None:
            return float(column.numbers[row]) if column.numbers is not None else float("nan")
        return record_number(fields.get(column.name, ""))

    def patch(
        self, mask: np.ndarray, column: Column, holds: Callable[[list[str], float], bool]
    ) -> np.ndarray:
        """``mask`` with the overridden rows decided by ``holds(values, number)`` on their records
        (values: the categorical tokens; number: NaN when the record has none)."""
        if not self.items:
            return mask
        mask = mask.copy()
        for row, fields in self.items.items():
            value = fields.get(column.name, "")
            mask[row] = holds(value.split("|") if value else [], record_number(value))
        return mask


def record_number(value: str) -> float:
    """A record's value as a number (NaN: none, or not a number)."""
    try:
        return float(value) if value else float("nan")
    except ValueError:
        return float("nan")
