"""CreateFilter, DescribeFilter, ListFilters, DeleteFilter: records at ``filters/<name>.json``.

A filter's dataset group is a record of the data path (its datasets' schemas check the
expression), or else a published solution: ``arn:...:dataset-group/<solution>`` checks it against
that solution's newest version (its schema files only; docs/DESIGN.md).
"""

from __future__ import annotations

import time
from typing import Any

from personalize_core.arns import check_name, make_arn, parse_arn
from personalize_core.control.dataset_groups import group_schema
from personalize_core.control.paging import PageRequest, key_page, paged, skipped
from personalize_core.control.records import get_records
from personalize_core.edge.fields import Fields
from personalize_core.errors import ArtifactError, ResourceAlreadyExistsException, ResourceNotFoundException
from personalize_core.modelstore.attributes import read_schema
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.bucket_records import CREATE_FAILED, FilterRecord
from personalize_core.modelstore.layout import filter_key, version_prefix
from personalize_core.serving.filter_language import EXPRESSION_MAX, parse_filter
from personalize_core.serving.filters import check_filter
from personalize_core.settings import get_settings


def read_filter(bucket: ModelBucket, arn: str, field: str = "filterArn") -> FilterRecord:
    """A filter's record; ResourceNotFoundException, or ArtifactError for one that cannot be read."""
    name = parse_arn(arn, field, "filter").path[0]
    raw = bucket.read_json(filter_key(name))
    record = FilterRecord.from_json(raw) if raw is not None else None
    if record is None or record.filter_arn != arn:
        raise ResourceNotFoundException(f"Filter {arn} does not exist")
    return record


def create_filter(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"name", "datasetGroupArn", "filterExpression", "tags"}))
    name = check_name(fields.required_string("name", max_len=63), "name")
    group_arn = fields.required_arn("datasetGroupArn")
    expression = fields.required_string("filterExpression", max_len=EXPRESSION_MAX)
    group = parse_arn(group_arn, "datasetGroupArn", "dataset-group")
    solution = group.path[0]
    filter_arn = str(make_arn(group.region, group.account, "filter", name))
    program = parse_filter(expression)
    group_record = _group_record(group_arn)
    if group_record is not None:  # a dataset group of the data path: its datasets' schemas
        check_filter(program, group_schema(get_records(), group_record), f"checked against {group_arn}")
        return _create(bucket, name, filter_arn, group_arn, expression)
    manifest = bucket.newest_manifest(solution)
    if manifest is None:
        raise ResourceNotFoundException(
            f"Dataset group {group_arn} does not exist: no version of solution {solution} is published"
        )
    prefix = version_prefix(manifest.solution, manifest.version)
    schema = read_schema(manifest, lambda file_name: bucket.read(prefix + file_name))
    check_filter(program, schema, f"checked against {manifest.solution_version_arn}")
    return _create(bucket, name, filter_arn, group_arn, expression)


def _group_record(group_arn: str) -> Any:
    """The dataset group's record when the stack keeps records and it has one (else None: the
    legacy group of a published solution)."""
    if not get_settings().records_table:
        return None
    return get_records().get(group_arn, "dataset-group")


def _create(
    bucket: ModelBucket, name: str, filter_arn: str, group_arn: str, expression: str
) -> dict[str, Any]:
    now = time.time()
    bucket.create_json(
        filter_key(name),
        FilterRecord(filter_arn, name, group_arn, expression, now, now).to_json(),
        ResourceAlreadyExistsException(f"Filter {filter_arn} already exists"),
    )
    return {"filterArn": filter_arn}


def describe_filter(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"filterArn"}))
    arn = fields.required_arn("filterArn")
    try:
        return {"filter": read_filter(bucket, arn).to_json()}
    except ArtifactError as exc:  # say what is wrong with it, as Personalize does of a failed filter
        name = parse_arn(arn, "filterArn", "filter").path[0]
        reason = f"The filter record {filter_key(name)} is unreadable ({exc}); delete it and create it again"
        return {"filter": {"name": name, "filterArn": arn, "status": CREATE_FAILED, "failureReason": reason}}


def list_filters(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"datasetGroupArn", "nextToken", "maxResults"}))
    group_arn = fields.arn("datasetGroupArn")

    def summary(key: str) -> dict[str, Any] | None:
        try:
            raw = bucket.read_json(key) if key.endswith(".json") else None
            if raw is None:
                return None
            record = FilterRecord.from_json(raw)
        except ArtifactError as exc:
            skipped(key, exc)
            return None
        if group_arn is not None and record.dataset_group_arn != group_arn:
            return None
        out = record.to_json()
        del out["filterExpression"]
        return out

    prefix = "filters/"
    items, token = key_page(lambda after: bucket.keys(prefix, after), prefix, PageRequest(fields), summary)
    return paged("Filters", items, token)


def delete_filter(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"filterArn"}))
    arn = fields.required_arn("filterArn")
    try:
        name = read_filter(bucket, arn).name
    except ArtifactError:  # an unreadable record can still be deleted
        name = parse_arn(arn, "filterArn", "filter").path[0]
    bucket.delete(filter_key(name))
    return {}


OPERATIONS = {
    "CreateFilter": create_filter,
    "DescribeFilter": describe_filter,
    "ListFilters": list_filters,
    "DeleteFilter": delete_filter,
}
