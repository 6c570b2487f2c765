"""Publishing from files: the inputs a user has on disk (ids, .npy factors, Personalize CSVs)
read and checked, then written through the one writer (``personalize_core.modelstore.writer``).

``publish_files`` is what ``lambda-personalize publish`` and the local demo call; it returns the
ARNs as values.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.writer import (
    PublishError,
    check_ids,
    prepare_extras,
    prepare_version,
    put_campaign,
    upload_version,
)

__all__ = ["PublishError", "PublishInputs", "publish_files"]


# -- reading inputs ----------------------------------------------------------------------------


def read_ids(path: Path) -> list[str]:
    """Ids from .txt (one a line), .json (a list), .npy (strings or integers) or .csv (first column)."""
    try:
        match path.suffix.lower():
            case ".json":
                raw = json.loads(path.read_text("utf-8"))
                if not isinstance(raw, list):
                    raise PublishError(f"{path}: expected a JSON list of ids")
                return [str(v) for v in raw]
            case ".npy":
                array = np.load(path, allow_pickle=False)
                if array.ndim != 1 or array.dtype.kind not in "UiuS":
                    raise PublishError(
                        f"{path}: expected a 1-d array of strings or integers, got {array.dtype}"
                    )
                return [v.decode() if isinstance(v, bytes) else str(v) for v in array.tolist()]
            case ".csv":
                with path.open(newline="", encoding="utf-8") as f:
                    rows = list(csv.reader(f))
                return [row[0] for row in rows[1:] if row]
            case _:
                return path.read_text("utf-8").splitlines()
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise PublishError(f"{path}: cannot read ids: {exc}") from None


#: Line breaks ``str.splitlines`` knows besides "\n" (in UTF-8): a .txt of ids holding one of them
#: is read as text, so that its ids are the same either way.
_OTHER_LINE_BREAKS = re.compile(rb"[\r\x0b\x0c\x1c\x1d\x1e]|\xc2\x85|\xe2\x80[\xa8\xa9]")


def read_user_ids(path: Path) -> Sequence[str] | bytes:
    """User ids as ``read_ids`` reads them; a plain .txt (one id a "\n"-ended line) as its bytes,
    which the writer checks and pages without a Python string per id (10M ids: ~90 MB, not ~1 GB)."""
    if path.suffix.lower() not in ("", ".txt"):
        return read_ids(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PublishError(f"{path}: cannot read ids: {exc}") from None
    if _OTHER_LINE_BREAKS.search(data):
        return read_ids(path)
    return data[:-1] if data.endswith(b"\n") else data


def read_matrix(path: Path, mmap: bool = False) -> np.ndarray:
    """A .npy matrix; ``mmap``: mapped, not read (the user factors: read a block at a time)."""
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as exc:
        raise PublishError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise PublishError(f"{path}: expected one array, not an archive")
    return array


def count_interactions(path: Path, item_ids: Sequence[str]) -> np.ndarray:
    """Popularity from a Personalize-style Interactions CSV: how many interactions each item has."""
    counts: Counter[str] = Counter()
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = {c.upper(): c for c in reader.fieldnames or []}
            if "ITEM_ID" not in columns:
                raise PublishError(f"{path}: an Interactions CSV needs an ITEM_ID column")
            item_column = columns["ITEM_ID"]
            counts.update(row[item_column] for row in reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PublishError(f"{path}: cannot read interactions: {exc}") from None
    return np.array([counts.get(i, 0) for i in item_ids], dtype=np.float32)


# -- item and user metadata, recent interactions, context (filters, metadataColumns, context) ----


def _read_csv(path: Path, what: str, id_column: str) -> tuple[list[str], dict[str, list[str]]]:
    """A Personalize-style CSV: the id column and every other column, values as text."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            names = reader.fieldnames or []
            by_upper = {name.upper(): name for name in names}
            if id_column not in by_upper:
                raise PublishError(f"{path}: a {what} CSV needs an {id_column} column")
            if len(by_upper) != len(names):
                raise PublishError(f"{path}: column names must differ in more than case")
            others = [n for n in names if n.upper() != id_column]
            ids: list[str] = []
            columns: dict[str, list[str]] = {n.upper(): [] for n in others}
            for row in reader:
                ids.append(row[by_upper[id_column]] or "")
                for name in others:
                    columns[name.upper()].append(row.get(name) or "")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PublishError(f"{path}: cannot read the {what} CSV: {exc}") from None
    return ids, columns


