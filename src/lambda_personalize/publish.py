"""Publishing solution versions and campaigns to the model bucket.

Everything is validated before the first byte is uploaded; the manifest is written last,
so a version that failed half-way does not exist for the serving functions. A solution
version is immutable: publishing to an existing version is refused.
"""

from __future__ import annotations

import csv
import io
import json
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from personalize_core.artifacts import (
    MANIFEST,
    ArrayName,
    CampaignPointer,
    FileEntry,
    Manifest,
    Recipe,
    campaign_key,
    crc32_hex,
    encode_ids,
    sha256_hex,
    version_prefix,
)
from personalize_core.attributes import ITEMS as ITEMS_PREFIX
from personalize_core.attributes import encode_context, encode_interactions, encode_table, encode_users
from personalize_core.errors import InvalidInputException
from personalize_core.ids import CompactIds, hash_index
from personalize_core.names import check_name, make_arn, parse_arn
from personalize_core.npy import encode_npy, npy_header
from personalize_core.requests import ID_MAX
from personalize_core.scoring import log_normalisers

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class PublishError(Exception):
    """Input that cannot become a solution version; nothing has been uploaded."""


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


def read_matrix(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
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
    return _check_ids(ids, f"{path}: USER_ID"), columns


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


def prepare_extras(
    item_ids: Sequence[str],
    dimensions: int,
    *,
    items: Mapping[str, Sequence[str]] | None = None,
    users: tuple[Sequence[str], Mapping[str, Sequence[str]]] | None = None,
    interactions: Sequence[tuple[str, str, float, str]] | None = None,
    context: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> dict[str, bytes]:
    """The optional files of a version (see personalize_core.attributes for the layout)."""
    files: dict[str, bytes] = {}
    if items:
        files.update(encode_table(ITEMS_PREFIX, items, len(item_ids)))
    if users is not None:
        files.update(encode_users(*users))
    if interactions:
        files.update(encode_interactions({item: i for i, item in enumerate(item_ids)}, interactions))
    if context:
        if not dimensions:
            raise PublishError("context vectors need a model with item factors")
        try:
            files.update(encode_context(context, dimensions))
        except ValueError as exc:
            raise PublishError(f"context factors: {exc}") from None
    return files


# -- validating --------------------------------------------------------------------------------


def _check_ids(ids: Sequence[str], what: str) -> list[str]:
    if not ids:
        raise PublishError(f"{what} is empty")
    seen: set[str] = set()
    for i, value in enumerate(ids):
        if not value or len(value) > ID_MAX or "\n" in value or "\r" in value:
            raise PublishError(
                f"{what}[{i}] {value[:40]!r} must be 1-{ID_MAX} characters without line breaks"
            )
        if value in seen:
            raise PublishError(f"{what} has a duplicate id {value!r}")
        seen.add(value)
    return list(ids)


def _check_matrix(array: np.ndarray, rows: int, what: str, dims: int | None = None) -> np.ndarray:
    if array.dtype.kind != "f":
        raise PublishError(f"{what} must hold floats, not {array.dtype}")
    if array.ndim != 2:
        raise PublishError(f"{what} must be 2-dimensional [rows, dims], got shape {list(array.shape)}")
    if array.shape[0] != rows:
        raise PublishError(f"{what} has {array.shape[0]} rows but there are {rows} ids")
    if array.shape[1] == 0 or (dims is not None and array.shape[1] != dims):
        raise PublishError(f"{what} has {array.shape[1]} dimensions, expected {dims or 'at least 1'}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
        matrix = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(matrix).all():
        raise PublishError(f"{what} holds NaN or infinite values (after conversion to float32)")
    return matrix


@dataclass(frozen=True, slots=True)
class PreparedVersion:
    manifest: Manifest
    files: dict[str, bytes]


def prepare_version(
    *,
    solution: str,
    recipe: Recipe,
    region: str,
    account: str,
    item_ids: Sequence[str],
    item_factors: np.ndarray | None = None,
    user_ids: Sequence[str] = (),
    user_factors: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
    version: str | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    precompute_normalisers: bool = True,
) -> PreparedVersion:
    """Validate the inputs and encode the files of a solution version. No I/O.

    ``extra_files`` are the optional items/users/interactions/context files (``prepare_extras``).
    ``precompute_normalisers`` (USER_PERSONALIZATION): store every user's softmax log-normaliser,
    so serving runs no exp over the catalog; it costs a float64 users x items product here.
    """
    try:
        check_name(solution, "solution")
        if version is not None:
            check_name(version, "version")
    except InvalidInputException as exc:
        raise PublishError(exc.message) from None
    items = _check_ids(item_ids, "item ids")
    files: dict[str, bytes] = {ArrayName.ITEM_IDS.value: encode_ids(items)}
    files[ArrayName.ITEM_IDS_INDEX.value] = _id_index(files[ArrayName.ITEM_IDS.value], len(items))
    dims = 0
    users: list[str] = []

    if recipe.needs_item_factors:
        if item_factors is None:
            raise PublishError(f"a {recipe.value} solution needs item factors")
        matrix = _check_matrix(item_factors, len(items), "item factors")
        dims = matrix.shape[1]
        # Column after column: [d, items] in bytes, the layout the scorer streams (loaded without a copy).
        files[ArrayName.ITEM_FACTORS.value] = encode_npy(matrix, fortran_order=True)
    if recipe.needs_user_factors:
        if user_factors is None or not user_ids:
            raise PublishError(f"a {recipe.value} solution needs user ids and user factors")
        users = _check_ids(user_ids, "user ids")
        files[ArrayName.USER_IDS.value] = encode_ids(users)
        files[ArrayName.USER_IDS_INDEX.value] = _id_index(files[ArrayName.USER_IDS.value], len(users))
        user_matrix = _check_matrix(user_factors, len(users), "user factors", dims)
        files[ArrayName.USER_FACTORS.value] = encode_npy(user_matrix)
        if recipe is Recipe.USER_PERSONALIZATION and precompute_normalisers:
            files[ArrayName.USER_LOG_NORMALISERS.value] = encode_npy(log_normalisers(matrix, user_matrix))

    if popularity is None:
        if recipe is Recipe.POPULAR_ITEMS:
            raise PublishError(
                "a POPULAR_ITEMS solution needs popularity (an Interactions CSV or a .npy vector)"
            )
        popularity = np.zeros(len(items), dtype=np.float32)
    popularity = np.asarray(popularity)
    if popularity.shape != (len(items),) or popularity.dtype.kind not in "fiu":
        raise PublishError(
            f"popularity must be a numeric vector of {len(items)} values, got {popularity.dtype}"
            f"{list(popularity.shape)}"
        )
    popularity = popularity.astype(np.float32)
    if not np.isfinite(popularity).all() or (popularity < 0).any():
        raise PublishError("popularity must be finite and non-negative")
    files[ArrayName.POPULARITY.value] = encode_npy(popularity)
    files.update(extra_files or {})

    entries = {name: _entry(name, data) for name, data in files.items()}
    if version is None:
        # Content-addressed by default: the same inputs give the same version id.
        fingerprint = sha256_hex("".join(f"{n}:{e.sha256}" for n, e in sorted(entries.items())).encode())
        version = fingerprint[:16]
    arn = str(make_arn(region, account, "solution", solution, version))
    manifest = Manifest(arn, solution, version, recipe, len(items), len(users), dims, time.time(), entries)
    return PreparedVersion(manifest, files)


def _id_index(encoded_ids: bytes, count: int) -> bytes:
    """The ids' sorted hashes, so that a load need not hash them (personalize_core.ids)."""
    return encode_npy(hash_index(CompactIds(encoded_ids, count)))


def _entry(name: str, data: bytes) -> FileEntry:
    crc32 = crc32_hex(zlib.crc32(data))
    if not name.endswith(".npy"):
        return FileEntry(sha256_hex(data), len(data), crc32=crc32)
    header = npy_header(data)  # our own encode_npy wrote it: always complete
    assert header is not None
    return FileEntry(
        sha256_hex(data), len(data), header.dtype.str, header.shape, header.fortran_order, crc32=crc32
    )


# -- uploading ---------------------------------------------------------------------------------


def _exists(s3: S3Client, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def upload_version(s3: S3Client, bucket: str, prepared: PreparedVersion) -> Manifest:
    manifest = prepared.manifest
    prefix = version_prefix(manifest.solution, manifest.version)
    if _exists(s3, bucket, prefix + MANIFEST):
        raise PublishError(
            f"solution version {manifest.solution_version_arn} already exists (versions are immutable)"
        )
    for name, data in prepared.files.items():
        s3.upload_fileobj(io.BytesIO(data), bucket, prefix + name)
    body = json.dumps(manifest.to_json(), indent=2).encode()
    s3.put_object(Bucket=bucket, Key=prefix + MANIFEST, Body=body, ContentType="application/json")
    return manifest


def read_manifest(s3: S3Client, bucket: str, solution_version_arn: str) -> Manifest:
    try:
        solution, version = parse_arn(solution_version_arn, "solutionVersionArn", "solution", parts=2).path
    except InvalidInputException as exc:
        raise PublishError(exc.message) from None
    key = version_prefix(solution, version) + MANIFEST
    if not _exists(s3, bucket, key):
        raise PublishError(f"solution version {solution_version_arn} does not exist in s3://{bucket}")
    return Manifest.from_json(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def put_campaign(s3: S3Client, bucket: str, name: str, manifest: Manifest) -> CampaignPointer:
    """Create the campaign, or switch it to ``manifest``'s version (one atomic S3 write)."""
    try:
        check_name(name, "campaign")
    except InvalidInputException as exc:
        raise PublishError(exc.message) from None
    version_arn = parse_arn(manifest.solution_version_arn, "solutionVersionArn", "solution", parts=2)
    arn = str(make_arn(version_arn.region, version_arn.account, "campaign", name))
    now = time.time()
    created = now
    key = campaign_key(name)
    if _exists(s3, bucket, key):
        current = CampaignPointer.from_json(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        created = current.created_at
    pointer = CampaignPointer(
        arn, name, manifest.solution_version_arn, manifest.solution, manifest.version, created, now
    )
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(pointer.to_json(), indent=2).encode(),
        ContentType="application/json",
    )
    return pointer


def list_versions(s3: S3Client, bucket: str) -> Iterable[str]:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix="solutions/"):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/" + MANIFEST):
                yield obj["Key"][: -len(MANIFEST)]
