"""Personalize's management calls on the control plane: filters, campaigns and solution versions.

The publish CLI and these calls are two doors to the same records in the model bucket:
``filters/<name>.json``, ``campaigns/<name>.json`` (the pointer the serving functions follow) and
``solutions/<solution>/<version>/manifest.json``. A dataset group is a solution: the filter
``arn:...:dataset-group/<solution>`` is checked against that solution's newest version.

    register(plane)     # functions/control_plane/app.py
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from .artifacts import MANIFEST, CampaignPointer, Manifest, Recipe, campaign_key, filter_key, version_prefix
from .attributes import read_schema
from .control_plane import ControlPlane
from .errors import (
    ArtifactError,
    InvalidInputException,
    InvalidNextTokenException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
)
from .filter_language import EXPRESSION_MAX, parse_filter
from .filters import ACTIVE, FilterRecord, check_filter
from .names import Arn, check_name, make_arn, parse_arn
from .requests import _Fields
from .settings import get_settings
from .store import create_s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MAX_RESULTS = 100
NEXT_TOKEN_MAX = 1500
RECIPE_ARNS = {
    Recipe.USER_PERSONALIZATION: "arn:aws:personalize:::recipe/aws-user-personalization",
    Recipe.RELATED_ITEMS: "arn:aws:personalize:::recipe/aws-similar-items",
    Recipe.POPULAR_ITEMS: "arn:aws:personalize:::recipe/aws-popularity-count",
    Recipe.PERSONALIZED_RANKING: "arn:aws:personalize:::recipe/aws-personalized-ranking",
}


class ModelBucket:
    """Reads and writes of the model bucket's records (the control plane's only S3 access)."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def read_json(self, key: str) -> Any | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ArtifactError(f"{key} is not valid JSON: {exc}") from None

    def read(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise ArtifactError(f"{key} does not exist") from None

    def write_json(self, key: str, value: dict[str, Any]) -> None:
        body = json.dumps(value, indent=2).encode()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def create_json(self, key: str, value: dict[str, Any], exists: Exception) -> None:
        """Write a new record, atomically refusing (``exists``) if one is there: two concurrent
        creates of one name cannot both succeed (an S3 conditional write, If-None-Match: *)."""
        body = json.dumps(value, indent=2).encode()
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", IfNoneMatch="*"
            )
        except self.client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                raise exists from None
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def keys(self, prefix: str, start_after: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix, StartAfter=start_after or prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"]


@cache
def _s3_client() -> S3Client:
    return create_s3_client()


def default_bucket() -> ModelBucket:
    return ModelBucket(_s3_client(), get_settings().model_bucket)


# -- paging ----------------------------------------------------------------------------------------


def _encode_token(prefix: str, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"p": prefix, "k": key}).encode()).decode()


def _decode_token(prefix: str, token: str | None) -> str:
    if token is None:
        return ""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        key = raw["k"]
        if raw["p"] != prefix or not isinstance(key, str) or not key.startswith(prefix):
            raise ValueError("token of another listing")
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        raise InvalidNextTokenException("The nextToken is not valid for this request") from None
    return key


def _page(
    bucket: ModelBucket,
    prefix: str,
    fields: _Fields,
    load: Callable[[str], dict[str, Any] | None],
) -> tuple[list[dict[str, Any]], str | None]:
    token = fields.string("nextToken", max_len=NEXT_TOKEN_MAX)
    max_results = fields.integer("maxResults", minimum=1, maximum=MAX_RESULTS) or MAX_RESULTS
    items: list[dict[str, Any]] = []
    last = ""
    keys = bucket.keys(prefix, _decode_token(prefix, token))
    for key in keys:
        item = load(key)
        if item is None:
            continue
        if len(items) == max_results:
            return items, _encode_token(prefix, last)  # there is at least one more
        items.append(item)
        last = key
    return items, None


# -- helpers ---------------------------------------------------------------------------------------


