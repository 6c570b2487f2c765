"""A small S3 GET client for the serving path: SigV4 over http.client, retried, resumable.

The serving functions only ever GET objects of one bucket. boto3 would cost a cold start
~0.3 s (importing botocore, loading the S3 service model, building the client) for that; this
costs the import of http.client. What it keeps from botocore's behaviour:
- credentials from the Lambda environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
  AWS_SESSION_TOKEN), and botocore's credential chain (imported then, lazily) when they are absent;
- the endpoint from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (path-style, as botocore does with a
  custom endpoint), else the regional virtual-hosted endpoint;
- S3_MAX_ATTEMPTS attempts in all, exponential backoff with full jitter, on throttling, 5xx,
  timeouts and dropped connections; connect and read timeouts from the settings;
- a streamed object that breaks mid-body resumes where it stopped (a Range GET pinned to the
  first response's ETag), instead of starting again or failing.
And one thing botocore's GET does not offer: ``read_into`` lands the body straight in the caller's
buffer (a model matrix is received once, into the array that serves it), handing each slice to the
caller as it lands (to hash it while the next one is on the wire).
"""

from __future__ import annotations

import datetime
import http.client
import random
import re
import time
from collections.abc import Callable, Iterator
from functools import partial
from urllib.parse import quote, urlsplit

from personalize_core.aws.connections import Endpoint
from personalize_core.aws.sigv4 import Credentials, CredentialsMissing, environment_credentials, sign_v4

_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
_RETRIED_ERRORS = (OSError, http.client.HTTPException)  # timeouts, resets, refused, truncated bodies
_BACKOFF_BASE_SECONDS = 0.1
_BACKOFF_MAX_SECONDS = 5.0
#: read_into's unit: a slice is handed on (to be hashed) while the next one is received, and a
#: transfer that fails with an error (not a plain cut) resumes from the last slice that landed.
_READ_SLICE = 2 << 20


class S3NotFound(Exception):
    """The key does not exist (404)."""


class S3Error(Exception):
    """An S3 error that retrying did not (or cannot) fix."""

    def __init__(self, status: int, code: str, message: str, key: str) -> None:
        super().__init__(f"S3 GET {key} failed: {status} {code} {message}".strip())
        self.status = status
        self.code = code
        self.key = key


class S3SizeMismatch(S3Error):
    """read_into: the object is not the size of the buffer it was to fill (not retried)."""


