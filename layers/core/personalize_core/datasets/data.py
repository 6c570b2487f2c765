"""Imported dataset data in the model bucket: where an import job writes it and how training reads it.

    datasets/<dataset group>/<TYPE>/<import job>/interactions.npz   INTERACTIONS, columnar (below)
    datasets/<dataset group>/<TYPE>/<import job>/rows.csv           ITEMS / USERS, the schema's columns

An import writes its data once, checked; the dataset's record then lists which imports make up
the dataset now (a FULL import replaces the list, an INCREMENTAL one adds to it), so a failed or
half-written import never becomes part of a dataset.

Interactions are stored columnar (``numpy.savez``, no pickles): the distinct user and item ids
as UTF-8 text (one a line, as uint8 arrays), an int32 code per row into each, int64 timestamps,
int16 event-type codes into ``event_types`` (-1: none) and float32 event values (NaN: none).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from personalize_core.errors import ArtifactError

PREFIX = "datasets/"
INTERACTIONS_FILE = "interactions.npz"
ROWS_FILE = "rows.csv"


def dataset_prefix(dataset_group: str, dataset_type: str) -> str:
    return f"{PREFIX}{dataset_group}/{dataset_type}/"


def import_key(dataset_group: str, dataset_type: str, job: str) -> str:
    name = INTERACTIONS_FILE if dataset_type == "INTERACTIONS" else ROWS_FILE
    return f"{dataset_prefix(dataset_group, dataset_type)}{job}/{name}"


class Interactions(NamedTuple):
    """Interaction rows, columnar. ``user_codes[r]`` indexes ``user_ids`` (and so on)."""

    user_ids: list[str]
    item_ids: list[str]
    user_codes: np.ndarray  # int32 [rows]
    item_codes: np.ndarray  # int32 [rows]
    timestamps: np.ndarray  # int64 [rows]
    event_types: list[str]
    event_codes: np.ndarray  # int16 [rows], -1: no event type
    event_values: np.ndarray  # float32 [rows], NaN: no value

    @property
    def rows(self) -> int:
        return int(self.user_codes.size)


def _text(values: Sequence[str]) -> np.ndarray:
    return np.frombuffer("\n".join(values).encode("utf-8"), dtype=np.uint8)


def _ids(array: np.ndarray, count: int) -> list[str]:
    ids = array.tobytes().decode("utf-8").split("\n") if count else []
    if len(ids) != count:
        raise ArtifactError(f"an id list has {len(ids)} ids where {count} were written")
    return ids


def encode_interactions(interactions: Interactions) -> bytes:
    out = io.BytesIO()
    np.savez(
        out,
        user_ids=_text(interactions.user_ids),
        item_ids=_text(interactions.item_ids),
        event_types=_text(interactions.event_types),
        counts=np.array(
            [len(interactions.user_ids), len(interactions.item_ids), len(interactions.event_types)],
            dtype=np.int64,
        ),
        user_codes=interactions.user_codes.astype(np.int32, copy=False),
        item_codes=interactions.item_codes.astype(np.int32, copy=False),
        timestamps=interactions.timestamps.astype(np.int64, copy=False),
        event_codes=interactions.event_codes.astype(np.int16, copy=False),
        event_values=interactions.event_values.astype(np.float32, copy=False),
    )
    return out.getvalue()


def decode_interactions(data: bytes) -> Interactions:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            users, items, types = (int(n) for n in archive["counts"])
            decoded = Interactions(
                _ids(archive["user_ids"], users),
                _ids(archive["item_ids"], items),
                archive["user_codes"],
                archive["item_codes"],
                archive["timestamps"],
                _ids(archive["event_types"], types),
                archive["event_codes"],
                archive["event_values"],
            )
    except (KeyError, ValueError, OSError) as exc:
        raise ArtifactError(f"imported interactions are unreadable: {exc}") from None
    rows = decoded.rows
    columns = (decoded.item_codes, decoded.timestamps, decoded.event_codes, decoded.event_values)
    if any(c.shape != (rows,) for c in columns):
        raise ArtifactError("imported interactions have columns of different lengths")
    return decoded


def merge_interactions(parts: Iterable[Interactions]) -> Interactions:
    """Several imports as one: codes re-mapped onto the union of their ids."""
    parts = list(parts)
    if len(parts) == 1:
        return parts[0]
    user_index: dict[str, int] = {}
    item_index: dict[str, int] = {}
    type_index: dict[str, int] = {}
    columns: list[list[np.ndarray]] = [[], [], [], [], []]
    for part in parts:
        user_map = np.array(
            [user_index.setdefault(u, len(user_index)) for u in part.user_ids], dtype=np.int32
        )
        item_map = np.array(
            [item_index.setdefault(i, len(item_index)) for i in part.item_ids], dtype=np.int32
        )
        type_map = np.array([type_index.setdefault(t, len(type_index)) for t in part.event_types] + [-1])
        columns[0].append(user_map[part.user_codes] if part.rows else part.user_codes)
        columns[1].append(item_map[part.item_codes] if part.rows else part.item_codes)
        columns[2].append(part.timestamps)
        columns[3].append(type_map[part.event_codes].astype(np.int16))  # -1 indexes the appended -1
        columns[4].append(part.event_values)
    return Interactions(
        list(user_index),
        list(item_index),
        np.concatenate(columns[0]),
        np.concatenate(columns[1]),
        np.concatenate(columns[2]),
        list(type_index),
        np.concatenate(columns[3]),
        np.concatenate(columns[4]),
    )


# -- Items and Users rows ---------------------------------------------------------------------------


def encode_rows(header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def decode_rows(data: bytes) -> tuple[list[str], list[list[str]]]:
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    try:
        header = next(reader)
    except StopIteration:
        raise ArtifactError("imported rows have no header") from None
    return header, list(reader)


def merge_rows(parts: Iterable[bytes], id_column: str) -> tuple[list[str], dict[str, list[str]]]:
    """Items or Users rows of several imports by id (a later import's row wins), as
    (ids, column name -> values): what the writer's metadata encoders take."""
    by_id: dict[str, dict[str, str]] = {}
    names: dict[str, None] = {}
    for data in parts:
        header, rows = decode_rows(data)
        upper = [h.upper() for h in header]
        if id_column not in upper:
            raise ArtifactError(f"imported rows have no {id_column} column")
        at = upper.index(id_column)
        names.update((h, None) for h in upper if h != id_column)
        for row in rows:
            by_id[row[at]] = {h: v for h, v in zip(upper, row, strict=True) if h != id_column}
    ids = list(by_id)
    return ids, {name: [by_id[i].get(name, "") for i in ids] for name in names}
