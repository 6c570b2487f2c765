"""Reads of the model bucket: the only place that touches S3 on the serving path.

Numpy-free on purpose: a function that preloads its campaigns starts reading the model here
(warm_start.py) before it imports numpy, so that the download and the imports overlap.
"""

from __future__ import annotations

import json
import mmap
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from functools import partial
from typing import Any, NamedTuple

from personalize_core.errors import ArtifactError
from personalize_core.modelstore.background import in_background
from personalize_core.modelstore.layout import RunningCrc32
from personalize_core.modelstore.s3_reader import S3NotFound, S3Reader
from personalize_core.settings import get_settings


class ObjectMissing(Exception):
    pass


class Received(NamedTuple):
    """An object received whole into a buffer of its own (a model matrix's serving memory)."""

    buffer: mmap.mmap | bytearray
    #: Its CRC-32 (8 hex digits, as the manifest lists it), computed as it arrived.
    crc32: str


def create_s3_reader(bucket: str) -> S3Reader:
    """The serving functions' S3 reader: endpoint, retries and timeouts from the settings."""
    settings = get_settings()
    return S3Reader(
        bucket,
        settings.region,
        endpoint_url=settings.s3_endpoint_url or None,
        max_attempts=settings.s3_max_attempts,
        connect_timeout=settings.s3_connect_timeout_seconds,
        read_timeout=settings.s3_read_timeout_seconds,
    )


def allocate(size: int) -> mmap.mmap | bytearray:
    """Memory for an object of ``size`` bytes: large ones in private anonymous pages (untouched until
    received into, backed by huge pages where the kernel allows, page-aligned for numpy's kernels)."""
    if size < 1 << 20:
        return bytearray(size)
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        memory.madvise(mmap.MADV_HUGEPAGE)
    return memory