def _error_code(body: bytes) -> tuple[str, str]:
    text = body[:4096].decode("utf-8", "replace")
    code = re.search(r"<Code>([^<]*)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    return (code.group(1) if code else "", message.group(1) if message else "")


class S3Reader:
    """GETs of one bucket's objects. Thread-safe: a read takes an idle keep-alive connection (or
    opens one) and gives it back once the body has been read to the end."""

    def __init__(
        self,
        bucket: str,
        region: str,
        *,
        endpoint_url: str | None = None,
        max_attempts: int = 5,
        connect_timeout: float = 3.0,
        read_timeout: float = 20.0,
        credentials: Callable[[], Credentials] = environment_credentials,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bucket = bucket
        self.region = region
        if endpoint_url:  # path-style, as botocore addresses a custom endpoint
            parts = urlsplit(endpoint_url)
            scheme, netloc = parts.scheme, parts.netloc
            self._prefix = parts.path.rstrip("/") + "/" + quote(bucket, safe="") + "/"
        elif "." in bucket:  # a dotted name breaks the TLS wildcard of virtual-hosted addressing
            scheme, netloc = "https", f"s3.{region}.amazonaws.com"
            self._prefix = f"/{bucket}/"
        else:
            scheme, netloc = "https", f"{bucket}.s3.{region}.amazonaws.com"
            self._prefix = "/"
        self.endpoint = Endpoint(
            scheme,
            netloc,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            credentials=credentials,
        )
        self.max_attempts = max(1, max_attempts)
        self._sleep = sleep

    # -- public ----------------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """The object's bytes: one read into one bytes object of the object's size (never held twice)."""
        parts = list(self._stream(key, partial(_read_chunk, chunk_size=None)))
        return parts[0] if len(parts) == 1 else b"".join(parts)  # joined only after a resumed read

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes of the object from ``start`` (one ranged GET; resumed like ``get``).
        Raises S3SizeMismatch when the object ends before them, S3NotFound, or S3Error."""
        pieces = self._stream(key, partial(_read_chunk, chunk_size=None), expected_size=length, first=start)
        parts = list(pieces)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def iter_chunks(self, key: str, chunk_size: int = 4 << 20) -> Iterator[bytes]:
        """The object's bytes in chunks of ``chunk_size`` (the last may be shorter)."""
        yield from self._stream(key, partial(_read_chunk, chunk_size=chunk_size))

    def read_into(
        self, key: str, out: memoryview, on_slice: Callable[[memoryview], None] | None = None
    ) -> None:
        """Receive the object into ``out``, which must be exactly the object's size.

        ``on_slice`` is given every received slice of ``out``, in order, once (a resumed transfer
        does not repeat what it had). Raises S3NotFound, S3Error once S3_MAX_ATTEMPTS attempts have
        failed, or S3SizeMismatch; a transfer that breaks resumes where it stopped, as
        ``iter_chunks`` does.
        """

        def receive(response: http.client.HTTPResponse, received: int) -> memoryview:
            # In slices: what landed is kept (and handed on) before the next is read.
            landed = out[received : received + _READ_SLICE]
            return landed[: response.readinto(landed)] if landed else landed

        for landed in self._stream(key, receive, expected_size=len(out)):
            if on_slice is not None:
                on_slice(landed)

    def _stream[Piece: (bytes, memoryview)](
        self,
        key: str,
        receive: Callable[[http.client.HTTPResponse, int], Piece],
        expected_size: int | None = None,
        first: int | None = None,
    ) -> Iterator[Piece]:
        """The object's body, piece by piece: ``receive(response, bytes received so far)`` reads the
        next one (empty at the end). With ``expected_size``, an object of another size is refused.
        With ``first`` too, only the ``expected_size`` bytes from ``first`` are asked for (a range).

        Raises S3NotFound, or S3Error once S3_MAX_ATTEMPTS attempts have failed; a transfer that
        breaks after some bytes resumes from there (the same object: its ETag must not change).
        """
        received = 0
        etag: str | None = None
        attempts = _Attempts(self, key)
        connection: http.client.HTTPConnection | None = None
        try:
            while True:
                try:
                    connection = self.endpoint.acquire()
                    if first is None:
                        response = self._open(connection, key, received, etag)
                    else:
                        assert expected_size is not None
                        last = first + expected_size - 1
                        response = self._open(connection, key, first + received, etag, last)
                    if etag is None:
                        etag = response.getheader("ETag")
                    if expected_size is not None and response.length != expected_size - received:
                        size = received + (response.length or 0)
                        raise S3SizeMismatch(
                            response.status, "SizeMismatch", f"{size} bytes, not {expected_size}", key
                        )
                    while piece := receive(response, received):
                        received += len(piece)
                        yield piece
                    if response.length:  # the server promised more than it sent
                        raise http.client.IncompleteRead(b"", response.length)
                    self.endpoint.release(connection)
                    connection = None
                    return
                except (_Retryable, *_RETRIED_ERRORS) as exc:
                    _close(connection)
                    connection = None
                    attempts.failed(exc)
        finally:
            _close(connection)  # abandoned or failed mid-body: the connection holds unread bytes

    def reset(self) -> None:
        """Forget connections and credentials (after a SnapStart restore both are stale)."""
        self.endpoint.reset()

    # -- internals -------------------------------------------------------------------------------

    def _open(
        self,
        connection: http.client.HTTPConnection,
        key: str,
        offset: int,
        etag: str | None,
        last: int | None = None,
    ) -> http.client.HTTPResponse:
        try:
            credentials = self.endpoint.credentials()
        except CredentialsMissing as exc:
            raise S3Error(0, "NoCredentials", str(exc), key) from None
        path = self.path_of(key)
        headers: dict[str, str] = {}
        if offset or last is not None:
            headers["range"] = f"bytes={offset}-{'' if last is None else last}"
            if etag:
                headers["if-match"] = etag
        signed = sign_v4(
            "GET",
            self.endpoint.host,
            path,
            headers,
            credentials,
            self.region,
            datetime.datetime.now(datetime.UTC),
        )
        self.endpoint.connect(connection)
        connection.request("GET", path, headers=signed)
        response = connection.getresponse()
        if response.status in (200, 206):
            if offset and response.status == 200:  # the range was ignored: skip what we have
                skipped = 0
                while skipped < offset:
                    part = response.read(min(offset - skipped, 1 << 20))
                    if not part:
                        raise http.client.IncompleteRead(b"", offset - skipped)
                    skipped += len(part)
            return response
        body = response.read()
        code, message = _error_code(body)
        error = S3Error(response.status, code, message, key)
        if response.status == 404 and code in ("NoSuchKey", ""):
            raise S3NotFound(key)
        if response.status in _RETRIED_STATUSES or code in ("SlowDown", "RequestTimeout"):
            raise _Retryable(error)
        raise error

    def path_of(self, key: str) -> str:
        """The request path of ``key``, URI-encoded as botocore encodes it."""
        return self._prefix + quote(key, safe="/~")


def _read_chunk(response: http.client.HTTPResponse, _received: int, chunk_size: int | None) -> bytes:
    """The next chunk of the body (``None``: all the rest); a cut body gives what did arrive, and
    the length check after it retries the rest."""
    try:
        return response.read(chunk_size)
    except http.client.IncompleteRead as cut:
        return cut.partial


def _close(connection: http.client.HTTPConnection | None) -> None:
    if connection is not None:
        connection.close()


class _Retryable(Exception):
    def __init__(self, error: S3Error) -> None:
        super().__init__(str(error))
        self.error = error


class _Attempts:
    """One read's failures: ``failed`` backs off before the next attempt, or raises the last error."""

    def __init__(self, reader: S3Reader, key: str) -> None:
        self._reader = reader
        self._key = key
        self._failures = 0

    def failed(self, exc: BaseException) -> None:
        self._failures += 1
        if self._failures >= self._reader.max_attempts:
            if isinstance(exc, _Retryable):
                raise exc.error from None
            raise S3Error(0, type(exc).__name__, str(exc), self._key) from exc
        delay = min(_BACKOFF_MAX_SECONDS, _BACKOFF_BASE_SECONDS * 2**self._failures)
        self._reader._sleep(random.uniform(0, delay))
