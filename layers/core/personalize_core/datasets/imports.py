"""A dataset import job's work: read CSV from S3 (with the job's role), check every row against the
dataset's schema, and write the checked data to the model bucket (``data.py``'s layout).

A bad file fails the whole job with a reason that names the object, the row and the column, as
Personalize's ``failureReason`` does; nothing of it is written.
"""

from __future__ import annotations

import csv
import io
from array import array
from collections.abc import Iterator
from typing import Any

import numpy as np

from personalize_core.batch.storage import JobStorage, S3Path
from personalize_core.datasets.data import Interactions, encode_interactions, encode_rows
from personalize_core.datasets.schema import DatasetType, RowError, Schema, check_value

#: Files under a prefix that are read (others, such as _SUCCESS markers, are skipped).
CSV_SUFFIXES = (".csv",)


class ImportFailed(Exception):
    """The data cannot be imported; the message is the job's failureReason."""


class _ChunkStream(io.RawIOBase):
    """An iterator of byte chunks as a readable stream (so csv reads S3 as it arrives)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left = chunk
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size


def input_objects(storage: JobStorage, location: S3Path) -> list[tuple[str, int, str]]:
    """(key, size, etag) of the CSV objects a dataLocation names: one object, or a prefix's CSVs."""
    if not location.is_prefix:
        found = storage.head(location.bucket, location.key)
        if found is None:
            raise ImportFailed(f"{location} does not exist")
        return [(location.key, found[0], found[1])]
    listed = [
        o for o in storage.list_objects(location.bucket, location.key) if o[0].lower().endswith(CSV_SUFFIXES)
    ]
    if not listed:
        raise ImportFailed(f"{location} holds no .csv objects")
    return listed


def _columns(header: list[str], schema: Schema, where: str) -> list[int]:
    """For each schema field, its column in the file (-1: absent, allowed for nullable fields)."""
    upper = [h.strip().upper() for h in header]
    if len(set(upper)) != len(upper):
        raise ImportFailed(f"{where}: the header names a column twice")
    known = {f.name.upper() for f in schema.fields}
    for name in header:
        if name.strip().upper() not in known:
            raise ImportFailed(
                f"{where}: column {name.strip()[:60]!r} is not a field of the dataset's schema"
            )
    at = [upper.index(f.name.upper()) if f.name.upper() in upper else -1 for f in schema.fields]
    for field, column in zip(schema.fields, at, strict=True):
        if column < 0 and not field.nullable:
            raise ImportFailed(f"{where}: the header has no {field.name} column, which the schema requires")
    return at


def _rows(storage: JobStorage, bucket: str, key: str, etag: str, schema: Schema) -> Iterator[list[str]]:
    """The object's rows as the schema's values (in schema order), each checked."""
    where = f"s3://{bucket}/{key}"
    text = io.TextIOWrapper(
        io.BufferedReader(_ChunkStream(storage.read_from(bucket, key, 0, etag))),
        encoding="utf-8-sig",
        newline="",
    )
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise ImportFailed(f"{where} is empty (a CSV needs a header row)")
        at = _columns(header, schema, where)
        width = len(header)
        for number, row in enumerate(reader, start=1):
            if not row:
                continue
            if len(row) != width:
                raise ImportFailed(
                    f"{where} row {number} (line {reader.line_num}) has {len(row)} values; "
                    f"the header has {width}"
                )
            values = []
            for field, column in zip(schema.fields, at, strict=True):
                value = row[column] if column >= 0 else ""
                try:
                    values.append(check_value(field, value))
                except RowError as exc:
                    raise ImportFailed(
                        f"{where} row {number} (line {reader.line_num}), column {field.name}: {exc}"
                    ) from None
            yield values
    except csv.Error as exc:
        raise ImportFailed(f"{where} line {reader.line_num}: not valid CSV ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ImportFailed(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_interactions(
    storage: JobStorage, bucket: str, objects: list[tuple[str, int, str]], schema: Schema
) -> Interactions:
    fields = schema.names
    user_at, item_at, time_at = fields.index("USER_ID"), fields.index("ITEM_ID"), fields.index("TIMESTAMP")
    type_at = fields.index("EVENT_TYPE") if "EVENT_TYPE" in fields else -1
    value_at = fields.index("EVENT_VALUE") if "EVENT_VALUE" in fields else -1
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    types: dict[str, int] = {}
    user_codes, item_codes = array("i"), array("i")
    timestamps, event_codes, event_values = array("q"), array("h"), array("f")
    for key, _, etag in objects:
        for row in _rows(storage, bucket, key, etag, schema):
            user_codes.append(users.setdefault(row[user_at], len(users)))
            item_codes.append(items.setdefault(row[item_at], len(items)))
            timestamps.append(int(row[time_at]))
            event = row[type_at] if type_at >= 0 else ""
            event_codes.append(types.setdefault(event, len(types)) if event else -1)
            value = row[value_at] if value_at >= 0 else ""
            event_values.append(float(value) if value else float("nan"))
    if not user_codes:
        raise ImportFailed(f"s3://{bucket}/{objects[0][0]} holds no interactions (only a header)")
    return Interactions(
        list(users),
        list(items),
        np.frombuffer(user_codes, dtype=np.int32),
        np.frombuffer(item_codes, dtype=np.int32),
        np.frombuffer(timestamps, dtype=np.int64),
        list(types),
        np.frombuffer(event_codes, dtype=np.int16),
        np.frombuffer(event_values, dtype=np.float32),
    )


def import_data(
    storage: JobStorage, location: S3Path, schema: Schema, dataset_type: DatasetType
) -> tuple[bytes, int]:
    """The checked data of an import, encoded for the model bucket, and its row count."""
    objects = input_objects(storage, location)
    if dataset_type is DatasetType.INTERACTIONS:
        interactions = read_interactions(storage, location.bucket, objects, schema)
        return encode_interactions(interactions), interactions.rows
    rows = [row for key, _, etag in objects for row in _rows(storage, location.bucket, key, etag, schema)]
    if not rows:
        raise ImportFailed(f"{location} holds no rows (only a header)")
    return encode_rows([f.name.upper() for f in schema.fields], rows), len(rows)
