"""Campaign pointers point only at verified versions, and remember the one before (issue 16).

Every way of pointing a campaign at a solution version (the CLI's ``campaign`` and ``publish
--campaign``, CreateCampaign, UpdateCampaign) first verifies the version: its manifest is the one
the caller read, and each file it lists exists with the manifest's size and checksum. The checksum
is S3's own stored CRC-32 when the object has one (ModelBucket.upload stores it): one HEAD a file,
no data read; a file without one (versions published before, multipart uploads over 5 GiB) is read
and its CRC-32 (or SHA-256) computed. A version that fails is refused with the reason, and the
campaign keeps what it served.

The record (``campaigns/<name>.json``) holds, beside the pointer and the request's options:
- ``fallbackSolutionVersionArn``: the version it served before the current one (verified when it
  was set). A cold container that cannot load the current version serves that one (modelstore/
  store.py), as a warm one keeps serving what it had;
- ``failedUpdate``: the last refused update (version, reason, time) until a later one succeeds;
  DescribeCampaign reports it as ``latestCampaignUpdate`` with ``CREATE FAILED``.
What verification cannot see (a file whose content is wrong but matches its manifest, e.g. a NaN
matrix written with its own checksum) is still refused at load time, and the fallback serves.
"""

from __future__ import annotations

from typing import Any

from personalize_core.errors import ArtifactError
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.bucket_records import FALLBACK, CampaignPointer
from personalize_core.modelstore.layout import MANIFEST, Manifest, version_prefix
from personalize_core.modelstore.page_layout import USER_PAGES_FOLDER

FAILED_UPDATE = "failedUpdate"


def verify_version(bucket: ModelBucket, manifest: Manifest) -> int:
    """Check a version against its manifest; ArtifactError naming the first file that does not
    match. Returns how many bytes had to be read (0 when S3's stored checksums sufficed)."""
    prefix = version_prefix(manifest.solution, manifest.version)
    stored_manifest = bucket.read_json(prefix + MANIFEST)
    if stored_manifest is None:
        raise ArtifactError(f"{MANIFEST} does not exist")
    if Manifest.from_json(stored_manifest) != manifest:
        raise ArtifactError(f"{MANIFEST} was replaced since it was read")
    read = 0
    for name, entry in sorted(manifest.files.items()):
        key = prefix + name
        stored = bucket.stored_crc32(key)
        if stored is None:
            raise ArtifactError(f"{name} is missing")
        size, crc32 = stored
        if size != entry.size:
            raise ArtifactError(f"{name} is {size} bytes, its manifest says {entry.size}")
        if crc32 is not None and entry.crc32 is not None and crc32 == entry.crc32:
            continue  # S3 computed it when the file was written: nothing to read
        # No comparable stored checksum (or a different one): the data decides.
        digest = entry.running_checksum()  # CRC-32, or SHA-256 for versions published without one
        for chunk in bucket.chunks(key):
            digest.update(chunk)
            read += len(chunk)
        if digest.hexdigest() != entry.checksum:
            raise ArtifactError(f"{name} does not match its manifest's checksum (corrupt or replaced)")
    pages = manifest.user_pages
    if pages is not None:  # thousands of files: their number and bytes from one listing; each page's
        # CRC-32 (in the page index, verified above) is checked when the page is read
        found = bucket.sizes(prefix + USER_PAGES_FOLDER)
        if len(found) != pages.files or sum(found.values()) != pages.size:
            raise ArtifactError(
                f"{USER_PAGES_FOLDER} holds {len(found)} files of {sum(found.values())} bytes, its "
                f"manifest says {pages.files} files of {pages.size} bytes"
            )
    return read


def switched(current: dict[str, Any] | None, pointer: CampaignPointer) -> dict[str, Any]:
    """The record of a campaign switched to ``pointer``'s (verified) version: the request's options
    kept, the version it served until now as the fallback, no failed update any more."""
    record = {k: v for k, v in (current or {}).items() if k not in (FAILED_UPDATE, FALLBACK)}
    fallback = None
    if current is not None:
        before = current.get("solutionVersionArn")
        fallback = before if before != pointer.solution_version_arn else current.get(FALLBACK)
    if not isinstance(fallback, str) or not fallback:
        fallback = None
    return record | pointer._replace(fallback=fallback).to_json()


def with_failed_update(current: dict[str, Any], version_arn: str, reason: str, now: float) -> dict[str, Any]:
    """The record of a campaign whose update to ``version_arn`` was refused: it serves as before."""
    return {**current, FAILED_UPDATE: {"solutionVersionArn": version_arn, "failureReason": reason, "at": now}}


def refusal(manifest: Manifest, error: ArtifactError) -> str:
    return f"Solution version {manifest.solution_version_arn} cannot be served: {error}"
