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
from collections import Counter
from collections.abc import Iterable, Sequence
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
    encode_ids,
    encode_npy,
    sha256_hex,
    version_prefix,
)
from personalize_core.errors import InvalidInputException
from personalize_core.names import check_name, make_arn, parse_arn
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
    precompute_normalisers: bool = True,
) -> PreparedVersion:
    """Validate the inputs and encode the files of a solution version. No I/O.

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
    dims = 0
    users: list[str] = []

    if recipe.needs_item_factors:
        if item_factors is None:
            raise PublishError(f"a {recipe.value} solution needs item factors")
        matrix = _check_matrix(item_factors, len(items), "item factors")
        dims = matrix.shape[1]
        files[ArrayName.ITEM_FACTORS.value] = encode_npy(matrix)
    if recipe.needs_user_factors:
        if user_factors is None or not user_ids:
            raise PublishError(f"a {recipe.value} solution needs user ids and user factors")
        users = _check_ids(user_ids, "user ids")
        files[ArrayName.USER_IDS.value] = encode_ids(users)
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

    entries = {name: _entry(name, data) for name, data in files.items()}
    if version is None:
        # Content-addressed by default: the same inputs give the same version id.
        fingerprint = sha256_hex("".join(f"{n}:{e.sha256}" for n, e in sorted(entries.items())).encode())
        version = fingerprint[:16]
    arn = str(make_arn(region, account, "solution", solution, version))
    manifest = Manifest(arn, solution, version, recipe, len(items), len(users), dims, time.time(), entries)
    return PreparedVersion(manifest, files)


def _entry(name: str, data: bytes) -> FileEntry:
    if not name.endswith(".npy"):
        return FileEntry(sha256_hex(data), len(data))
    stream = io.BytesIO(data)
    np.lib.format.read_magic(stream)
    shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    return FileEntry(sha256_hex(data), len(data), dtype.str, tuple(shape))


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
