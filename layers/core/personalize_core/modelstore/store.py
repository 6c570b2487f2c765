"""The S3 model store: campaign pointers and solution versions, loaded lazily and kept warm.

A request asks for a campaign once and gets one immutable model back, so it is answered
entirely by one solution version even while the campaign is being switched. A new version
is loaded completely (and verified) before it replaces the old one; if it cannot be
loaded, the last good version keeps serving.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from typing import NamedTuple

from personalize_core.arns import parse_arn
from personalize_core.errors import (
    ArtifactError,
    InvalidInputException,
    ModelUnavailableError,
    ResourceNotFoundException,
)
from personalize_core.modelstore.bucket_records import CampaignPointer, RecommenderPointer
from personalize_core.modelstore.layout import (
    MANIFEST,
    Manifest,
    campaign_key,
    read_plan,
    recommender_key,
    version_prefix,
)
from personalize_core.modelstore.model import SolutionVersionModel, build_model
from personalize_core.modelstore.objects import ObjectMissing, S3Objects
from personalize_core.modelstore.s3_reader import S3SizeMismatch
from personalize_core.modelstore.users import UserAccess, UserCache
from personalize_core.modelstore.warm_start import take_objects
from personalize_core.observability import logger
from personalize_core.settings import get_settings


class _CachedPointer(NamedTuple):
    pointer: CampaignPointer
    read_at: float


class ModelStore:
    def __init__(
        self,
        objects: S3Objects,
        pointer_ttl_seconds: float = 10.0,
        max_loaded_versions: int = 4,
        clock: Callable[[], float] = time.monotonic,
        user_cache_size: int = 65_536,
        user_fetch_threads: int = 16,
    ) -> None:
        self.objects = objects
        #: Users fetched from the loaded versions' pages (users.py), bounded for the whole process.
        self.user_cache = UserCache(user_cache_size)
        self.user_fetch_threads = user_fetch_threads
        self.pointer_ttl_seconds = pointer_ttl_seconds
        self.max_loaded_versions = max(1, max_loaded_versions)
        self._clock = clock
        self._lock = threading.Lock()
        self._pointers: dict[str, _CachedPointer] = {}
        self._versions: OrderedDict[str, SolutionVersionModel] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        #: The model each campaign served last: what keeps serving if a new version is refused.
        self._serving: dict[str, SolutionVersionModel] = {}
        #: Versions that failed to load, and when: not retried before the pointer TTL has passed.
        #: (The reason is kept so that the answers meanwhile say why.)
        self._refused: dict[str, tuple[float, str]] = {}
        #: The version each campaign served before its current one (solution, version): what
        #: answers when a user page of the current one turns out missing or corrupt.
        self._last_good: dict[str, tuple[str, str]] = {}
        #: A campaign's (or recommender's) ARN -> its key in ``_serving``.
        self._keys: dict[str, str] = {}

    # -- campaigns -------------------------------------------------------------------------------

    def campaign(
        self, campaign_arn: str, field: str = "campaignArn"
    ) -> tuple[CampaignPointer, SolutionVersionModel]:
        """The campaign's pointer and the model it serves now. 404 if there is no such campaign."""
        name = parse_arn(campaign_arn, field, "campaign").path[0]
        pointer = self._pointer(name, campaign_key(name), CampaignPointer.from_json, f"Campaign {name}")
        if pointer.campaign_arn != campaign_arn:
            raise ResourceNotFoundException(f"Campaign {campaign_arn} does not exist")
        return pointer, self._serving_model(name, pointer)

    def recommender(
        self, recommender_arn: str, field: str = "recommenderArn"
    ) -> tuple[CampaignPointer, SolutionVersionModel]:
        """A recommender's pointer (``recommenders/<name>.json``) and its model, served as a
        campaign's. 404 if there is none; InvalidInputException while it is stopped."""
        name = parse_arn(recommender_arn, field, "recommender").path[0]
        key = recommender_key(name)

        def parse(raw: object) -> CampaignPointer:
            pointer = RecommenderPointer.from_json(raw)
            if not pointer.active:
                raise InvalidInputException(f"Recommender {recommender_arn} is not ACTIVE (it is stopped)")
            return pointer.as_campaign()

        pointer = self._pointer(key, key, parse, f"Recommender {recommender_arn}")
        if pointer.campaign_arn != recommender_arn:
            raise ResourceNotFoundException(f"Recommender {recommender_arn} does not exist")
        return pointer, self._serving_model(key, pointer)

    def _pointer(
        self, cache_key: str, key: str, parse: Callable[[object], CampaignPointer], label: str
    ) -> CampaignPointer:
        with self._lock:
            cached = self._pointers.get(cache_key)
        if cached is None or self._clock() - cached.read_at >= self.pointer_ttl_seconds:
            cached = self._refresh_pointer(cache_key, key, parse, label, cached)
        return cached.pointer

    def _refresh_pointer(
        self,
        name: str,
        key: str,
        parse: Callable[[object], CampaignPointer],
        label: str,
        cached: _CachedPointer | None,
    ) -> _CachedPointer:
        try:
            pointer = parse(self.objects.read_json(key))
        except ObjectMissing:
            with self._lock:
                self._pointers.pop(name, None)
            raise ResourceNotFoundException(f"{label} does not exist") from None
        except InvalidInputException:
            with self._lock:
                self._pointers.pop(name, None)
            raise
        except Exception as exc:
            if cached is None:
                logger.exception("cannot read campaign pointer", extra={"campaign": name})
                raise ModelUnavailableError(f"{label} cannot be read now; try again") from exc
            # A transient fault: keep serving what we had, and try again after the next TTL.
            logger.warning(
                "campaign pointer refresh failed; keeping the cached one", extra={"campaign": name}
            )
            pointer = cached.pointer
        fresh = _CachedPointer(pointer, self._clock())
        with self._lock:
            self._pointers[name] = fresh
        return fresh

    def _serving_model(self, name: str, pointer: CampaignPointer) -> SolutionVersionModel:
        key = version_prefix(pointer.solution, pointer.version)
        try:
            with self._lock:
                refused_at, why = self._refused.get(key, (None, ""))
            if refused_at is not None and self._clock() - refused_at < self.pointer_ttl_seconds:
                # (not downloaded again on every request)
                raise ArtifactError(f"it was refused moments ago: {why}")
            model = self.version(pointer.solution, pointer.version)
        except ArtifactError as exc:
            with self._lock:
                if refused_at is None or self._clock() - refused_at >= self.pointer_ttl_seconds:
                    self._refused[key] = (self._clock(), str(exc))
                fallback = self._serving.get(name)
            if fallback is None:  # a cold container: the version the campaign's record served before
                fallback = self._recorded_fallback(pointer)
                if fallback is not None:
                    with self._lock:
                        self._serving[name] = fallback
            if fallback is None:
                raise ModelUnavailableError(
                    f"Solution version {pointer.solution_version_arn} cannot be loaded: {exc}"
                ) from exc
            logger.error(
                "solution version refused; the last good one keeps serving",
                extra={"campaign": name, "refused": pointer.solution_version_arn, "serving": fallback.arn},
            )
            return fallback
        with self._lock:
            before = self._serving.get(name)
            if before is not None and before.arn != model.arn:
                self._last_good[name] = (before.manifest.solution, before.manifest.version)
            self._serving[name] = model
            self._keys[pointer.campaign_arn] = name
            self._refused.pop(key, None)
        return model

    def fall_back(
        self, pointer: CampaignPointer, failed: SolutionVersionModel, error: ArtifactError
    ) -> SolutionVersionModel:
        """A user page of ``failed``, which the campaign (or recommender) of ``pointer`` served, is
        missing or corrupt: the version is refused, as one that fails to load is, and the version
        the campaign served before it answers instead (this container's, else the one the
        campaign's record names), until the pointer's TTL has passed. ModelUnavailableError, naming
        the page, when there is none to fall back on."""
        key = version_prefix(failed.manifest.solution, failed.manifest.version)
        with self._lock:
            name = self._keys.get(pointer.campaign_arn)
            self._refused[key] = (self._clock(), str(error))
            self._versions.pop(key, None)
            previous = self._last_good.get(name) if name is not None else None
            if name is not None and self._serving.get(name) is failed:
                del self._serving[name]
        unavailable = f"Solution version {failed.arn} cannot answer now: {error}"
        model: SolutionVersionModel | None = None
        if previous is not None and version_prefix(*previous) != key:
            try:
                model = self.version(*previous)
            except ArtifactError:
                model = None
        if model is None and pointer.fallback not in (None, failed.arn):
            model = self._recorded_fallback(pointer)  # a container that served no other version
        if model is None:
            raise ModelUnavailableError(unavailable) from error
        logger.error(
            "a user page is missing or corrupt; the last good version answers",
            extra={"refused": failed.arn, "serving": model.arn, "reason": str(error)},
        )
        with self._lock:
            if name is not None:
                self._serving[name] = model
        return model

    def _recorded_fallback(self, pointer: CampaignPointer) -> SolutionVersionModel | None:
        """The version the campaign's record names as served before the current one (a cold
        container has no model of its own to fall back on), or None if there is none to load."""
        if pointer.fallback is None:
            return None
        try:
            solution, version = parse_arn(pointer.fallback, "fallback", "solution", parts=2).path
            return self.version(solution, version)
        except Exception:  # the fallback is unusable too: the caller reports the current version's fault
            logger.exception(
                "the campaign's fallback version cannot be loaded either", extra={"campaign": pointer.name}
            )
            return None

    # -- solution versions -----------------------------------------------------------------------

    def version(self, solution: str, version: str) -> SolutionVersionModel:
        """A loaded solution version: from memory, or loaded once (concurrent callers wait for it)."""
        key = version_prefix(solution, version)
        with self._lock:
            model = self._versions.get(key)
            if model is not None:
                self._versions.move_to_end(key)
                return model
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:
            with self._lock:
                model = self._versions.get(key)
            if model is None:
                model = self._load(key)
                with self._lock:
                    self._versions[key] = model
                    self._evict()
            with self._lock:
                self._loading.pop(key, None)
        return model

    def manifest(self, solution: str, version: str) -> Manifest:
        prefix = version_prefix(solution, version)
        try:
            return Manifest.from_json(self.objects.read_json(prefix + MANIFEST))
        except ObjectMissing:
            raise ArtifactError(f"{prefix}{MANIFEST} does not exist") from None

    def _load(self, prefix: str) -> SolutionVersionModel:
        started = time.perf_counter()
        solution, version = prefix.split("/")[1:3]
        manifest = self.manifest(solution, version)

        objects = self.objects
        objects.prefetch(prefix + name for name, size in read_plan(manifest) if size is None)
        try:
            model = build_model(
                manifest,
                fetch=lambda name: objects.read(prefix + name),
                fetch_chunks=lambda name: objects.read_chunks(prefix + name),
                receive=lambda name, size: objects.receive(prefix + name, size),
                user_access=UserAccess(
                    lambda name, start, length: objects.read_range(prefix + name, start, length),
                    self.user_cache,
                    self.user_fetch_threads,
                ),
            )
        except ArtifactError:
            raise
        except ObjectMissing as exc:
            raise ArtifactError(f"{exc} does not exist") from None
        except S3SizeMismatch as exc:
            raise ArtifactError(f"{exc.key} does not match the manifest's size: {exc}") from None
        except Exception as exc:  # S3 faults that outlived the reader's retries
            raise ArtifactError(f"reading {prefix} failed: {exc}") from exc
        finally:
            objects.forget(prefix)
        logger.info(
            "solution version loaded",
            extra={
                "solutionVersionArn": manifest.solution_version_arn,
                "items": manifest.num_items,
                "users": manifest.num_users,
                "bytes": model.nbytes,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        return model

    def _evict(self) -> None:
        # Versions that campaigns point to now are kept; the least recently used others go first.
        in_use = {version_prefix(c.pointer.solution, c.pointer.version) for c in self._pointers.values()}
        in_use |= {version_prefix(m.manifest.solution, m.manifest.version) for m in self._serving.values()}
        for key in list(self._versions):
            if len(self._versions) <= self.max_loaded_versions:
                break
            if key not in in_use:
                del self._versions[key]


def preload(store: ModelStore, campaign_arns: tuple[str, ...]) -> None:
    """Load the campaigns' models now (a function's init phase, before SnapStart's snapshot).

    A campaign that cannot be loaded is logged and left to the first request, which reports it.
    After a SnapStart restore the S3 client is made anew: the snapshot's connections and
    credentials are stale.
    """
    for arn in campaign_arns:
        try:
            store.campaign(arn)
        except Exception:
            logger.exception("preloading a campaign failed", extra={"campaign": arn})
    store.objects.close_read_ahead()  # warm_start's head start is over: drop what no load took
    try:
        from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]
    except ImportError:  # not on Lambda, or a runtime without SnapStart hooks
        return
    register_after_restore(store.objects.reset_client)


@cache
def get_store() -> ModelStore:
    """The process-wide store of the serving functions (warm invocations reuse it)."""
    settings = get_settings()
    return ModelStore(
        take_objects(settings.model_bucket) or S3Objects(settings.model_bucket),
        pointer_ttl_seconds=settings.campaign_cache_ttl_seconds,
        max_loaded_versions=settings.max_loaded_versions,
        user_cache_size=settings.user_cache_size,
        user_fetch_threads=settings.user_fetch_threads,
    )
