"""The one writer of solution versions: the publish CLI, the local demo and training all write
through here, so the files serving reads have one producer.

Everything is validated before the first byte is uploaded; the manifest is written last, so a
version that failed half-way does not exist for the serving functions. A solution version is
immutable and content-addressed by default: the same inputs give the same version ARN.
"""

from __future__ import annotations

import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from personalize_core.arns import check_name, make_arn, parse_arn
from personalize_core.errors import ArtifactError, InvalidInputException, ResourceNotFoundException
from personalize_core.modelstore.attributes import ITEMS as ITEMS_PREFIX
from personalize_core.modelstore.attributes import encode_context, encode_table, encode_users
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.bucket_records import CampaignPointer, RecommenderPointer
from personalize_core.modelstore.ids import CompactIds, hash_index
from personalize_core.modelstore.inputs import PublishError, check_ids, check_matrix
from personalize_core.modelstore.item_matrix import LAYOUT, encode_item_matrix
from personalize_core.modelstore.layout import (
    MANIFEST,
    ArrayName,
    FileEntry,
    FoldIn,
    Manifest,
    Recipe,
    campaign_key,
    crc32_hex,
    encode_ids,
    recommender_key,
    sha256_hex,
    version_prefix,
)
from personalize_core.modelstore.npy import encode_npy, npy_header
from personalize_core.modelstore.pointers import refusal, switched, verify_version, with_failed_update
from personalize_core.modelstore.recent import RecentRows, from_events
from personalize_core.modelstore.user_writer import write_user_pages

__all__ = [
    "PreparedVersion",
    "PublishError",
    "check_ids",
    "check_matrix",
    "prepare_extras",
    "prepare_version",
    "upload_version",
]


