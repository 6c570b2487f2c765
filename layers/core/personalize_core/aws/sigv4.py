"""AWS Signature Version 4, as botocore signs: S3 GETs (``S3SigV4Auth``, with the
``x-amz-content-sha256`` header) and JSON-protocol POSTs (``SigV4Auth``). Tested byte for byte
against botocore's signers (tests/unit/test_s3_signing.py, tests/unit/test_json_client.py).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from typing import NamedTuple

from personalize_core import settings

#: sha256 of an empty body: what a GET signs as its payload.
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


class CredentialsMissing(Exception):
    """No AWS credentials in the environment nor in botocore's chain."""


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None = None


def environment_credentials() -> Credentials:
    """The credentials Lambda puts in the environment; else botocore's chain (profiles, IMDS...)."""
    given = settings.environment_credentials()
    if given is not None:
        return Credentials(*given)
    import botocore.session  # noqa: PLC0415 - the rare path: not on Lambda

    found = botocore.session.get_session().get_credentials()
    if found is None:
        raise CredentialsMissing("no AWS credentials found")
    frozen = found.get_frozen_credentials()
    return Credentials(str(frozen.access_key), str(frozen.secret_key), frozen.token)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def sign_v4(
    method: str,
    host: str,
    path: str,
    headers: dict[str, str],
    credentials: Credentials,
    region: str,
    now: datetime.datetime,
    service: str = "s3",
    payload: bytes = b"",
) -> dict[str, str]:
    """``headers`` plus host, x-amz-date, the token and Authorization (and, for S3,
    x-amz-content-sha256), signed over ``payload``.

    ``path`` is the request's path already URI-encoded (S3 signs it as sent, not normalised); the
    request has no query string.
    """
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    payload_hash = hashlib.sha256(payload).hexdigest() if payload else EMPTY_SHA256
    signed = {name.lower(): value.strip() for name, value in headers.items()}
    signed.update({"host": host, "x-amz-date": stamp})
    if service == "s3":  # S3 alone wants the payload's hash as a header too
        signed["x-amz-content-sha256"] = payload_hash
    if credentials.token:
        signed["x-amz-security-token"] = credentials.token
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            path,
            "",
            "".join(f"{name}:{' '.join(signed[name].split())}\n" for name in names),
            ";".join(names),
            payload_hash,
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
    )
    key = _hmac(f"AWS4{credentials.secret_key}".encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return signed