def _required(fields: _Fields, key: str, value: str | None) -> str:
    if value is None:
        raise InvalidInputException(f"{fields.name(key)} is required")
    return value


def _newest_manifest(bucket: ModelBucket, solution: str) -> Manifest | None:
    manifests = [m for m in _manifests(bucket, f"solutions/{solution}/") if m.solution == solution]
    return max(manifests, key=lambda m: m.created_at) if manifests else None


def _manifests(bucket: ModelBucket, prefix: str) -> Iterator[Manifest]:
    for key in bucket.keys(prefix):
        if key.endswith("/" + MANIFEST):
            raw = bucket.read_json(key)
            if raw is not None:
                yield Manifest.from_json(raw)


def _manifest(bucket: ModelBucket, arn: str, field: str) -> Manifest:
    solution, version = parse_arn(arn, field, "solution", parts=2).path
    raw = bucket.read_json(version_prefix(solution, version) + MANIFEST)
    if raw is None:
        raise ResourceNotFoundException(f"Solution version {arn} does not exist")
    manifest = Manifest.from_json(raw)
    if manifest.solution_version_arn != arn:
        raise ResourceNotFoundException(f"Solution version {arn} does not exist")
    return manifest


def _dataset_group_arn(solution_version: Arn) -> str:
    return str(
        make_arn(solution_version.region, solution_version.account, "dataset-group", solution_version.path[0])
    )


def _timestamp_fields(created: float, updated: float) -> dict[str, float]:
    return {"creationDateTime": created, "lastUpdatedDateTime": updated}


# -- filters ---------------------------------------------------------------------------------------


def _read_filter(bucket: ModelBucket, arn: str) -> FilterRecord:
    name = parse_arn(arn, "filterArn", "filter").path[0]
    raw = bucket.read_json(filter_key(name))
    record = FilterRecord.from_json(raw) if raw is not None else None
    if record is None or record.filter_arn != arn:
        raise ResourceNotFoundException(f"Filter {arn} does not exist")
    return record


