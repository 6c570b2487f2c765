"""Optional data of a solution version: item and user metadata, recent interactions, context vectors.

These are extra files of a version, listed in its manifest like the others (sha256, size, dtype,
shape); a version without them loads as before. The publisher encodes them here and the loader
decodes them here, so the layout lives in one place:

    items/schema.json             {"rows": n, "columns": [{"name", "vocabulary": [...], "numeric"}]}
    items/<c>.indptr.npy          int64 [rows + 1]  CSR: row r's values are tokens[indptr[r]:indptr[r+1]]
    items/<c>.tokens.npy          int32 [nnz]       codes into the column's vocabulary
    items/<c>.numbers.npy         float64 [rows]    numeric columns only (NaN = no value)
    users/ids.txt, users/...      the same for the Users CSV (rows are its own user ids)
    interactions/user_ids.txt     users with interactions
    interactions/indptr.npy       int64 [users + 1]  CSR over the users' recent interactions
    interactions/items.npy        int32 [nnz]        item indices (most recent first, per event type)
    interactions/events.npy       int16 [nnz]        codes into schema.json's lower-cased event types
    interactions/schema.json      {"users": n, "eventTypes": [...]}
    context/schema.json           {"fields": {"DEVICE": ["phone", "desktop"], ...}}
    context/vectors.npy           float32 [pairs, dims]  one vector per (field, value), in schema order
    co_occurrence/...             who interacted with what (RELATED_ITEMS by co-occurrence; its module)

A multi-valued categorical value ``comedy|drama`` is stored as its tokens; ``text(row)`` joins them
back with ``|``, which gives the value exactly as it was published.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from personalize_core.errors import ArtifactError
from personalize_core.modelstore import co_occurrence
from personalize_core.modelstore.co_occurrence import CoOccurrence
from personalize_core.modelstore.layout import FileEntry, Manifest, decode_ids, encode_ids
from personalize_core.modelstore.npy import decode_npy, encode_npy

ITEMS = "items/"
USERS = "users/"
INTERACTIONS = "interactions/"
CONTEXT = "context/"
SCHEMA = "schema.json"
#: Personalize keeps this many recent interactions per user and event type for filters.
RECENT_PER_EVENT_TYPE = 100


# -- in memory --------------------------------------------------------------------------------------


# These hold arrays: tell them apart with ``is`` (NamedTuples for a cheap import; == means nothing).


class Column(NamedTuple):
    name: str
    vocabulary: list[str]
    indptr: np.ndarray
    tokens: np.ndarray
    numbers: np.ndarray | None
    code_of: dict[str, int]
    #: The row each token belongs to (derived at load): turns a token mask into a row mask.
    row_of_token: np.ndarray

    def __repr__(self) -> str:  # the fields read from the files, not the two derived at load
        return (
            f"Column(name={self.name!r}, vocabulary={self.vocabulary!r}, indptr={self.indptr!r}, "
            f"tokens={self.tokens!r}, numbers={self.numbers!r})"
        )

    @property
    def numeric(self) -> bool:
        return self.numbers is not None

    def rows_with_any(self, values: Sequence[str], rows: int) -> np.ndarray:
        """A bool mask of the rows holding at least one of ``values``."""
        codes = [self.code_of[v] for v in values if v in self.code_of]
        mask = np.zeros(rows, dtype=bool)
        if len(codes) == 1:
            mask[self.row_of_token[self.tokens == codes[0]]] = True
        elif codes:
            mask[self.row_of_token[np.isin(self.tokens, np.asarray(codes, dtype=self.tokens.dtype))]] = True
        return mask

    def values_of(self, row: int) -> list[str]:
        return [self.vocabulary[t] for t in self.tokens[self.indptr[row] : self.indptr[row + 1]].tolist()]

    def text(self, row: int) -> str:
        return "|".join(self.values_of(row))


class Table:
    """Metadata columns of ``rows`` rows. A plain class: in a NamedTuple ``index`` is tuple.index."""

    __slots__ = ("columns", "index", "rows")

    def __init__(self, rows: int, columns: dict[str, Column], index: dict[str, int] | None = None) -> None:
        self.rows = rows
        self.columns = columns
        #: Row of each id; None for the items table (its rows are the model's item indices).
        self.index = index


class RecentInteractions(NamedTuple):
    user_index: dict[str, int]
    indptr: np.ndarray
    items: np.ndarray
    events: np.ndarray
    event_types: list[str]

    def items_of(self, user_id: str, event_types: Sequence[str] | None, negate: bool = False) -> np.ndarray:
        """Item indices of the user's recent interactions of ``event_types`` (None: any type)."""
        user = self.user_index.get(user_id)
        if user is None:
            return np.empty(0, dtype=np.int64)
        start, end = int(self.indptr[user]), int(self.indptr[user + 1])
        items, events = self.items[start:end], self.events[start:end]
        if event_types is None:
            return items.astype(np.int64) if not negate else np.empty(0, dtype=np.int64)
        codes = [i for i, e in enumerate(self.event_types) if e in {t.lower() for t in event_types}]
        hit = np.isin(events, np.asarray(codes, dtype=events.dtype))
        return items[~hit if negate else hit].astype(np.int64)


