"""Filters as the serving functions and batch workers see them: records read from the model bucket,
parsed once, and re-read after the campaign-pointer TTL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from personalize_core.arns import parse_arn
from personalize_core.errors import ModelUnavailableError, ResourceNotFoundException
from personalize_core.modelstore.bucket_records import FilterRecord
from personalize_core.modelstore.layout import filter_key
from personalize_core.modelstore.objects import ObjectMissing, S3Objects
from personalize_core.modelstore.store import ModelStore
from personalize_core.observability import logger
from personalize_core.serving.filter_language import FilterProgram, parse_filter


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    record: FilterRecord
    program: FilterProgram


@dataclass(slots=True)
class _Cached:
    compiled: CompiledFilter
    read_at: float


class FilterStore:
    """Filters as the serving functions see them: read from S3, parsed once, re-read after the TTL."""

    def __init__(
        self, objects: S3Objects, ttl_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.objects = objects
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, _Cached] = {}

    def get(self, filter_arn: str, field: str = "filterArn") -> CompiledFilter:
        name = parse_arn(filter_arn, field, "filter").path[0]
        with self._lock:
            cached = self._cache.get(name)
        if cached is None or self._clock() - cached.read_at >= self.ttl_seconds:
            try:
                record = FilterRecord.from_json(self.objects.read_json(filter_key(name)))
            except ObjectMissing:
                with self._lock:
                    self._cache.pop(name, None)
                raise ResourceNotFoundException(f"Filter {filter_arn} does not exist") from None
            except Exception as exc:
                if cached is None:
                    logger.exception("cannot read filter", extra={"filter": name})
                    raise ModelUnavailableError(f"Filter {name} cannot be read now; try again") from exc
                record = cached.compiled.record  # a transient fault: keep the one we have
            if cached is not None and cached.compiled.record == record:
                compiled = cached.compiled
            else:
                compiled = CompiledFilter(record, parse_filter(record.filter_expression))
            cached = _Cached(compiled, self._clock())
            with self._lock:
                self._cache[name] = cached
        if cached.compiled.record.filter_arn != filter_arn:
            raise ResourceNotFoundException(f"Filter {filter_arn} does not exist")
        return cached.compiled


@cache
def filter_store_for(store: ModelStore) -> FilterStore:
    """The filter store beside a model store (same bucket, same TTL): one per warm function."""
    return FilterStore(store.objects, store.pointer_ttl_seconds)