def read_items_csv(path: Path, item_ids: Sequence[str]) -> dict[str, list[str]]:
    """Item metadata columns aligned on ``item_ids`` (items missing from the CSV have no values)."""
    ids, columns = _read_csv(path, "Items", "ITEM_ID")
    row_of = {item_id: row for row, item_id in enumerate(ids)}
    if len(row_of) != len(ids):
        raise PublishError(f"{path}: ITEM_ID values must be unique")
    rows = [row_of.get(item_id) for item_id in item_ids]
    return {name: [values[r] if r is not None else "" for r in rows] for name, values in columns.items()}


def read_users_csv(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    ids, columns = _read_csv(path, "Users", "USER_ID")
    return check_ids(ids, f"{path}: USER_ID"), columns


def read_interaction_events(path: Path) -> list[tuple[str, str, float, str]] | None:
    """(user, item, timestamp, event type) of an Interactions CSV; None without a USER_ID column."""
    events: list[tuple[str, str, float, str]] = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = {c.upper(): c for c in reader.fieldnames or []}
            if "USER_ID" not in columns or "ITEM_ID" not in columns:
                return None
            time_column, type_column = columns.get("TIMESTAMP"), columns.get("EVENT_TYPE")
            for line, row in enumerate(reader, start=2):
                try:
                    # Without TIMESTAMP, later rows are more recent.
                    timestamp = float(row[time_column]) if time_column else float(line)
                except ValueError:
                    raise PublishError(f"{path}:{line}: TIMESTAMP must be a number") from None
                event_type = (row[type_column] or "") if type_column else ""
                events.append((row[columns["USER_ID"]], row[columns["ITEM_ID"]], timestamp, event_type))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PublishError(f"{path}: cannot read interactions: {exc}") from None
    return events


def read_context_factors(path: Path) -> dict[str, dict[str, list[float]]]:
    """``{"DEVICE": {"phone": [..dims..], "desktop": [...]}, ...}`` from a JSON file."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise PublishError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(raw, dict) or not all(
        isinstance(v, dict) and all(isinstance(vec, list) for vec in v.values()) for v in raw.values()
    ):
        raise PublishError(f'{path}: expected {{"FIELD": {{"value": [numbers...], ...}}, ...}}')
    return raw


# -- publishing --------------------------------------------------------------------------------


class PublishInputs(NamedTuple):
    """What ``lambda-personalize publish`` takes: a solution's files on disk."""

    solution: str
    recipe: Recipe
    item_ids: Path
    item_factors: Path | None = None
    user_ids: Path | None = None
    user_factors: Path | None = None
    interactions: Path | None = None
    items: Path | None = None
    users: Path | None = None
    context_factors: Path | None = None
    popularity: Path | None = None
    version: str | None = None


def publish_files(
    bucket: ModelBucket,
    inputs: PublishInputs,
    *,
    region: str,
    account: str,
    campaign: str | None = None,
    exist_ok: bool = False,
) -> dict[str, Any]:
    """Read, check and publish a solution version (and point ``campaign`` at it).

    ``exist_ok``: a version that is already published (content-addressed: the same inputs) is
    kept as it is instead of refused; its campaign is still pointed at it.
    """
    item_ids = read_ids(inputs.item_ids)
    popularity = None
    if inputs.popularity:
        popularity = read_matrix(inputs.popularity)
    elif inputs.interactions:
        popularity = count_interactions(inputs.interactions, item_ids)
    item_factors = read_matrix(inputs.item_factors) if inputs.item_factors else None
    extras = prepare_extras(
        item_ids,
        item_factors.shape[1] if item_factors is not None and item_factors.ndim == 2 else 0,
        items=read_items_csv(inputs.items, item_ids) if inputs.items else None,
        users=read_users_csv(inputs.users) if inputs.users else None,
        interactions=read_interaction_events(inputs.interactions) if inputs.interactions else None,
        context=read_context_factors(inputs.context_factors) if inputs.context_factors else None,
    )
    prepared = prepare_version(
        solution=inputs.solution,
        recipe=inputs.recipe,
        region=region,
        account=account,
        item_ids=item_ids,
        item_factors=item_factors,
        user_ids=read_user_ids(inputs.user_ids) if inputs.user_ids else (),
        user_factors=read_matrix(inputs.user_factors, mmap=True) if inputs.user_factors else None,
        popularity=popularity,
        version=inputs.version,
        extra_files=extras,
    )
    manifest = upload_version(bucket, prepared, exist_ok=exist_ok)
    out: dict[str, Any] = {
        "solutionVersionArn": manifest.solution_version_arn,
        "recipe": manifest.recipe.value,
        "items": manifest.num_items,
        "users": manifest.num_users,
        "dimensions": manifest.dimensions,
    }
    if campaign:
        out["campaignArn"] = put_campaign(bucket, campaign, manifest).campaign_arn
    return out
