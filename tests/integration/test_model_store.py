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


def replace_array(s3: Any, bucket: str, key: str, array: np.ndarray, fortran_order: bool) -> None:
    """Rewrite a version's .npy file, and its manifest entry to agree (checksum, size, order)."""
    raw = encode_npy(array, fortran_order=fortran_order)
    s3.put_object(Bucket=bucket, Key=key, Body=raw)
    prefix, file_name = key.rsplit("/", 1)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read())
    entry = manifest["files"][file_name]
    entry.update(sha256=hashlib.sha256(raw).hexdigest(), crc32=f"{zlib.crc32(raw):08x}", bytes=len(raw))
    entry.pop("order", None)
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
    elif change in ("nan", "nan-c-order"):
        # A NaN with a manifest that agrees: only the content check can catch it ("nan-c-order":
        # in a C-order file, as versions published before the Fortran-order item matrix hold)
        published = np.load(io.BytesIO(data))
        array = published.copy()
        array[1, 2] = np.nan
        as_published = not published.flags.c_contiguous
        replace_array(s3, bucket, key, array, fortran_order=as_published and change == "nan")


BAD_VERSIONS = [
    # (file, change, why verification refuses it (None: only a load can see it), why a load does)
    ("item_factors.npy", "truncate", "is 224 bytes, its manifest says 448", "does not match"),
    ("user_factors.npy", "flip", "does not match its manifest's checksum", "does not match"),
    ("popularity.npy", "flip", "does not match its manifest's checksum", "does not match"),
    ("item_factors.npy", "flip-sha256-only", "does not match its manifest's checksum", "does not match"),
    ("item_ids.txt", "flip-sha256-only", "does not match its manifest's checksum", "does not match"),
    ("item_ids.txt", "delete", "item_ids.txt is missing", "does not exist"),
    ("manifest.json", "delete", "manifest.json does not exist", "does not exist"),
    ("item_factors.npy", "nan", None, "NaN"),
    ("item_factors.npy", "nan-c-order", None, "NaN"),
    ("user_factors.npy", "nan", None, "NaN"),
]


@pytest.mark.parametrize(("file_name", "change", "refused", "reason"), BAD_VERSIONS)
def test_a_bad_new_version_is_refused_and_the_last_good_one_keeps_serving(
    setup: Any, s3: Any, bucket: str, file_name: str, change: str, refused: str | None, reason: str
) -> None:
    store, objects, clock = setup
    models = ModelBucket(s3, bucket)

    good = publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, random_model(20, 5, 4), campaign="c")
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


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("normalisers", [True, False])
def test_item_matrix_lands_in_dimension_major_layout_and_scores_match_the_formula(
    s3: Any, bucket: str, normalisers: bool, order: str
) -> None:
    # Given a version published with (or, as older versions, without) users' log-normalisers, its
    # item matrix in Fortran order (as published now) or C order (as published before)
    model = random_model(301, 6, 5, seed=4)
    prepared = prepare_version(
        solution="sol",
        recipe=Recipe.USER_PERSONALIZATION,
        region=REGION,
        account=ACCOUNT,
        item_ids=model["item_ids"],
        item_factors=model["item_factors"],
        user_ids=model["user_ids"],
        user_factors=model["user_factors"],
        precompute_normalisers=normalisers,
    )
    manifest = upload_version(ModelBucket(s3, bucket), prepared)
    assert manifest.files["item_factors.npy"].fortran_order
    if order == "C":
        key = f"solutions/sol/{manifest.version}/item_factors.npy"
        replace_array(s3, bucket, key, model["item_factors"], fortran_order=False)
    put_campaign(
        ModelBucket(s3, bucket), "c", read_manifest(ModelBucket(s3, bucket), manifest.solution_version_arn)
    )
    # When a store reads it (a C-order matrix in chunks that split rows and the header)
    objects = SmallChunks(bucket)
    loaded = ModelStore(objects).campaign(campaign_arn("c"))[1]
    # Then the matrix is the published one, laid out [d, items] in memory, read-only
    assert loaded.item_factors is not None
    np.testing.assert_array_equal(loaded.item_factors, model["item_factors"])
    assert loaded.item_factors.T.flags.c_contiguous
    assert not loaded.item_factors.flags.writeable
    if order == "F":
        # ...received whole, straight into the array it is served from (a view of the download's
        # buffer: no transposition and no second copy), not streamed in chunks
        base = loaded.item_factors
        while isinstance(base.base, np.ndarray):
            base = base.base
        assert base.dtype == np.uint8
        assert base.nbytes == manifest.files["item_factors.npy"].size
        assert objects.streamed == []
    else:
        assert [k.rsplit("/", 1)[1] for k in objects.streamed] == ["item_factors.npy"]
    assert (loaded.user_log_normalisers is not None) is normalisers
    # ...and every user's scores are the formula's, with or without the precomputed normaliser
    for user in range(6):
        vector = model["user_factors"][user]
        chosen, scores = user_top_k(
            loaded.item_factors, vector, 25, log_normaliser=loaded.log_normaliser(user)
        )
        reference = softmax_reference(model["item_factors"], vector)
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
    assert np.array_equal(old.item_factors, new.item_factors)
    assert old.user_factors is not None
    assert new.user_factors is not None
    assert np.array_equal(old.user_factors, new.user_factors)
    assert list(old.item_ids) == list(new.item_ids)


def test_wrong_log_normalisers_are_refused(s3: Any, bucket: str) -> None:
    # Given a version whose log-normalisers file has the wrong length (but a matching checksum)
    publish(s3, bucket, "sol", Recipe.USER_PERSONALIZATION, random_model(30, 5, 4), campaign="c")
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