class ContextFactors(NamedTuple):
    #: field -> value -> row of ``vectors``.
    fields: dict[str, dict[str, int]]
    vectors: np.ndarray


class ModelExtras(NamedTuple):
    items: Table | None = None
    users: Table | None = None
    interactions: RecentInteractions | None = None
    context: ContextFactors | None = None
    #: RELATED_ITEMS served by item-item co-occurrence (modelstore/co_occurrence.py).
    co_occurrence: CoOccurrence | None = None


NO_EXTRAS = ModelExtras()


# -- encoding (the publisher) -----------------------------------------------------------------------


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf", "infinity", "-infinity", "+inf")


def encode_table(prefix: str, columns: Mapping[str, Sequence[str]], rows: int) -> dict[str, bytes]:
    """Files for a table: ``columns`` maps a column name to one raw value per row ("" = no value)."""
    files: dict[str, bytes] = {}
    schema: list[dict[str, Any]] = []
    for number, (name, raw_values) in enumerate(columns.items()):
        if len(raw_values) != rows:
            raise ValueError(f"column {name} has {len(raw_values)} values for {rows} rows")
        code_of: dict[str, int] = {}
        indptr = np.zeros(rows + 1, dtype=np.int64)
        tokens: list[int] = []
        for row, raw in enumerate(raw_values):
            if raw != "":
                tokens.extend(code_of.setdefault(token, len(code_of)) for token in raw.split("|"))
            indptr[row + 1] = len(tokens)
        present = [raw for raw in raw_values if raw != ""]
        numeric = bool(present) and all("|" not in raw and _is_number(raw) for raw in present)
        files[f"{prefix}{number}.indptr.npy"] = encode_npy(indptr)
        files[f"{prefix}{number}.tokens.npy"] = encode_npy(np.asarray(tokens, dtype=np.int32))
        if numeric:
            numbers = np.array([float(raw) if raw != "" else np.nan for raw in raw_values], dtype=np.float64)
            files[f"{prefix}{number}.numbers.npy"] = encode_npy(numbers)
        schema.append({"name": name.upper(), "vocabulary": list(code_of), "numeric": numeric})
    files[prefix + SCHEMA] = json.dumps({"rows": rows, "columns": schema}).encode()
    return files


def encode_users(user_ids: Sequence[str], columns: Mapping[str, Sequence[str]]) -> dict[str, bytes]:
    files = encode_table(USERS, columns, len(user_ids))
    files[USERS + "ids.txt"] = encode_ids(list(user_ids))
    return files


def encode_context(vectors: Mapping[str, Mapping[str, Sequence[float]]], dims: int) -> dict[str, bytes]:
    """``{"DEVICE": {"phone": [..dims..], ...}, ...}``: one vector per (context field, value)."""
    fields: dict[str, list[str]] = {}
    rows: list[Sequence[float]] = []
    for name, values in vectors.items():
        fields[name] = list(values)
        rows.extend(values.values())
    matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    if matrix.shape[1] != dims or not np.isfinite(matrix).all():
        raise ValueError(f"context vectors must be finite and have the model's {dims} dimensions")
    return {
        CONTEXT + SCHEMA: json.dumps({"fields": fields}).encode(),
        CONTEXT + "vectors.npy": encode_npy(matrix),
    }


# -- decoding (the loader) --------------------------------------------------------------------------

Fetch = Callable[[str], bytes]


