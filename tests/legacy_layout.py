"""Solution versions in the layout published before user pages (issue 19), for the tests (and the
benchmark) that check such versions keep serving: the whole user matrix, the user ids and their
hash index, and, optionally, every user's log-normaliser computed at publish time.

The version is first prepared by today's writer (items, popularity, extras as they are written
now); its user files are then replaced by the old ones, byte for byte what the writer of that
time wrote (the same encoders: ``encode_ids``, ``hash_index``, ``encode_npy``).
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

import numpy as np

from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.ids import CompactIds, hash_index
from personalize_core.modelstore.layout import ArrayName, FileEntry, Manifest, Recipe, crc32_hex, encode_ids
from personalize_core.modelstore.npy import encode_npy, npy_header
from personalize_core.modelstore.writer import PreparedVersion, prepare_version, put_campaign, upload_version
from personalize_core.serving.scoring import log_normalisers
from tests.utils import ACCOUNT, REGION


def entry(data: bytes, name: str) -> FileEntry:
    crc32 = crc32_hex(zlib.crc32(data))
    sha256 = hashlib.sha256(data).hexdigest()
    if not name.endswith(".npy"):
        return FileEntry(sha256, len(data), crc32=crc32)
    header = npy_header(data)
    assert header is not None
    return FileEntry(sha256, len(data), header.dtype.str, header.shape, header.fortran_order, crc32=crc32)


def legacy_version(
    prepared: PreparedVersion, model: dict[str, Any], normalisers: bool = True
) -> PreparedVersion:
    """``prepared`` (a user recipe) with its users in the old layout; the version id gets "-old"."""
    manifest = prepared.manifest
    users = list(model["user_ids"])
    user_factors = np.ascontiguousarray(model["user_factors"], dtype=np.float32)
    item_factors = np.asarray(model["item_factors"], dtype=np.float32)
    replaced = (ArrayName.USER_PAGES_INDEX.value, ArrayName.COLD_USER.value)
    files = {name: data for name, data in prepared.files.items() if name not in replaced}
    kept = set(files)
    ids = encode_ids(users)
    files[ArrayName.USER_IDS.value] = ids
    files[ArrayName.USER_IDS_INDEX.value] = encode_npy(hash_index(CompactIds(ids, len(users))))
    files[ArrayName.USER_FACTORS.value] = encode_npy(user_factors)
    if normalisers and manifest.recipe is Recipe.USER_PERSONALIZATION:
        files[ArrayName.USER_LOG_NORMALISERS.value] = encode_npy(log_normalisers(item_factors, user_factors))
    mean = user_factors.astype(np.float64).mean(axis=0)
    cold = np.append(mean, log_normalisers(item_factors, mean[None, :]))
    files[ArrayName.COLD_USER.value] = encode_npy(cold)
    version = f"{manifest.version}-old"
    arn = manifest.solution_version_arn.rsplit("/", 1)[0] + "/" + version
    old = Manifest(
        arn,
        manifest.solution,
        version,
        manifest.recipe,
        manifest.num_items,
        len(users),
        manifest.dimensions,
        manifest.created_at,
        # the files kept from today's writer keep their entries (the item matrix's layout too)
        {name: manifest.files[name] if name in kept else entry(data, name) for name, data in files.items()},
        manifest.dataset_group_arn,
    )
    return PreparedVersion(old, files)


def publish_legacy(
    s3: Any,
    bucket: str,
    solution: str,
    recipe: Recipe,
    model: dict[str, Any],
    campaign: str | None = None,
    normalisers: bool = True,
) -> Manifest:
    """Publish ``model`` in the old layout (a user recipe); returns its manifest."""
    prepared = prepare_version(
        solution=solution,
        recipe=recipe,
        region=REGION,
        account=ACCOUNT,
        item_ids=model["item_ids"],
        item_factors=model["item_factors"],
        user_ids=model["user_ids"],
        user_factors=model["user_factors"],
        popularity=model.get("popularity"),
    )
    bucket_ = ModelBucket(s3, bucket)
    manifest = upload_version(bucket_, legacy_version(prepared, model, normalisers))
    if campaign:
        put_campaign(bucket_, campaign, manifest)
    return manifest
