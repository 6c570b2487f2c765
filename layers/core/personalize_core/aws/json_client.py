"""A client of AWS's JSON protocols (DynamoDB's JSON 1.0, Firehose's JSON 1.1) on http.client.

``call(operation, body)`` POSTs ``body`` to ``/`` with ``X-Amz-Target: <prefix>.<operation>``,
signed with SigV4 (``sigv4.py``), and returns the parsed answer. What it keeps of botocore:
- the endpoint from the service's ``AWS_ENDPOINT_URL_<SERVICE>`` / ``AWS_ENDPOINT_URL`` (read by
  settings.py), else the regional one; credentials from the Lambda environment;
- retries with exponential backoff and full jitter on throttling, 5xx, timeouts and dropped
  connections, up to ``max_attempts`` attempts in all;
- errors by their code (``ConditionalCheckFailedException``...), with the body's other fields
  (``CancellationReasons``) kept.
Thread-safe: a call takes an idle keep-alive connection (or opens one) and gives it back.
"""

from __future__ import annotations

import datetime
import http.client
import json
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from personalize_core.aws.connections import Endpoint
from personalize_core.aws.sigv4 import Credentials, CredentialsMissing, environment_credentials, sign_v4

#: Error codes that mean "slow down" (botocore's throttling codes, DynamoDB's own among them).
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "LimitExceededException",  # DynamoDB: too many concurrent control operations
    }
)
#: Error codes (besides 5xx answers) that a later attempt can get past.
_TRANSIENT_CODES = frozenset({"TransactionInProgressException", "ServiceUnavailableException"})
_RETRIED_ERRORS = (OSError, http.client.HTTPException)
_BACKOFF_BASE_SECONDS = 0.025
_BACKOFF_MAX_SECONDS = 1.0


class AwsError(Exception):
    """An error answer of the service (or, with status 0, no answer at all).

    ``retryable``: a later attempt could succeed (throttling, 5xx, a dropped connection): the
    caller may be told to retry. ``details`` is the error body's other fields.
    """

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    @property
    def throttled(self) -> bool:
        return self.code in THROTTLING_CODES or self.status == 429

    @property
    def retryable(self) -> bool:
        return self.throttled or self.status == 0 or self.status >= 500 or self.code in _TRANSIENT_CODES


class AwsJsonClient:
    """Calls of one JSON-protocol service (``service`` is its signing name)."""

    def __init__(
        self,
        service: str,
        target_prefix: str,
        json_version: str,
        region: str,
        *,
        endpoint_url: str | None = None,
        max_attempts: int = 3,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        credentials: Callable[[], Credentials] = environment_credentials,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.service = service
        self.target_prefix = target_prefix
        self.content_type = f"application/x-amz-json-{json_version}"
        self.region = region
        parts = urlsplit(endpoint_url or f"https://{service}.{region}.amazonaws.com")
        self.endpoint = Endpoint(
            parts.scheme,
            parts.netloc,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            credentials=credentials,
        )
        self._path = parts.path.rstrip("/") + "/"
        self.max_attempts = max(1, max_attempts)
        self._sleep = sleep

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """The service's answer to ``operation``; AwsError once retrying did not (or cannot) help."""
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        failures = 0
        while True:
            try:
                return self._attempt(operation, payload)
            except AwsError as error:
                if not error.retryable:
                    raise
                last = error
            except _RETRIED_ERRORS as exc:
                last = AwsError(0, type(exc).__name__, str(exc))
            failures += 1
            if failures >= self.max_attempts:
                raise last
            delay = min(_BACKOFF_MAX_SECONDS, _BACKOFF_BASE_SECONDS * 2**failures)
            self._sleep(random.uniform(0, delay))

    def reset(self) -> None:
        """Forget connections and credentials (after a SnapStart restore both are stale)."""
        self.endpoint.reset()

    def _attempt(self, operation: str, payload: bytes) -> dict[str, Any]:
        try:
            credentials = self.endpoint.credentials()
        except CredentialsMissing as exc:
            raise AwsError(0, "NoCredentials", str(exc)) from None
        connection = self.endpoint.acquire()
        headers = {"content-type": self.content_type, "x-amz-target": f"{self.target_prefix}.{operation}"}
        signed = sign_v4(
            "POST",
            self.endpoint.host,
            self._path,
            headers,
            credentials,
            self.region,
            datetime.datetime.now(datetime.UTC),
            self.service,
            payload,
        )
        try:
            self.endpoint.connect(connection)
            connection.request("POST", self._path, body=payload, headers=signed)
            response = connection.getresponse()
            data = response.read()
        except BaseException:
            connection.close()
            raise
        self.endpoint.release(connection)
        answer = _parse(data)
        if response.status == 200:
            return answer
        code = str(answer.get("__type") or response.getheader("x-amzn-ErrorType") or "").rpartition("#")[2]
        message = str(answer.get("message") or answer.get("Message") or "")
        raise AwsError(response.status, code.partition(":")[0] or f"HTTP{response.status}", message, answer)


def _parse(data: bytes) -> dict[str, Any]:
    if not data:
        return {}
    try:
        parsed = json.loads(data)
    except ValueError:
        return {"message": data[:200].decode("utf-8", "replace")}
    return parsed if isinstance(parsed, dict) else {}
