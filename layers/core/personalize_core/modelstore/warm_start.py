"""A head start for preloading: the campaigns' files are read from S3 while the function imports.

With PRELOAD_CAMPAIGNS set, a serving function loads its campaigns during init. Most of that time
is importing numpy (CPU) and downloading the model (network), one after the other. Called first
thing in the handler module, ``begin_preload`` starts one background thread that reads each
campaign's pointer, then its version's manifest, then the version's files, in the order the load
needs them (the matrices straight into their serving memory), while the main thread goes on
importing. The store (store.py's ``get_store``) takes these reads over: the load then finds its
files waiting, or waits for the rest.

Nothing here decides anything: the thread only reads. A campaign that is missing, malformed or
unreadable is left alone, and the store's own load, which checks everything, reports it. This
module and what it imports are numpy-free: that is the point of it.
"""

from __future__ import annotations

import json
import threading

from personalize_core.arns import parse_arn
from personalize_core.modelstore.bucket_records import CampaignPointer
from personalize_core.modelstore.layout import MANIFEST, Manifest, campaign_key, read_plan, version_prefix
from personalize_core.modelstore.objects import S3Objects
from personalize_core.settings import get_settings

_lock = threading.Lock()
#: The S3 objects the head start reads into (by bucket), until the store takes them over.
_started: dict[str, S3Objects] = {}


def begin_preload() -> threading.Thread | None:
    """Start reading PRELOAD_CAMPAIGNS' files in the background (nothing when it is not set).
    Returns the reading thread (tests wait for it, as a function's imports would)."""
    settings = get_settings()
    if not settings.preload_campaigns or not settings.model_bucket:
        return None
    with _lock:
        if settings.model_bucket in _started:
            return None
        _started[settings.model_bucket] = objects = S3Objects(settings.model_bucket)
    objects.open_read_ahead()
    thread = threading.Thread(
        target=_read_campaigns,
        args=(objects, settings.preload_campaigns),
        name="preload-read-ahead",
        daemon=True,
    )
    thread.start()
    return thread


def take_objects(bucket: str) -> S3Objects | None:
    """The head start's S3 objects, for the store of ``bucket`` to take over (once); else None."""
    with _lock:
        return _started.pop(bucket, None)


def _read_campaigns(objects: S3Objects, campaign_arns: tuple[str, ...]) -> None:
    for arn in campaign_arns:
        try:
            _read_campaign(objects, arn)
        except Exception:  # noqa: S112 - the store's own load of this campaign reports it
            continue


def _read_campaign(objects: S3Objects, campaign_arn: str) -> None:
    name = parse_arn(campaign_arn, "campaignArn", "campaign").path[0]
    raw_pointer = _read(objects, campaign_key(name))
    if raw_pointer is None:
        return
    pointer = CampaignPointer.from_json(json.loads(raw_pointer))
    if pointer.campaign_arn != campaign_arn:
        return
    prefix = version_prefix(pointer.solution, pointer.version)
    raw_manifest = _read(objects, prefix + MANIFEST)
    if raw_manifest is None:
        return
    manifest = Manifest.from_json(json.loads(raw_manifest))
    plan = [(prefix + file, size) for file, size in read_plan(manifest)]
    # Two connections: the matrices (the bulk of the bytes) on this thread, the small files on
    # another (their round trips add up, and the load wants the ids first).
    small_files = [(key, size) for key, size in plan if size is None]
    threading.Thread(target=objects.read_ahead, args=(small_files,), daemon=True).start()
    objects.read_ahead([(key, size) for key, size in plan if size is not None])


def _read(objects: S3Objects, key: str) -> bytes | None:
    """``key``'s bytes, read ahead for the store to take over too; None if it is being read already."""
    claimed = objects.read_ahead([(key, None)])
    return claimed[0].result() if claimed else None