class S3Objects:
    """The model bucket's objects, read whole, received into buffers, streamed, or read ahead."""

    def __init__(self, bucket: str, reader_factory: Callable[[str], S3Reader] = create_s3_reader) -> None:
        self.bucket = bucket
        self._reader_factory = reader_factory
        self._reader: S3Reader | None = None
        self._lock = threading.Lock()
        #: Reads started ahead of time: a later read(key) or receive(key) takes the result over.
        self._ahead: dict[str, Future[Any]] = {}
        #: While a head start reads ahead (warm_start.py): the keys read or taken over since, which
        #: it must not read again (the load got there first).
        self._consumed: set[str] | None = None

    @property
    def reader(self) -> S3Reader:
        with self._lock:
            if self._reader is None:
                self._reader = self._reader_factory(self.bucket)
            return self._reader

    def reset_client(self) -> None:
        self._reader = None

    # -- reads -----------------------------------------------------------------------------------

    def read(self, key: str) -> bytes:
        ahead = self._take(key)
        return ahead.result() if ahead is not None else self._get(key)

    def read_json(self, key: str) -> Any:
        try:
            return json.loads(self.read(key))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{key} is not valid JSON: {exc}") from None

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes of the object from ``start`` (one ranged GET: a page of user vectors)."""
        try:
            return self.reader.get_range(key, start, length)
        except S3NotFound:
            raise ObjectMissing(key) from None

    def receive(self, key: str, size: int) -> Received:
        """The object received into a buffer of its own, which must be ``size`` bytes (else
        S3SizeMismatch), with its CRC-32 (computed on a side thread while the next slice arrives)."""
        ahead = self._take(key)
        return ahead.result() if ahead is not None else self._receive(key, size)

    def read_chunks(self, key: str, chunk_size: int = 4 << 20) -> Iterator[bytes]:
        """The object's bytes in chunks, so a large matrix never sits in memory twice.

        A background thread reads ahead (at most two chunks), so that receiving the next chunk
        overlaps with checking and transposing this one (hashlib and numpy release the GIL).
        """
        ahead: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=2)
        stop = threading.Event()

        def produce() -> None:
            try:
                for chunk in self.reader.iter_chunks(key, chunk_size):
                    while not stop.is_set():
                        try:
                            ahead.put(chunk, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                ahead.put(None)
            except BaseException as exc:  # handed to the consumer, raised there
                ahead.put(ObjectMissing(key) if isinstance(exc, S3NotFound) else exc)

        threading.Thread(target=produce, daemon=True).start()
        try:
            while True:
                item = ahead.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    # -- reading ahead ---------------------------------------------------------------------------

    def prefetch(self, keys: Iterable[str]) -> None:
        """Start reading ``keys`` as bytes in the background, one thread each (``read`` then waits
        for them). Keys already being read ahead are left to that read."""
        for key, future in self._claim((key, None) for key in keys):
            in_background(partial(self._fill, key, None, future))

    def open_read_ahead(self) -> None:
        """A head start begins: from now on ``read_ahead`` skips what a load has read already."""
        with self._lock:
            self._consumed = set()

    def close_read_ahead(self) -> None:
        """The head start is over (init is done): drop what it read and no load took."""
        with self._lock:
            self._consumed = None
            self._ahead.clear()

    def read_ahead(self, wanted: Sequence[tuple[str, int | None]]) -> list[Future[Any]]:
        """Read ``(key, size)`` pairs one after the other on the calling thread: as bytes where the
        size is None, else received (``receive``). Later reads of these keys take the results over;
        the returned futures are the new ones, in order, for the caller to look at too. Keys being
        read already, or read since ``open_read_ahead``, are skipped."""
        with self._lock:
            consumed = self._consumed
            if consumed is None:
                return []  # closed: init is over
            wanted = [(key, size) for key, size in wanted if key not in consumed]
        claimed = self._claim(wanted)
        sizes = dict(wanted)
        for key, future in claimed:
            self._fill(key, sizes[key], future)
        return [future for _, future in claimed]

    def forget(self, prefix: str = "") -> None:
        """Drop what was read ahead under ``prefix`` and not taken (a load is over, failed or not)."""
        with self._lock:
            for key in [key for key in self._ahead if key.startswith(prefix)]:
                del self._ahead[key]

    def _claim(self, wanted: Iterable[tuple[str, int | None]]) -> list[tuple[str, Future[Any]]]:
        claimed = []
        with self._lock:
            for key, _ in wanted:
                if key not in self._ahead:
                    future: Future[Any] = Future()
                    self._ahead[key] = future
                    claimed.append((key, future))
        return claimed

    def _take(self, key: str) -> Future[Any] | None:
        with self._lock:
            if self._consumed is not None:
                self._consumed.add(key)
            return self._ahead.pop(key, None)

    def _fill(self, key: str, size: int | None, future: Future[Any]) -> None:
        try:
            future.set_result(self._get(key) if size is None else self._receive(key, size))
        except BaseException as exc:  # raised to whoever takes the read over
            future.set_exception(exc)

    # -- S3 --------------------------------------------------------------------------------------

    def _get(self, key: str) -> bytes:
        try:
            return self.reader.get(key)
        except S3NotFound:
            raise ObjectMissing(key) from None

    def _receive(self, key: str, size: int) -> Received:
        buffer = allocate(size)
        try:
            with _Crc32Along() as crc32:
                self.reader.read_into(key, memoryview(buffer), crc32.update)
        except S3NotFound:
            raise ObjectMissing(key) from None
        return Received(buffer, crc32.digest.hexdigest())


class _Crc32Along:
    """CRC-32 of slices handed over in order, computed on its own thread while the next slice is
    received (zlib lets go of the GIL on large buffers), so the check costs no wall time when the
    network is the slower of the two. A handed-over slice must not change afterwards."""

    def __init__(self) -> None:
        self.digest = RunningCrc32()
        self._slices: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="crc32", daemon=True)

    def __enter__(self) -> _Crc32Along:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._slices.put(None)
        self._thread.join()

    def update(self, data: memoryview) -> None:
        self._slices.put(data)

    def _run(self) -> None:
        while (data := self._slices.get()) is not None:
            self.digest.update(data)
