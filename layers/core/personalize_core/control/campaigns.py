"""CreateCampaign, DescribeCampaign, ListCampaigns, UpdateCampaign, DeleteCampaign.

A campaign is a pointer, ``campaigns/<name>.json``, to the solution version it serves; the
serving functions follow it (re-reading it after the pointer TTL). Switching a campaign is one
atomic write of the pointer, and only to a version whose files match its manifest
(modelstore/pointers.py): a refused update is recorded, and DescribeCampaign reports it as a
failed ``latestCampaignUpdate`` while the campaign serves as before.
"""

from __future__ import annotations

import time
from typing import Any

from personalize_core.arns import check_name, make_arn, parse_arn
from personalize_core.control.paging import PageRequest, key_page, paged, skipped
from personalize_core.edge.fields import Fields
from personalize_core.errors import (
    ArtifactError,
    InvalidInputException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
)
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.bucket_records import ACTIVE, CREATE_FAILED, CampaignPointer
from personalize_core.modelstore.layout import Manifest, campaign_key
from personalize_core.modelstore.pointers import (
    FAILED_UPDATE,
    refusal,
    switched,
    verify_version,
    with_failed_update,
)

CAMPAIGN_FIELDS = frozenset({"name", "solutionVersionArn", "minProvisionedTPS", "campaignConfig", "tags"})
#: What a campaign record keeps beside its pointer (Describe gives them back).
OPTIONS = ("minProvisionedTPS", "campaignConfig")


def timestamps(created: float, updated: float) -> dict[str, float]:
    return {"creationDateTime": created, "lastUpdatedDateTime": updated}


def _options(fields: Fields) -> dict[str, Any]:
    options: dict[str, Any] = {}
    tps = fields.integer("minProvisionedTPS", minimum=1, maximum=2**31 - 1)
    if tps is not None:
        options["minProvisionedTPS"] = tps
    config = fields.body.get("campaignConfig")
    if config is not None:
        if not isinstance(config, dict):
            raise InvalidInputException("campaignConfig must be an object")
        options["campaignConfig"] = config
    return options


LATEST = "/$LATEST"


def _syncs(options: dict[str, Any]) -> bool:
    return (options.get("campaignConfig") or {}).get("syncWithLatestSolutionVersion") is True


def _manifest(bucket: ModelBucket, version_arn: str, options: dict[str, Any]) -> Manifest:
    """The version a campaign is to serve: ``solutionVersionArn`` itself, or with
    syncWithLatestSolutionVersion (and ``<solution ARN>/$LATEST``) the solution's newest version."""
    if not version_arn.endswith(LATEST):
        if _syncs(options):
            raise InvalidInputException(
                "With campaignConfig.syncWithLatestSolutionVersion, solutionVersionArn must be "
                "<solution ARN>/$LATEST"
            )
        return bucket.manifest(version_arn)
    if not _syncs(options):
        raise InvalidInputException(
            "solutionVersionArn <solution ARN>/$LATEST needs "
            "campaignConfig.syncWithLatestSolutionVersion true"
        )
    solution = parse_arn(version_arn[: -len(LATEST)], "solutionVersionArn", "solution").path[0]
    manifest = bucket.newest_manifest(solution)
    if manifest is None:
        raise ResourceNotFoundException(f"Solution {version_arn[: -len(LATEST)]} has no ACTIVE version yet")
    return manifest


def sync_campaigns(bucket: ModelBucket, manifest: Manifest) -> list[str]:
    """Point every campaign that syncs with the latest version of ``manifest``'s solution at it
    (called once the new version is ACTIVE and its files are checked). Returns their names."""
    moved = []
    for key in bucket.keys("campaigns/"):
        raw = bucket.read_json(key) if key.endswith(".json") else None
        if raw is None or not _syncs(raw) or raw.get("solution") != manifest.solution:
            continue
        pointer = CampaignPointer.from_json(raw)
        if pointer.version == manifest.version:
            continue
        updated = pointer._replace(
            solution_version_arn=manifest.solution_version_arn,
            version=manifest.version,
            updated_at=time.time(),
        )
        # (the version it served before stays its fallback: modelstore/pointers.py)
        bucket.write_json(campaign_key(pointer.name), switched(raw, updated))
        moved.append(pointer.name)
    return moved


def read_campaign(bucket: ModelBucket, arn: str) -> tuple[CampaignPointer, dict[str, Any]]:
    """A campaign's pointer and record; ResourceNotFoundException, or ArtifactError for a record that
    is not a campaign record (garbled: Describe reports it, Delete removes it)."""
    name = parse_arn(arn, "campaignArn", "campaign").path[0]
    raw = bucket.read_json(campaign_key(name))
    if raw is None:
        raise ResourceNotFoundException(f"Campaign {arn} does not exist")
    pointer = CampaignPointer.from_json(raw)
    if pointer.campaign_arn != arn:
        raise ResourceNotFoundException(f"Campaign {arn} does not exist")
    return pointer, dict(raw)


def _campaign_json(raw: dict[str, Any], summary: bool = False) -> dict[str, Any]:
    pointer = CampaignPointer.from_json(raw)
    out: dict[str, Any] = {
        "name": pointer.name,
        "campaignArn": pointer.campaign_arn,
        "status": ACTIVE,
        **timestamps(pointer.created_at, pointer.updated_at),
    }
    if summary:
        return out
    tps = raw.get("minProvisionedTPS", 1)
    out |= {"solutionVersionArn": pointer.solution_version_arn, "minProvisionedTPS": tps}
    if "campaignConfig" in raw:
        out["campaignConfig"] = raw["campaignConfig"]
    out["latestCampaignUpdate"] = {
        "solutionVersionArn": pointer.solution_version_arn,
        "minProvisionedTPS": tps,
        "status": ACTIVE,
        **timestamps(pointer.updated_at, pointer.updated_at),
    }
    failed = raw.get(FAILED_UPDATE)
    if isinstance(failed, dict):
        # The campaign serves as before (ACTIVE); its latest update is the one that was refused.
        at = float(failed.get("at", pointer.updated_at))
        out["latestCampaignUpdate"] = {
            "solutionVersionArn": str(failed.get("solutionVersionArn", "")),
            "minProvisionedTPS": tps,
            "status": CREATE_FAILED,
            "failureReason": str(failed.get("failureReason", "")),
            **timestamps(at, at),
        }
    return out


