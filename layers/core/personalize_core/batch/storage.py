"""The job's S3 data (input, parts, output), read and written with the job role's credentials.

The worker assumes the job's ``roleArn`` (STS AssumeRole) and uses only those credentials for
the caller's buckets, so a job can read and write exactly what that role can: the service's own
role never touches the caller's data. The model bucket is read with the service's role (store.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from personalize_core.aws.clients import create_job_client
from personalize_core.errors import InvalidInputException

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: S3 error codes that retrying will not fix: the job fails with the reason instead.
PERMANENT_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "NoSuchBucket",
        "NoSuchKey",
        "404",
        "403",
        "NotFound",
        "InvalidBucketName",
        "KMS.NotFoundException",
        "InvalidRequest",
    }
)
SESSION_NAME = re.compile(r"[^\w+=,.@-]")
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


@dataclass(frozen=True, slots=True)
class S3Path:
    bucket: str
    key: str

    @property
    def is_prefix(self) -> bool:
        """A path ending in ``/`` (or a bare bucket) names every object under it."""
        return self.key == "" or self.key.endswith("/")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_path(value: str, field: str) -> S3Path:
    if not value.startswith("s3://"):
        raise InvalidInputException(
            f"{field} must be an s3:// location (s3://bucket/key or s3://bucket/prefix/)"
        )
    bucket, _, key = value[len("s3://") :].partition("/")
    if BUCKET_NAME.fullmatch(bucket) is None:
        raise InvalidInputException(f"{field} {value!r} does not name a valid S3 bucket")
    return S3Path(bucket, key)


class StorageError(Exception):
    """An S3 or STS call failed. ``permanent`` when trying again cannot help."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class InputChanged(StorageError):
    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


def _error(action: str, exc: Exception) -> StorageError:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        message = exc.response.get("Error", {}).get("Message") or code
        return StorageError(f"{action}: {code} ({message})", permanent=code in PERMANENT_CODES)
    return StorageError(f"{action}: {exc}", permanent=False)


class JobStorage:
    """S3 calls for one job, with its role's credentials."""

    def __init__(self, client: S3Client, kms_key_arn: str | None = None) -> None:
        self.client = client
        self.kms_key_arn = kms_key_arn

    def head(self, bucket: str, key: str) -> tuple[int, str] | None:
        """(size, ETag) of an object, or None if it does not exist."""
        try:
            answer = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise _error(f"reading s3://{bucket}/{key}", exc) from exc
        except BotoCoreError as exc:
            raise _error(f"reading s3://{bucket}/{key}", exc) from exc
        return int(answer["ContentLength"]), str(answer["ETag"])

    def list_objects(self, bucket: str, prefix: str) -> list[tuple[str, int, str]]:
        """(key, size, ETag) of every object under a prefix, in key order."""
        found: list[tuple[str, int, str]] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                found.extend((o["Key"], int(o["Size"]), str(o["ETag"])) for o in page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise _error(f"listing s3://{bucket}/{prefix}", exc) from exc
        return sorted(found)

    def read_from(self, bucket: str, key: str, start: int, etag: str) -> Iterator[bytes]:
        """The object's bytes from ``start`` on, in chunks; the object must still be the planned one."""
        try:
            body = self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-", IfMatch=etag)[
                "Body"
            ]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                raise InputChanged(f"s3://{bucket}/{key} changed while the job was running") from exc
            raise _error(f"reading s3://{bucket}/{key}", exc) from exc
        except BotoCoreError as exc:
            raise _error(f"reading s3://{bucket}/{key}", exc) from exc
        try:
            yield from body.iter_chunks(1 << 16)
        except BotoCoreError as exc:
            raise _error(f"reading s3://{bucket}/{key}", exc) from exc
        finally:
            body.close()

    def get(self, bucket: str, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        except (ClientError, BotoCoreError) as exc:
            raise _error(f"reading s3://{bucket}/{key}", exc) from exc

    def put(self, bucket: str, key: str, body: bytes | Any) -> None:
        """Write a whole object (one PUT: readers see all of it or none of it)."""
        extra: dict[str, Any] = {}
        if self.kms_key_arn:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_arn}
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        except (ClientError, BotoCoreError) as exc:
            raise _error(f"writing s3://{bucket}/{key}", exc) from exc

    def delete(self, bucket: str, keys: list[str]) -> None:
        try:
            for start in range(0, len(keys), 1000):
                self.client.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True},
                )
        except (ClientError, BotoCoreError) as exc:
            raise _error(f"deleting from s3://{bucket}", exc) from exc


def assume_role_storage(
    role_arn: str,
    session_name: str,
    kms_key_arn: str | None = None,
    sts_factory: Callable[[], Any] = create_job_client,
    s3_factory: Callable[[dict[str, Any]], Any] = create_job_client,
) -> JobStorage:
    """JobStorage acting as ``role_arn`` (STS AssumeRole); StorageError if the role cannot be assumed."""
    name = SESSION_NAME.sub("-", session_name)[:64].ljust(2, "-")
    try:
        credentials = sts_factory().assume_role(RoleArn=role_arn, RoleSessionName=name)["Credentials"]
    except (ClientError, BotoCoreError) as exc:
        error = _error(
            f"cannot assume roleArn {role_arn} (its trust policy must let the stack's batch worker role, "
            "the BatchWorkerRoleArn output, sts:AssumeRole it)",
            exc,
        )
        # A role that does not trust us, or does not exist, will not start to tomorrow.
        error.permanent = isinstance(exc, ClientError)
        raise error from exc
    return JobStorage(s3_factory(credentials), kms_key_arn)