def create_filter(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = _Fields(body, "", frozenset({"name", "datasetGroupArn", "filterExpression", "tags"}))
    name = _required(fields, "name", fields.string("name", max_len=63, min_len=1))
    group_arn = _required(fields, "datasetGroupArn", fields.arn("datasetGroupArn"))
    expression = _required(
        fields, "filterExpression", fields.string("filterExpression", max_len=EXPRESSION_MAX, min_len=1)
    )
    group = parse_arn(group_arn, "datasetGroupArn", "dataset-group")
    solution = group.path[0]
    filter_arn = str(make_arn(group.region, group.account, "filter", check_name(name, "name")))
    program = parse_filter(expression)
    manifest = _newest_manifest(bucket, solution)
    if manifest is None:
        raise ResourceNotFoundException(
            f"Dataset group {group_arn} does not exist: no version of solution {solution} is published"
        )
    prefix = version_prefix(manifest.solution, manifest.version)
    schema = read_schema(manifest, lambda file_name: bucket.read(prefix + file_name))
    check_filter(program, schema, f"checked against {manifest.solution_version_arn}")
    now = time.time()
    bucket.create_json(
        filter_key(name),
        FilterRecord(filter_arn, name, group_arn, expression, now, now).to_json(),
        ResourceAlreadyExistsException(f"Filter {filter_arn} already exists"),
    )
    return {"filterArn": filter_arn}


def describe_filter(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = _Fields(body, "", frozenset({"filterArn"}))
    record = _read_filter(bucket, _required(fields, "filterArn", fields.arn("filterArn")))
    return {"filter": record.to_json()}


def list_filters(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = _Fields(body, "", frozenset({"datasetGroupArn", "nextToken", "maxResults"}))
    group_arn = fields.arn("datasetGroupArn")

    def summary(key: str) -> dict[str, Any] | None:
        raw = bucket.read_json(key)
        if raw is None or not key.endswith(".json"):
            return None
        record = FilterRecord.from_json(raw)
        if group_arn is not None and record.dataset_group_arn != group_arn:
            return None
        out = record.to_json()
        del out["filterExpression"]
        return out

    filters, token = _page(bucket, "filters/", fields, summary)
    return {"Filters": filters, **({"nextToken": token} if token else {})}


def delete_filter(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = _Fields(body, "", frozenset({"filterArn"}))
    record = _read_filter(bucket, _required(fields, "filterArn", fields.arn("filterArn")))
    bucket.delete(filter_key(record.name))
    return {}


# -- campaigns -------------------------------------------------------------------------------------

CAMPAIGN_FIELDS = frozenset({"name", "solutionVersionArn", "minProvisionedTPS", "campaignConfig", "tags"})


def _campaign_options(fields: _Fields) -> dict[str, Any]:
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


def _read_campaign(bucket: ModelBucket, arn: str) -> tuple[CampaignPointer, dict[str, Any]]:
    name = parse_arn(arn, "campaignArn", "campaign").path[0]
    raw = bucket.read_json(campaign_key(name))
    pointer = CampaignPointer.from_json(raw) if raw is not None else None
    if raw is None or pointer is None or pointer.campaign_arn != arn:
        raise ResourceNotFoundException(f"Campaign {arn} does not exist")
    return pointer, dict(raw)


def _write_campaign(bucket: ModelBucket, pointer: CampaignPointer, options: dict[str, Any]) -> None:
    bucket.write_json(campaign_key(pointer.name), {**pointer.to_json(), **options})


def _campaign_json(raw: dict[str, Any], summary: bool = False) -> dict[str, Any]:
    pointer = CampaignPointer.from_json(raw)
    out: dict[str, Any] = {
        "name": pointer.name,
        "campaignArn": pointer.campaign_arn,
        "status": ACTIVE,
        **_timestamp_fields(pointer.created_at, pointer.updated_at),
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
        **_timestamp_fields(pointer.updated_at, pointer.updated_at),
    }
    return out


def create_campaign(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = _Fields(body, "", CAMPAIGN_FIELDS)
    name = check_name(_required(fields, "name", fields.string("name", max_len=63, min_len=1)), "name")
    version_arn = _required(fields, "solutionVersionArn", fields.arn("solutionVersionArn"))
    options = _campaign_options(fields)
    manifest = _manifest(bucket, version_arn, "solutionVersionArn")
    parsed = parse_arn(version_arn, "solutionVersionArn", "solution", parts=2)
    arn = str(make_arn(parsed.region, parsed.account, "campaign", name))
    now = time.time()
    pointer = CampaignPointer(arn, name, version_arn, manifest.solution, manifest.version, now, now)
    bucket.create_json(
        campaign_key(name),
        {**pointer.to_json(), **options},
        ResourceAlreadyExistsException(f"Campaign {arn} already exists"),
    )
    return {"campaignArn": arn}


def describe_campaign(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = _Fields(body, "", frozenset({"campaignArn"}))
    _, raw = _read_campaign(bucket, _required(fields, "campaignArn", fields.arn("campaignArn")))
    return {"campaign": _campaign_json(raw)}


def list_campaigns(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = _Fields(body, "", frozenset({"solutionArn", "nextToken", "maxResults"}))
    solution_arn = fields.arn("solutionArn")
    solution = parse_arn(solution_arn, "solutionArn", "solution").path[0] if solution_arn else None

    def summary(key: str) -> dict[str, Any] | None:
        raw = bucket.read_json(key)
        if raw is None or (solution is not None and raw.get("solution") != solution):
            return None
        return _campaign_json(raw, summary=True)

    campaigns, token = _page(bucket, "campaigns/", fields, summary)
    return {"campaigns": campaigns, **({"nextToken": token} if token else {})}


def update_campaign(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = _Fields(
        body, "", frozenset({"campaignArn", "solutionVersionArn", "minProvisionedTPS", "campaignConfig"})
    )
    arn = _required(fields, "campaignArn", fields.arn("campaignArn"))
    version_arn = fields.arn("solutionVersionArn")
    options = _campaign_options(fields)
    pointer, raw = _read_campaign(bucket, arn)
    if version_arn is not None:
        manifest = _manifest(bucket, version_arn, "solutionVersionArn")
        solution, version = manifest.solution, manifest.version
    else:
        version_arn, solution, version = pointer.solution_version_arn, pointer.solution, pointer.version
    kept = {k: raw[k] for k in ("minProvisionedTPS", "campaignConfig") if k in raw}
    updated = CampaignPointer(
        arn, pointer.name, version_arn, solution, version, pointer.created_at, time.time()
    )
    _write_campaign(bucket, updated, kept | options)  # one atomic write: the serving functions switch
    return {"campaignArn": arn}


def delete_campaign(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = _Fields(body, "", frozenset({"campaignArn"}))
    pointer, _ = _read_campaign(bucket, _required(fields, "campaignArn", fields.arn("campaignArn")))
    bucket.delete(campaign_key(pointer.name))
    return {}


# -- solution versions -----------------------------------------------------------------------------


def _solution_version_json(manifest: Manifest, summary: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "solutionVersionArn": manifest.solution_version_arn,
        "status": ACTIVE,
        "trainingMode": "FULL",
        **_timestamp_fields(manifest.created_at, manifest.created_at),
    }
    if summary:
        return out
    arn = parse_arn(manifest.solution_version_arn, "solutionVersionArn", "solution", parts=2)
    return out | {
        "name": manifest.version,
        "solutionArn": str(make_arn(arn.region, arn.account, "solution", manifest.solution)),
        "recipeArn": RECIPE_ARNS[manifest.recipe],
        "datasetGroupArn": _dataset_group_arn(arn),
        "performHPO": False,
        "performAutoML": False,
    }


def describe_solution_version(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = _Fields(body, "", frozenset({"solutionVersionArn"}))
    arn = _required(fields, "solutionVersionArn", fields.arn("solutionVersionArn"))
    return {"solutionVersion": _solution_version_json(_manifest(bucket, arn, "solutionVersionArn"))}


def list_solution_versions(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = _Fields(body, "", frozenset({"solutionArn", "nextToken", "maxResults"}))
    solution_arn = fields.arn("solutionArn")
    prefix = "solutions/"
    if solution_arn is not None:
        solution = parse_arn(solution_arn, "solutionArn", "solution").path[0]
        prefix = f"solutions/{solution}/"
        if next(iter(_manifests(bucket, prefix)), None) is None:
            raise ResourceNotFoundException(f"Solution {solution_arn} does not exist")

    def summary(key: str) -> dict[str, Any] | None:
        raw = bucket.read_json(key) if key.endswith("/" + MANIFEST) else None
        return _solution_version_json(Manifest.from_json(raw), summary=True) if raw is not None else None

    versions, token = _page(bucket, prefix, fields, summary)
    return {"solutionVersions": versions, **({"nextToken": token} if token else {})}


OPERATIONS: dict[str, Callable[[ModelBucket, dict[str, Any]], dict[str, Any]]] = {
    "CreateFilter": create_filter,
    "DescribeFilter": describe_filter,
    "ListFilters": list_filters,
    "DeleteFilter": delete_filter,
    "CreateCampaign": create_campaign,
    "DescribeCampaign": describe_campaign,
    "ListCampaigns": list_campaigns,
    "UpdateCampaign": update_campaign,
    "DeleteCampaign": delete_campaign,
    "DescribeSolutionVersion": describe_solution_version,
    "ListSolutionVersions": list_solution_versions,
}


def register(plane: ControlPlane, bucket: Callable[[], ModelBucket] = default_bucket) -> None:
    """Register the management operations on the control plane (the bucket is resolved per call)."""
    for name, function in OPERATIONS.items():

        def operation(
            body: dict[str, Any], function: Callable[[ModelBucket, dict[str, Any]], dict[str, Any]] = function
        ) -> dict[str, Any]:
            return function(bucket(), body)

        plane.operation(name)(operation)
