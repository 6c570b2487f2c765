"""The model bucket through boto3: the control plane's and the publisher's reads and writes.

The serving path reads the same bucket through ``objects.S3Objects`` (no boto3 on its cold path);
everything that lists, writes or deletes records goes through ``ModelBucket``.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personalize_core.arns import parse_arn
from personalize_core.aws.clients import create_s3_client
from personalize_core.errors import ArtifactError, ResourceNotFoundException
from personalize_core.modelstore.layout import MANIFEST, Manifest, version_prefix
from personalize_core.observability import logger
from personalize_core.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: S3's largest single PUT.
SINGLE_PUT_MAX = 5 * 1024**3


class ModelBucket:
    """Reads and writes of the model bucket's records and versions."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    # -- objects ---------------------------------------------------------------------------------

    def read_json(self, key: str) -> Any | None:
        """The object as JSON; None if it does not exist; ArtifactError if it is not JSON."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ArtifactError(f"{key} is not valid JSON: {exc}") from None

    def read(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise ArtifactError(f"{key} does not exist") from None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def upload(self, key: str, data: bytes) -> None:
        """Write a file of any size, with S3 storing its CRC-32 (what verifying a version compares:
        modelstore/pointers.py). Up to 5 GiB in one PUT, so S3 keeps the whole object's CRC-32 (a
        multipart upload would keep a checksum of its parts' checksums instead); beyond, multipart."""
        if len(data) <= SINGLE_PUT_MAX:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ChecksumAlgorithm="CRC32")
        else:
            extra = {"ChecksumAlgorithm": "CRC32"}
            self.client.upload_fileobj(io.BytesIO(data), self.bucket, key, ExtraArgs=extra)

    def stored_crc32(self, key: str) -> tuple[int, str | None] | None:
        """(size, the whole object's CRC-32 as 8 hex digits if S3 stored one) of an object, from one
        HEAD; None if there is no such object."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        stored, kind = head.get("ChecksumCRC32"), head.get("ChecksumType", "FULL_OBJECT")
        crc32 = None
        # A multipart object's checksum is one of its parts' checksums ("...-<parts>"): not comparable.
        if stored and kind == "FULL_OBJECT" and "-" not in stored:
            crc32 = base64.b64decode(stored).hex()
        return int(head["ContentLength"]), crc32

    def chunks(self, key: str, size: int = 1 << 20) -> Iterator[bytes]:
        """The object's bytes, a chunk at a time (ArtifactError if it does not exist)."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except self.client.exceptions.NoSuchKey:
            raise ArtifactError(f"{key} does not exist") from None
        try:
            yield from body.iter_chunks(size)
        finally:
            body.close()

    def upload_paths(self, paths: Mapping[str, Path], threads: int = 8) -> None:
        """Write files from disk (a version's user pages: thousands of ~1 MiB files), several at
        once (boto3's clients are thread-safe; its pool holds 10 connections)."""
        if not paths:
            return
        from concurrent.futures import ThreadPoolExecutor

        def upload(item: tuple[str, Path]) -> None:
            extra = {"ChecksumAlgorithm": "CRC32"}  # (as ``upload``: S3 keeps the file's CRC-32)
            self.client.upload_file(str(item[1]), self.bucket, item[0], ExtraArgs=extra)

        with ThreadPoolExecutor(min(threads, len(paths))) as pool:
            for _ in pool.map(upload, paths.items()):
                pass

    def write_json(self, key: str, value: dict[str, Any]) -> None:
        body = json.dumps(value, indent=2).encode()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def create_json(self, key: str, value: dict[str, Any], exists: Exception) -> None:
        """Write a new record, atomically refusing (``exists``) if one is there: two concurrent
        creates of one name cannot both succeed (an S3 conditional write, If-None-Match: *)."""
        body = json.dumps(value, indent=2).encode()
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", IfNoneMatch="*"
            )
        except self.client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                raise exists from None
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def keys(self, prefix: str, start_after: str = "") -> Iterator[str]:
        """Every key under ``prefix``, in key order, after ``start_after``."""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix, StartAfter=start_after or prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def sizes(self, prefix: str) -> dict[str, int]:
        """The size of every object under ``prefix``, by key (a listing: no object is read)."""
        paginator = self.client.get_paginator("list_objects_v2")
        return {
            obj["Key"]: obj["Size"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        }

    def objects(self, prefix: str) -> Iterator[tuple[str, float]]:
        """(key, LastModified as epoch seconds) of every object under ``prefix``, in key order."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"], obj["LastModified"].timestamp()

    # -- solution versions -----------------------------------------------------------------------

    def manifests(self, prefix: str = "solutions/") -> Iterator[Manifest]:
        """Every readable manifest under ``prefix``; an unreadable one is logged and skipped."""
        for key in self.keys(prefix):
            if key.endswith("/" + MANIFEST):
                try:
                    raw = self.read_json(key)
                    if raw is not None:
                        yield Manifest.from_json(raw)
                except ArtifactError as exc:
                    logger.error("an unreadable manifest is skipped", extra={"key": key, "reason": str(exc)})

    def newest_manifest(self, solution: str) -> Manifest | None:
        found = [m for m in self.manifests(f"solutions/{solution}/") if m.solution == solution]
        return max(found, key=lambda m: m.created_at) if found else None

    def manifest(self, solution_version_arn: str, field: str = "solutionVersionArn") -> Manifest:
        """The manifest of a solution version, by ARN; ResourceNotFoundException if there is none."""
        solution, version = parse_arn(solution_version_arn, field, "solution", parts=2).path
        raw = self.read_json(version_prefix(solution, version) + MANIFEST)
        manifest = Manifest.from_json(raw) if raw is not None else None
        if manifest is None or manifest.solution_version_arn != solution_version_arn:
            raise ResourceNotFoundException(f"Solution version {solution_version_arn} does not exist")
        return manifest


@cache
def get_model_bucket() -> ModelBucket:
    """The process-wide model bucket (the settings' bucket, one boto3 client)."""
    return ModelBucket(create_s3_client(), get_settings().model_bucket)