def _unreadable(arn: str, error: ArtifactError) -> dict[str, Any]:
    """What Describe says of a campaign whose record cannot be read: failed, and why."""
    name = parse_arn(arn, "campaignArn", "campaign").path[0]
    return {
        "name": name,
        "campaignArn": arn,
        "status": CREATE_FAILED,
        "failureReason": f"The campaign record {campaign_key(name)} is unreadable ({error}); delete the "
        "campaign and create it again",
    }


def _verified(bucket: ModelBucket, version_arn: str, options: dict[str, Any]) -> Manifest:
    """The manifest of the version a campaign is to serve (``_manifest``), once its files all match
    it; InvalidInputException saying why not (VersionRefused for files that do not match)."""
    try:
        manifest = _manifest(bucket, version_arn, options)
    except ArtifactError as exc:
        raise InvalidInputException(f"Solution version {version_arn} cannot be served: {exc}") from None
    try:
        verify_version(bucket, manifest)
    except ArtifactError as exc:
        raise VersionRefused(refusal(manifest, exc)) from None
    return manifest


class VersionRefused(InvalidInputException):
    """The version's files do not match its manifest (the message says which and how)."""


def create_campaign(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", CAMPAIGN_FIELDS)
    name = check_name(fields.required_string("name", max_len=63), "name")
    version_arn = fields.required_arn("solutionVersionArn")
    options = _options(fields)
    manifest = _verified(bucket, version_arn, options)
    version_arn = manifest.solution_version_arn
    parsed = parse_arn(version_arn, "solutionVersionArn", "solution", parts=2)
    arn = str(make_arn(parsed.region, parsed.account, "campaign", name))
    now = time.time()
    pointer = CampaignPointer(arn, name, version_arn, manifest.solution, manifest.version, now, now)
    bucket.create_json(
        campaign_key(name),
        {**switched(None, pointer), **options},
        ResourceAlreadyExistsException(f"Campaign {arn} already exists"),
    )
    return {"campaignArn": arn}


def describe_campaign(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"campaignArn"}))
    arn = fields.required_arn("campaignArn")
    try:
        _, raw = read_campaign(bucket, arn)
        return {"campaign": _campaign_json(raw)}
    except ArtifactError as exc:
        return {"campaign": _unreadable(arn, exc)}


def list_campaigns(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"solutionArn", "nextToken", "maxResults"}))
    solution_arn = fields.arn("solutionArn")
    solution = parse_arn(solution_arn, "solutionArn", "solution").path[0] if solution_arn else None

    def summary(key: str) -> dict[str, Any] | None:
        try:
            raw = bucket.read_json(key)
            if raw is None or (solution is not None and raw.get("solution") != solution):
                return None
            return _campaign_json(raw, summary=True)
        except (ArtifactError, AttributeError) as exc:
            skipped(key, exc)
            return None

    prefix = "campaigns/"
    items, token = key_page(lambda after: bucket.keys(prefix, after), prefix, PageRequest(fields), summary)
    return paged("campaigns", items, token)


def update_campaign(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(
        body, "", frozenset({"campaignArn", "solutionVersionArn", "minProvisionedTPS", "campaignConfig"})
    )
    arn = fields.required_arn("campaignArn")
    version_arn = fields.arn("solutionVersionArn")
    options = _options(fields)
    try:
        pointer, raw = read_campaign(bucket, arn)
    except ArtifactError as exc:
        raise InvalidInputException(_unreadable(arn, exc)["failureReason"]) from None
    now = time.time()
    if version_arn is not None:
        try:
            manifest = _verified(bucket, version_arn, options or {k: raw[k] for k in OPTIONS if k in raw})
        except VersionRefused as refused:
            # Refused, and recorded: DescribeCampaign shows the failed update; nothing else changes.
            bucket.write_json(
                campaign_key(pointer.name), with_failed_update(raw, version_arn, refused.message, now)
            )
            raise
        version_arn, solution, version = manifest.solution_version_arn, manifest.solution, manifest.version
    else:
        version_arn, solution, version = pointer.solution_version_arn, pointer.solution, pointer.version
    updated = CampaignPointer(arn, pointer.name, version_arn, solution, version, pointer.created_at, now)
    # One atomic write: the serving functions switch within the pointer TTL.
    bucket.write_json(campaign_key(updated.name), {**switched(raw, updated), **options})
    return {"campaignArn": arn}


def delete_campaign(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"campaignArn"}))
    arn = fields.required_arn("campaignArn")
    try:
        pointer, _ = read_campaign(bucket, arn)
        name = pointer.name
    except ArtifactError:  # an unreadable record can still be deleted
        name = parse_arn(arn, "campaignArn", "campaign").path[0]
    bucket.delete(campaign_key(name))
    return {}


OPERATIONS = {
    "CreateCampaign": create_campaign,
    "DescribeCampaign": describe_campaign,
    "ListCampaigns": list_campaigns,
    "UpdateCampaign": update_campaign,
    "DeleteCampaign": delete_campaign,
}