def prepare_extras(
    item_ids: Sequence[str],
    dimensions: int,
    *,
    items: Mapping[str, Sequence[str]] | None = None,
    users: tuple[Sequence[str], Mapping[str, Sequence[str]]] | None = None,
    interactions: Sequence[tuple[str, str, float, str]] | RecentRows | None = None,
    context: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> dict[str, bytes]:
    """The optional files of a version (see personalize_core.modelstore.attributes for the layout)."""
    files: dict[str, bytes] = {}
    if items:
        files.update(encode_table(ITEMS_PREFIX, items, len(item_ids)))
    if users is not None:
        files.update(encode_users(*users))
    if isinstance(interactions, RecentRows):
        files.update(interactions.files())
    elif interactions:
        files.update(from_events({item: i for i, item in enumerate(item_ids)}, interactions).files())
    if context:
        if not dimensions:
            raise PublishError("context vectors need a model with item factors")
        try:
            files.update(encode_context(context, dimensions))
        except ValueError as exc:
            raise PublishError(f"context factors: {exc}") from None
    return files


@dataclass(frozen=True, slots=True)
class PreparedVersion:
    manifest: Manifest
    files: dict[str, bytes]
    #: Files spooled to disk (the user pages), by name; they live as long as ``spool`` does.
    paths: dict[str, Path] = field(default_factory=dict)
    spool: tempfile.TemporaryDirectory[str] | None = None

    @property
    def names(self) -> list[str]:
        return [*self.files, *self.paths]


def prepare_version(
    *,
    solution: str,
    recipe: Recipe,
    region: str,
    account: str,
    item_ids: Sequence[str],
    item_factors: np.ndarray | None = None,
    user_ids: Sequence[str] | bytes = (),
    user_factors: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
    version: str | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    dataset_group_arn: str | None = None,
    fold_in: FoldIn | None = None,
) -> PreparedVersion:
    """Validate the inputs and encode the files of a solution version. No I/O but a spool folder.

    ``extra_files`` are the optional items/users/interactions/context files (``prepare_extras``).
    The users become pages (user_pages.py) spooled to a temporary folder: ``user_factors`` may be
    an mmap'd .npy, read a block at a time, and ``user_ids`` UTF-8 text with one id a line. No
    log-normaliser is computed here (serving computes a user's on first use). User recipes also get
    the cold-user vector (the mean user vector and its normaliser), which scores users the model
    does not know. ``dataset_group_arn``: the dataset group a trained version belongs to (None:
    its solution's, as for every published version). ``fold_in``: how events fold a user into it
    (a trained version's training parameters; None: the defaults).
    """
    try:
        check_name(solution, "solution")
        if version is not None:
            check_name(version, "version")
    except InvalidInputException as exc:
        raise PublishError(exc.message) from None
    items = check_ids(item_ids, "item ids")
    files: dict[str, bytes] = {ArrayName.ITEM_IDS.value: encode_ids(items)}
    files[ArrayName.ITEM_IDS_INDEX.value] = _id_index(files[ArrayName.ITEM_IDS.value], len(items))
    dims = 0
    num_users = 0
    paths: dict[str, Path] = {}
    spool: tempfile.TemporaryDirectory[str] | None = None
    user_pages = None

    if recipe.needs_item_factors:
        if item_factors is None:
            raise PublishError(f"a {recipe.value} solution needs item factors")
        matrix = check_matrix(item_factors, len(items), "item factors")
        dims = matrix.shape[1]
        # The layout the scorer reads (two bfloat16-half planes, item_matrix.py), loaded without a copy.
        files[ArrayName.ITEM_FACTORS.value] = encode_item_matrix(matrix)
    if recipe.needs_user_factors:
        if user_factors is None or not len(user_ids):
            raise PublishError(f"a {recipe.value} solution needs user ids and user factors")
        spool = tempfile.TemporaryDirectory(prefix="user-pages-")
        written = write_user_pages(user_ids, user_factors, matrix, Path(spool.name))
        paths, user_pages, num_users = written.files, written.pages, written.users
        files[ArrayName.USER_PAGES_INDEX.value] = written.index_file
        files[ArrayName.COLD_USER.value] = encode_npy(written.cold_user)

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
        named = [f"{n}:{e.sha256}" for n, e in sorted(entries.items())]
        if user_pages is not None:
            named.append(f"user_pages:{user_pages.sha256}")
        version = sha256_hex("".join(named).encode())[:16]
    arn = str(make_arn(region, account, "solution", solution, version))
    manifest = Manifest(
        arn,
        solution,
        version,
        recipe,
        len(items),
        num_users,
        dims,
        time.time(),
        entries,
        dataset_group_arn,
        fold_in if recipe.needs_user_factors else None,
        user_pages,
    )
    return PreparedVersion(manifest, files, paths, spool)


def _id_index(encoded_ids: bytes, count: int) -> bytes:
    """The ids' sorted hashes, so that a load need not hash them (personalize_core.modelstore.ids)."""
    return encode_npy(hash_index(CompactIds(encoded_ids, count)))


def _entry(name: str, data: bytes) -> FileEntry:
    crc32 = crc32_hex(zlib.crc32(data))
    if not name.endswith(".npy"):
        return FileEntry(sha256_hex(data), len(data), crc32=crc32)
    header = npy_header(data)  # our own encode_npy wrote it: always complete
    assert header is not None
    layout = LAYOUT if name == ArrayName.ITEM_FACTORS.value else None
    return FileEntry(
        sha256_hex(data), len(data), header.dtype.str, header.shape, header.fortran_order, crc32, layout
    )


# -- writing to the bucket --------------------------------------------------------------------


def upload_version(bucket: ModelBucket, prepared: PreparedVersion, exist_ok: bool = False) -> Manifest:
    """Upload a version's files, then its manifest. A version that exists already is refused, or
    (``exist_ok``, for content-addressed versions) left as it is and its manifest returned."""
    manifest = prepared.manifest
    prefix = version_prefix(manifest.solution, manifest.version)
    if bucket.exists(prefix + MANIFEST):
        if exist_ok:
            return read_manifest(bucket, manifest.solution_version_arn)
        raise PublishError(
            f"solution version {manifest.solution_version_arn} already exists (versions are immutable)"
        )
    upload_files(bucket, prepared)
    write_manifest(bucket, manifest)
    return manifest


def upload_files(bucket: ModelBucket, prepared: PreparedVersion) -> None:
    """Every file of a version but its manifest: the version does not exist yet (training writes
    the manifest only once the version's record is ACTIVE, so a stopped version never appears)."""
    prefix = version_prefix(prepared.manifest.solution, prepared.manifest.version)
    for name, data in prepared.files.items():
        bucket.upload(prefix + name, data)
    bucket.upload_paths({prefix + name: path for name, path in prepared.paths.items()})


def write_manifest(bucket: ModelBucket, manifest: Manifest) -> None:
    """The last write of a version: from here on it exists for serving and for the control plane."""
    bucket.write_json(version_prefix(manifest.solution, manifest.version) + MANIFEST, manifest.to_json())


def delete_files(bucket: ModelBucket, prepared: PreparedVersion) -> None:
    """Remove a version's files that never got a manifest (a stopped or failed training)."""
    prefix = version_prefix(prepared.manifest.solution, prepared.manifest.version)
    for name in prepared.names:
        bucket.delete(prefix + name)


def read_manifest(bucket: ModelBucket, solution_version_arn: str) -> Manifest:
    try:
        return bucket.manifest(solution_version_arn)
    except InvalidInputException as exc:
        raise PublishError(exc.message) from None
    except ResourceNotFoundException:
        raise PublishError(
            f"solution version {solution_version_arn} does not exist in s3://{bucket.bucket}"
        ) from None
    except ArtifactError as exc:
        raise PublishError(f"solution version {solution_version_arn}: {exc}") from None


def put_campaign(bucket: ModelBucket, name: str, manifest: Manifest) -> CampaignPointer:
    """Create the campaign, or switch it to ``manifest``'s version (one atomic S3 write), once the
    version's files are verified against its manifest (modelstore/pointers.py). A version that fails
    is refused (PublishError with the reason) and recorded as the campaign's failed update; the
    campaign keeps serving what it served."""
    try:
        check_name(name, "campaign")
    except InvalidInputException as exc:
        raise PublishError(exc.message) from None
    version_arn = parse_arn(manifest.solution_version_arn, "solutionVersionArn", "solution", parts=2)
    arn = str(make_arn(version_arn.region, version_arn.account, "campaign", name))
    now = time.time()
    key = campaign_key(name)
    try:
        current = bucket.read_json(key)
        created = CampaignPointer.from_json(current).created_at if current is not None else now
    except ArtifactError:
        current, created = None, now  # a garbled record: this write replaces it
    try:
        verify_version(bucket, manifest)
    except ArtifactError as exc:
        reason = refusal(manifest, exc)
        if current is not None:
            bucket.write_json(key, with_failed_update(current, manifest.solution_version_arn, reason, now))
            reason += f"; campaign {name} keeps serving {current.get('solutionVersionArn')}"
        raise PublishError(reason) from None
    pointer = CampaignPointer(
        arn, name, manifest.solution_version_arn, manifest.solution, manifest.version, created, now
    )
    record = switched(current, pointer)
    bucket.write_json(key, record)
    return CampaignPointer.from_json(record)


def put_recommender(bucket: ModelBucket, pointer: RecommenderPointer) -> RecommenderPointer:
    """Write a recommender's pointer (one atomic S3 write, as a campaign's)."""
    bucket.write_json(recommender_key(pointer.name), pointer.to_json())
    return pointer


def list_versions(bucket: ModelBucket) -> Iterator[str]:
    """The prefix of every published version (``solutions/<solution>/<version>/``)."""
    for key in bucket.keys("solutions/"):
        if key.endswith("/" + MANIFEST):
            yield key[: -len(MANIFEST)]
