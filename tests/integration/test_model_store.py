"""The model store against real (moto) S3: lazy, verified, cached, switched atomically, and safe on faults."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from personalize_core.errors import ModelUnavailableError, ResourceNotFoundException
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.item_matrix import LAYOUT, ItemMatrix
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.npy import encode_npy
from personalize_core.modelstore.store import ModelStore
from personalize_core.modelstore.writer import (
    PublishError,
    prepare_version,
    put_campaign,
    read_manifest,
    upload_version,
)
from personalize_core.serving.scoring import user_top_k
from tests.conftest import publish
from tests.legacy_layout import legacy_version, publish_legacy
from tests.utils import ACCOUNT, REGION, CountingObjects, campaign_arn, random_model, softmax_reference


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(s3: Any, bucket: str) -> tuple[ModelStore, CountingObjects, Clock]:
    objects = CountingObjects(bucket)
    clock = Clock()
    return ModelStore(objects, pointer_ttl_seconds=10, clock=clock), objects, clock


def test_loads_lazily_once_and_rereads_the_pointer_after_the_ttl(setup: Any, s3: Any, bucket: str) -> None:
    store, objects, clock = setup
    arn = publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, random_model(20, 5, 4), campaign="c")
    # Nothing is read before the first request
    assert objects.reads == []
    _, model = store.campaign(campaign_arn("c"))
    assert model.arn == arn
    assert model.item_factors is not None
    assert model.item_factors.shape == (20, 4)
    first_reads = len(objects.reads)
    # Warm requests within the TTL read nothing
    store.campaign(campaign_arn("c"))
    assert len(objects.reads) == first_reads
    # After the TTL only the pointer is read again (the version is immutable and cached)
    clock.now = 11
    store.campaign(campaign_arn("c"))
    assert objects.reads[first_reads:] == ["campaigns/c.json"]


def test_unknown_campaign_and_foreign_arn_are_not_found(setup: Any, s3: Any, bucket: str) -> None:
    store, _, _ = setup
    publish(s3, bucket, "sol", Recipe.POPULAR_ITEMS, random_model(5, 0, 2), campaign="c")
    with pytest.raises(ResourceNotFoundException):
        store.campaign(campaign_arn("missing"))
    with pytest.raises(ResourceNotFoundException):  # same name, another account
        store.campaign("arn:aws:personalize:us-east-1:999999999999:campaign/c")


def test_switch_to_a_new_version_after_the_ttl(setup: Any, s3: Any, bucket: str) -> None:
    store, _, clock = setup

    first = publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, random_model(20, 5, 4), campaign="c")
    second = publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, random_model(30, 5, 4, seed=3))
    old = store.campaign(campaign_arn("c"))[1]
    put_campaign(ModelBucket(s3, bucket), "c", read_manifest(ModelBucket(s3, bucket), second))
    # Within the TTL the old version still answers; a request holds its model for its whole life
    assert store.campaign(campaign_arn("c"))[1] is old
    assert old.arn == first
    clock.now = 10
    new = store.campaign(campaign_arn("c"))[1]
    assert new.arn == second
    assert new.num_items == 30
    assert old.num_items == 20  # the old object is untouched


def replace_array(
    s3: Any, bucket: str, key: str, array: np.ndarray, fortran_order: bool, layout: str | None = None
) -> None:
    """Rewrite a version's .npy file, and its manifest entry to agree (checksum, size, dtype, shape,
    order, layout: None for a float32 item matrix, as versions published before the planes hold)."""
    raw = encode_npy(array, fortran_order=fortran_order)
    s3.put_object(Bucket=bucket, Key=key, Body=raw)
    prefix, file_name = key.rsplit("/", 1)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read())
    entry = manifest["files"][file_name]
    entry.update(sha256=hashlib.sha256(raw).hexdigest(), crc32=f"{zlib.crc32(raw):08x}", bytes=len(raw))
    entry.update(dtype=array.dtype.str, shape=list(array.shape))
    entry.pop("order", None)
    entry.pop("layout", None)
    if layout is not None:
        entry["layout"] = layout
    if fortran_order:
        entry["order"] = "F"
    s3.put_object(Bucket=bucket, Key=f"{prefix}/manifest.json", Body=json.dumps(manifest).encode())


def corrupt(s3: Any, bucket: str, version_arn: str, file_name: str, change: str) -> None:
    solution, version = version_arn.split(":solution/")[1].split("/")
    key = f"solutions/{solution}/{version}/{file_name}"
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if change == "truncate":
        s3.put_object(Bucket=bucket, Key=key, Body=data[: len(data) // 2])
    elif change == "flip":
        s3.put_object(Bucket=bucket, Key=key, Body=data[:-1] + bytes([data[-1] ^ 1]))
    elif change == "flip-sha256-only":  # a version published before manifests listed CRC-32s
        strip_crc32s(s3, bucket, f"solutions/{solution}/{version}/manifest.json")
        s3.put_object(Bucket=bucket, Key=key, Body=data[:-1] + bytes([data[-1] ^ 1]))
    elif change == "delete":
        s3.delete_object(Bucket=bucket, Key=key)
    elif change == "nan" and file_name == "item_factors.npy":
        # A NaN with a manifest that agrees: only the content check can catch it (in the planes: a
        # NaN's high half is 0x7fc0, whatever its low half)
        planes = np.load(io.BytesIO(data))
        item_matrix = ItemMatrix(planes.copy(), *NAN_SHAPE)
        item_matrix.planes[0][item_matrix.offsets(np.array([1]))[0, 2]] = 0x7FC0
        replace_array(s3, bucket, key, item_matrix.planes, fortran_order=False, layout=LAYOUT)
    elif change in ("nan-c-order", "nan-f-order"):
        # ...and in a float32 item matrix, as versions published before the planes hold (C order,
        # then Fortran order)
        array = ItemMatrix(np.load(io.BytesIO(data)), *NAN_SHAPE).matrix()
        array[1, 2] = np.nan
        replace_array(s3, bucket, key, array, fortran_order=change == "nan-f-order")
    elif change == "nan":
        array = np.load(io.BytesIO(data)).copy()
        array[1, 2] = np.nan
        replace_array(s3, bucket, key, array, fortran_order=False)


#: The shape of the models the corruption tests publish (random_model(20, 5, 4)).
NAN_SHAPE = (20, 4)


BAD_VERSIONS = [
    # (file, change, why verification refuses it (None: only a load can see it), why a load does)
    ("item_factors.npy", "truncate", "is 224 bytes, its manifest says 448", "does not match"),
    ("user_pages.index.npy", "flip", "does not match its manifest's checksum", "does not match"),
    ("cold_user.npy", "flip", "does not match its manifest's checksum", "does not match"),
    ("popularity.npy", "flip", "does not match its manifest's checksum", "does not match"),
    ("item_factors.npy", "flip-sha256-only", "does not match its manifest's checksum", "does not match"),
    ("item_ids.txt", "flip-sha256-only", "does not match its manifest's checksum", "does not match"),
    ("item_ids.txt", "delete", "item_ids.txt is missing", "does not exist"),
    ("manifest.json", "delete", "manifest.json does not exist", "does not exist"),
    ("item_factors.npy", "nan", None, "NaN"),
    ("item_factors.npy", "nan-c-order", None, "NaN"),
    ("item_factors.npy", "nan-f-order", None, "NaN"),
    # versions published before user pages (tests/legacy_layout.py)
    ("user_factors.npy", "flip", "does not match its manifest's checksum", "does not match"),
    ("user_factors.npy", "nan", None, "NaN"),
    ("user_ids.txt", "delete", "user_ids.txt is missing", "does not exist"),
]


@pytest.mark.parametrize(("file_name", "change", "refused", "reason"), BAD_VERSIONS)
def test_a_bad_new_version_is_refused_and_the_last_good_one_keeps_serving(
    setup: Any, s3: Any, bucket: str, file_name: str, change: str, refused: str | None, reason: str
) -> None:
    store, objects, clock = setup
    models = ModelBucket(s3, bucket)

    good = publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, random_model(20, 5, 4), campaign="c")
    if file_name.startswith("user_") and not file_name.startswith("user_pages"):
        model = random_model(20, 5, 4, seed=9)
        bad = publish_legacy(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, model).solution_version_arn
    else:
        bad = publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, random_model(20, 5, 4, seed=9))
    assert store.campaign(campaign_arn("c"))[1].arn == good
    manifest = read_manifest(models, bad)
    corrupt(s3, bucket, bad, file_name, change)
    with contextlib.suppress(PublishError):  # the manifest as it is now (unless it was deleted)
        manifest = read_manifest(models, bad)
    if refused is not None:
        # When the campaign is pointed at it, Then the switch is refused, saying why, and recorded
        with pytest.raises(PublishError, match=f"{bad} cannot be served: .*{refused}"):
            put_campaign(models, "c", manifest)
        record = json.loads(s3.get_object(Bucket=bucket, Key="campaigns/c.json")["Body"].read())
        assert record["solutionVersionArn"] == good
        assert record["failedUpdate"]["solutionVersionArn"] == bad
        # (a file corrupted after its version was verified: the pointer names it anyway)
        record |= {
            "solutionVersionArn": bad,
            "version": bad.rsplit("/", 1)[1],
            "fallbackSolutionVersionArn": good,
        }
        s3.put_object(Bucket=bucket, Key="campaigns/c.json", Body=json.dumps(record).encode())
    else:
        # A content fault whose manifest agrees passes verification: only a load can see it
        put_campaign(models, "c", manifest)
    clock.now = 10
    # The corrupt version is refused; the good one answers
    assert store.campaign(campaign_arn("c"))[1].arn == good
    # ...and the bad one is not downloaded again on every request
    reads = len(objects.reads)
    store.campaign(campaign_arn("c"))
    assert len(objects.reads) == reads
    # A cold store falls back to the version the campaign's record served before (it used to 503)
    cold = ModelStore(CountingObjects(bucket))
    assert cold.campaign(campaign_arn("c"))[1].arn == good
    # ...and with no version to fall back on, it is a clear 503, with the reason
    record = json.loads(s3.get_object(Bucket=bucket, Key="campaigns/c.json")["Body"].read())
    del record["fallbackSolutionVersionArn"]
    s3.put_object(Bucket=bucket, Key="campaigns/c.json", Body=json.dumps(record).encode())
    with pytest.raises(ModelUnavailableError, match=reason):
        ModelStore(CountingObjects(bucket)).campaign(campaign_arn("c"))


def test_campaign_pointing_to_a_missing_version(setup: Any, s3: Any, bucket: str) -> None:
    store, _, _ = setup
    arn = publish(s3, bucket, "sol", Recipe.POPULAR_ITEMS, random_model(5, 0, 2), campaign="c")
    pointer = json.loads(s3.get_object(Bucket=bucket, Key="campaigns/c.json")["Body"].read())
    pointer.update(version="gone", solutionVersionArn=arn.rsplit("/", 1)[0] + "/gone")
    s3.put_object(Bucket=bucket, Key="campaigns/c.json", Body=json.dumps(pointer).encode())
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        store.campaign(campaign_arn("c"))


def test_concurrent_first_requests_load_a_version_once(setup: Any, s3: Any, bucket: str) -> None:

    store, objects, _ = setup
    publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, random_model(2000, 50, 32), campaign="c")
    with ThreadPoolExecutor(8) as pool:
        models = list(pool.map(lambda _: store.campaign(campaign_arn("c"))[1], range(16)))
    assert len({id(m) for m in models}) == 1
    assert sum(key.endswith("item_factors.npy") for key in objects.reads) == 1


class SmallChunks(CountingObjects):
    """Chunks of 7 bytes: rows and the .npy header straddle chunk boundaries."""

    def __init__(self, bucket: str) -> None:
        super().__init__(bucket)
        self.streamed: list[str] = []

    def read_chunks(self, key: str, chunk_size: int = 4 << 20) -> Iterator[bytes]:
        self.streamed.append(key)
        return super().read_chunks(key, 7)


@pytest.mark.parametrize("order", ["planes", "F", "C"])
@pytest.mark.parametrize("layout", ["pages", "legacy", "legacy-without-normalisers"])
def test_item_matrix_lands_as_its_planes_and_scores_match_the_formula(
    s3: Any, bucket: str, layout: str, order: str
) -> None:
    # Given a version published with user pages (normalisers computed on first use), or as older
    # versions were, with the whole user matrix, with or without every user's log-normaliser; its
    # item matrix as two bfloat16-half planes (as published now) or a float32 matrix in Fortran or
    # C order (as published before)
    model = random_model(2301, 6, 5, seed=4)
    prepared = prepare_version(
        solution="sol",
        recipe=Recipe.USER_PERSONALIZATION,
        region=REGION,
        account=ACCOUNT,
        item_ids=model["item_ids"],
        item_factors=model["item_factors"],
        user_ids=model["user_ids"],
        user_factors=model["user_factors"],
    )
    if layout != "pages":
        prepared = legacy_version(prepared, model, normalisers=layout == "legacy")
    manifest = upload_version(ModelBucket(s3, bucket), prepared)
    entry = manifest.files["item_factors.npy"]
    assert (entry.layout, entry.dtype, entry.shape) == (LAYOUT, "<u2", (2, 2301 * 5))
    if order != "planes":
        key = f"solutions/sol/{manifest.version}/item_factors.npy"
        replace_array(s3, bucket, key, model["item_factors"], fortran_order=order == "F")
    put_campaign(
        ModelBucket(s3, bucket), "c", read_manifest(ModelBucket(s3, bucket), manifest.solution_version_arn)
    )
    # When a store reads it (a C-order matrix in chunks that split rows and the header)
    objects = SmallChunks(bucket)
    loaded = ModelStore(objects).campaign(campaign_arn("c"))[1]
    # Then the planes hold the published matrix bit for bit, read-only
    assert loaded.item_factors is not None
    np.testing.assert_array_equal(loaded.item_factors.matrix(), model["item_factors"])
    assert not loaded.item_factors.planes.flags.writeable
    assert loaded.item_factors.nbytes == model["item_factors"].nbytes  # the float32 matrix's memory
    assert loaded.item_max_norm >= float(
        np.linalg.norm(model["item_factors"].astype(np.float64), axis=1).max()
    )
    if order == "planes":
        # ...received whole, straight into the array it is served from (a view of the download's
        # buffer: no conversion and no second copy), not streamed in chunks
        base = loaded.item_factors.planes
        while isinstance(base.base, np.ndarray):
            base = base.base
        assert base.dtype == np.uint8
        assert base.nbytes == manifest.files["item_factors.npy"].size
    if order == "C":
        assert [k.rsplit("/", 1)[1] for k in objects.streamed] == ["item_factors.npy"]
    else:
        assert objects.streamed == []
    # ...every user has their published vector, and a normaliser unless an old version lacks them
    assert loaded.users is not None
    for user in range(6):
        stored = loaded.users.get(f"user-{user}")
        assert stored is not None
        assert stored.row == user
        np.testing.assert_array_equal(stored.vector, model["user_factors"][user])
        assert (stored.log_normaliser is None) is (layout == "legacy-without-normalisers")
        # ...and their scores are the formula's, with or without the normaliser
        chosen, scores = user_top_k(
            loaded.item_factors,
            stored.vector,
            25,
            log_normaliser=stored.log_normaliser,
            max_norm=loaded.item_max_norm,
        )
        reference = softmax_reference(model["item_factors"], stored.vector)
        expected = np.argsort(-reference, kind="stable")[:25]
        assert chosen.tolist() == expected.tolist()
        np.testing.assert_allclose(scores, reference[expected], rtol=1e-6)


def strip_crc32s(s3: Any, bucket: str, manifest_key: str) -> None:
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    for entry in manifest["files"].values():
        del entry["crc32"]
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest).encode())


def test_a_version_published_with_sha256s_only_loads_the_same(s3: Any, bucket: str) -> None:
    # Given the same model published twice, one version's manifest without CRC-32s (as published
    # before manifests listed them): a load then checks every file against its SHA-256
    model = random_model(30, 5, 4)
    publish(s3, bucket, "new", Recipe.USER_PERSONALIZATION, model, campaign="new")
    publish(s3, bucket, "old", Recipe.USER_PERSONALIZATION, model, campaign="old")
    old_manifest = next(
        k for k in list_keys(s3, bucket) if k.startswith("solutions/old/") and k.endswith("json")
    )
    strip_crc32s(s3, bucket, old_manifest)
    # When both are loaded
    _, new = ModelStore(CountingObjects(bucket)).campaign(campaign_arn("new"))
    _, old = ModelStore(CountingObjects(bucket)).campaign(campaign_arn("old"))
    # Then they hold the same arrays
    assert old.manifest.files["item_factors.npy"].crc32 is None
    assert new.manifest.files["item_factors.npy"].crc32 is not None
    assert old.item_factors is not None
    assert new.item_factors is not None
    assert np.array_equal(old.item_factors.planes, new.item_factors.planes)
    assert old.users is not None
    assert new.users is not None
    for user in model["user_ids"]:
        old_user, new_user = old.users.get(user), new.users.get(user)
        assert old_user is not None
        assert new_user is not None
        assert np.array_equal(old_user.vector, new_user.vector)
        assert old_user.log_normaliser == new_user.log_normaliser
    assert list(old.item_ids) == list(new.item_ids)


def test_wrong_log_normalisers_are_refused(s3: Any, bucket: str) -> None:
    # Given a version in the old layout whose log-normalisers file has the wrong length (but a
    # matching checksum)
    publish_legacy(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, random_model(30, 5, 4), campaign="c")
    manifest_key = next(k for k in list_keys(s3, bucket) if k.endswith("manifest.json"))
    prefix = manifest_key.rsplit("/", 1)[0] + "/"
    data = encode_npy(np.zeros(4))
    s3.put_object(Bucket=bucket, Key=prefix + "user_log_normalisers.npy", Body=data)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    manifest["files"]["user_log_normalisers.npy"] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "dtype": "<f8",
        "shape": [4],
    }
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    # Then loading refuses it with a clear reason
    with pytest.raises(ModelUnavailableError, match="log-normalisers"):
        ModelStore(CountingObjects(bucket)).campaign(campaign_arn("c"))


def list_keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
