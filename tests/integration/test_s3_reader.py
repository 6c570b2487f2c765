"""The serving path's S3 reader against real (moto) S3 on loopback, through a fault proxy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from personalize_core.modelstore import s3_reader
from personalize_core.modelstore.s3_reader import S3Error, S3NotFound, S3Reader, S3SizeMismatch
from tests.faults import Fault, FaultProxy

BODY = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: chunks never divide it evenly


@pytest.fixture
def proxy(moto_url: str) -> Iterator[FaultProxy]:
    server = FaultProxy(moto_url).start()
    yield server
    server.stop()


@pytest.fixture
def reader(proxy: FaultProxy, s3: Any, bucket: str) -> S3Reader:
    s3.put_object(Bucket=bucket, Key="dir/obj ü.bin", Body=BODY)
    return S3Reader(
        bucket, "us-east-1", endpoint_url=proxy.url, max_attempts=3, read_timeout=1, sleep=lambda _: None
    )


def test_reads_whole_objects_and_chunks(reader: S3Reader) -> None:
    # When an object is read whole and in chunks of 100 KB
    whole = reader.get("dir/obj ü.bin")
    chunks = list(reader.iter_chunks("dir/obj ü.bin", 100_000))
    # Then both are the object's bytes, in full-sized chunks but the last
    assert bytes(whole) == BODY
    assert b"".join(chunks) == BODY
    assert {len(c) for c in chunks[:-1]} == {100_000}


def test_a_missing_key_is_not_found(reader: S3Reader) -> None:
    with pytest.raises(S3NotFound):
        reader.get("no/such/key")


def test_a_body_cut_mid_transfer_resumes_where_it_stopped(reader: S3Reader, proxy: FaultProxy) -> None:
    # Given a connection that dies after 300 KB of the body
    proxy.add(Fault(r"obj", truncate_body_at=300_000))
    # When the object streams in chunks
    data = b"".join(reader.iter_chunks("dir/obj ü.bin", 64 * 1024))
    # Then it is whole, and the second request asked only for the rest, of the same object
    assert data == BODY
    assert len(proxy.headers_seen) == 2
    resumed = {k.lower(): v for k, v in proxy.headers_seen[1].items()}
    assert resumed["range"] == "bytes=300000-"  # every byte received before the cut is kept
    assert resumed["if-match"].strip('"')


def test_a_whole_read_cut_mid_transfer_keeps_what_arrived(reader: S3Reader, proxy: FaultProxy) -> None:
    # Given a connection that dies after 700 KB of the body
    proxy.add(Fault(r"obj", truncate_body_at=700_000))
    # When the object is read whole
    data = reader.get("dir/obj ü.bin")
    # Then it is whole, and the second request asked only for the rest
    assert data == BODY
    assert {k.lower(): v for k, v in proxy.headers_seen[1].items()}["range"] == "bytes=700000-"


def test_read_into_fills_the_buffer_and_hands_over_each_slice_once(
    reader: S3Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given slices of 64 KiB
    monkeypatch.setattr(s3_reader, "_READ_SLICE", 64 * 1024)
    out = bytearray(len(BODY))
    slices: list[bytes] = []
    # When the object is received into a buffer of its size
    reader.read_into("dir/obj ü.bin", memoryview(out), lambda landed: slices.append(bytes(landed)))
    # Then the buffer holds it, and the slices handed over are the object, in order, once
    assert bytes(out) == BODY
    assert b"".join(slices) == BODY
    assert max(len(s) for s in slices) == 64 * 1024


def test_read_into_cut_mid_transfer_resumes_where_it_stopped(
    reader: S3Reader, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given slices of 64 KiB and a connection that dies after 300 KB of the body
    monkeypatch.setattr(s3_reader, "_READ_SLICE", 64 * 1024)
    proxy.add(Fault(r"obj", truncate_body_at=300_000))
    out = bytearray(len(BODY))
    slices: list[bytes] = []
    # When the object is received into a buffer
    reader.read_into("dir/obj ü.bin", memoryview(out), lambda landed: slices.append(bytes(landed)))
    # Then it is whole; the second request asked only for the rest, of the same object; and no
    # byte was handed over twice (a hash of the slices is the object's)
    assert bytes(out) == BODY
    assert b"".join(slices) == BODY
    resumed = {k.lower(): v for k, v in proxy.headers_seen[1].items()}
    assert resumed["range"] == "bytes=300000-"
    assert resumed["if-match"].strip('"')


def test_read_into_a_buffer_of_the_wrong_size_fails_at_once(reader: S3Reader, proxy: FaultProxy) -> None:
    # When the buffer is not the object's size (a manifest that does not match the object)
    with pytest.raises(S3SizeMismatch, match="bytes, not"):
        reader.read_into("dir/obj ü.bin", memoryview(bytearray(len(BODY) - 1)))
    # Then nothing is retried: the object will not change size by asking again
    assert len(proxy.seen) == 1


def test_persistent_errors_stop_after_max_attempts(reader: S3Reader, proxy: FaultProxy) -> None:
    # Given S3 answering 503 to every GET
    proxy.add(Fault(r"obj", status=503, times=100))
    # Then the read fails with S3's status after exactly max_attempts attempts
    with pytest.raises(S3Error) as caught:
        reader.get("dir/obj ü.bin")
    assert caught.value.status == 503
    assert len(proxy.seen) == 3


def test_an_abandoned_stream_does_not_break_the_next_read(reader: S3Reader) -> None:
    # Given a stream read for one chunk, then dropped
    stream = reader.iter_chunks("dir/obj ü.bin", 1000)
    assert next(stream) == BODY[:1000]
    stream.close()
    # Then the thread's next read (a new connection) returns the whole object
    assert bytes(reader.get("dir/obj ü.bin")) == BODY


def test_credentials_come_from_botocores_chain_without_environment_keys(
    reader: S3Reader, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no keys in the environment but a shared credentials file
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = AKIDFROMFILE\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    # When the reader reads
    assert bytes(reader.get("dir/obj ü.bin")) == BODY
    # Then it signed with the file's key
    assert (
        "Credential=AKIDFROMFILE/"
        in {k.lower(): v for k, v in proxy.headers_seen[-1].items()}["authorization"]
    )
    assert os.environ.get("AWS_ACCESS_KEY_ID") is None