class VersionReader:
    """A version's optional files, each checked against the manifest as it is read."""

    def __init__(self, manifest: Manifest, fetch: Fetch) -> None:
        self.manifest = manifest
        self.fetch = fetch

    def has(self, name: str) -> bool:
        return name in self.manifest.files

    def raw(self, name: str) -> tuple[bytes, FileEntry]:
        entry = self.manifest.files.get(name)
        if entry is None:
            raise ArtifactError(f"the manifest lists no {name}")
        data = self.fetch(name)
        if not entry.matches(data):
            raise ArtifactError(f"{name} does not match the manifest's size and checksum")
        return data, entry

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.raw(name)[0])
        except ValueError as exc:
            raise ArtifactError(f"{name} is not valid JSON: {exc}") from None

    def array(self, name: str, kind: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        array = decode_npy(*self.raw(name))
        if array.dtype.kind != kind or (shape is not None and array.shape != shape) or array.ndim == 0:
            raise ArtifactError(f"{name} is {array.dtype}{list(array.shape)}, not what its schema says")
        return array


def _table(reader: VersionReader, prefix: str, rows: int | None) -> Table:
    try:
        schema = reader.json(prefix + SCHEMA)
        count = int(schema["rows"])
        if rows is not None and count != rows:
            raise ArtifactError(f"{prefix}{SCHEMA} has {count} rows, the model has {rows}")
        columns: dict[str, Column] = {}
        for number, spec in enumerate(schema["columns"]):
            vocabulary = [str(v) for v in spec["vocabulary"]]
            indptr = reader.array(f"{prefix}{number}.indptr.npy", "i", (count + 1,))
            tokens = reader.array(f"{prefix}{number}.tokens.npy", "i")
            if indptr[0] != 0 or indptr[-1] != tokens.size or (np.diff(indptr) < 0).any():
                raise ArtifactError(f"{prefix}{number}.indptr.npy is not a valid CSR index")
            if tokens.size and (tokens.min() < 0 or tokens.max() >= len(vocabulary)):
                raise ArtifactError(f"{prefix}{number}.tokens.npy has codes outside its vocabulary")
            numbers = (
                reader.array(f"{prefix}{number}.numbers.npy", "f", (count,)) if spec["numeric"] else None
            )
            name = str(spec["name"])
            columns[name] = Column(
                name=name,
                vocabulary=vocabulary,
                indptr=indptr,
                tokens=tokens,
                numbers=numbers,
                code_of={v: i for i, v in enumerate(vocabulary)},
                row_of_token=np.repeat(np.arange(count, dtype=np.int64), np.diff(indptr)),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{prefix}{SCHEMA} is malformed: {exc!r}") from None
    index = None
    if rows is None:
        ids = decode_ids(reader.raw(prefix + "ids.txt")[0], count)
        index = {user_id: i for i, user_id in enumerate(ids)}
    return Table(count, columns, index)


def _interactions(reader: VersionReader, num_items: int) -> RecentInteractions:
    try:
        schema = reader.json(INTERACTIONS + SCHEMA)
        users = int(schema["users"])
        event_types = [str(e) for e in schema["eventTypes"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{INTERACTIONS}{SCHEMA} is malformed: {exc!r}") from None
    ids = decode_ids(reader.raw(INTERACTIONS + "user_ids.txt")[0], users)
    indptr = reader.array(INTERACTIONS + "indptr.npy", "i", (users + 1,))
    items = reader.array(INTERACTIONS + "items.npy", "i")
    events = reader.array(INTERACTIONS + "events.npy", "i", items.shape)
    if (
        indptr[0] != 0
        or indptr[-1] != items.size
        or (items.size and (items.min() < 0 or items.max() >= num_items))
    ):
        raise ArtifactError("interactions/ do not index the model's items")
    return RecentInteractions({u: i for i, u in enumerate(ids)}, indptr, items, events, event_types)


def _context(reader: VersionReader, dims: int) -> ContextFactors:
    try:
        raw_fields = reader.json(CONTEXT + SCHEMA)["fields"]
        fields: dict[str, dict[str, int]] = {}
        row = 0
        for name, values in raw_fields.items():
            fields[str(name)] = {}
            for value in values:
                fields[str(name)][str(value)] = row
                row += 1
    except (KeyError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{CONTEXT}{SCHEMA} is malformed: {exc!r}") from None
    vectors = reader.array(CONTEXT + "vectors.npy", "f", (row, dims))
    if not np.isfinite(vectors).all():
        raise ArtifactError("context/vectors.npy holds NaN or infinite values")
    return ContextFactors(fields, vectors)


def load_extras(manifest: Manifest, fetch: Fetch) -> ModelExtras:
    """The optional data the manifest lists (nothing for versions published without it)."""
    reader = VersionReader(manifest, fetch)
    if not any(reader.has(p + SCHEMA) for p in (ITEMS, USERS, INTERACTIONS, CONTEXT)) and not reader.has(
        co_occurrence.ITEM_INDPTR
    ):
        return NO_EXTRAS
    return ModelExtras(
        items=_table(reader, ITEMS, manifest.num_items) if reader.has(ITEMS + SCHEMA) else None,
        users=_table(reader, USERS, None) if reader.has(USERS + SCHEMA) else None,
        interactions=_interactions(reader, manifest.num_items) if reader.has(INTERACTIONS + SCHEMA) else None,
        # Context vectors shift a user vector: a recipe without factors (popular items) has none.
        context=_context(reader, manifest.dimensions)
        if reader.has(CONTEXT + SCHEMA) and manifest.dimensions
        else None,
        co_occurrence=co_occurrence.load_co_occurrence(reader, manifest.num_items),
    )


# -- schema only (the control plane checks filters without loading a model) -------------------------


class DataSchema(NamedTuple):
    #: column -> numeric?
    item_columns: dict[str, bool]
    user_columns: dict[str, bool]
    has_interactions: bool


def schema_of_extras(extras: ModelExtras) -> DataSchema:
    def columns(table: Table | None) -> dict[str, bool]:
        return {n: c.numeric for n, c in table.columns.items()} if table else {}

    return DataSchema(columns(extras.items), columns(extras.users), extras.interactions is not None)


def read_schema(manifest: Manifest, fetch: Fetch) -> DataSchema:
    """What a version's filters may name, from its schema files only."""
    reader = VersionReader(manifest, fetch)

    def columns(prefix: str) -> dict[str, bool]:
        if not reader.has(prefix + SCHEMA):
            return {}
        try:
            return {str(c["name"]): bool(c["numeric"]) for c in reader.json(prefix + SCHEMA)["columns"]}
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"{prefix}{SCHEMA} is malformed: {exc!r}") from None

    return DataSchema(columns(ITEMS), columns(USERS), reader.has(INTERACTIONS + SCHEMA))
