"""CreateDatasetGroup, DescribeDatasetGroup, ListDatasetGroups, DeleteDatasetGroup, and SchemaOps
(CreateSchema, DescribeSchema, ListSchemas, DeleteSchema).

A dataset group is a record of the records table. Models published with the CLI have none: for
them ``dataset-group/<solution>`` still names the solution's filter scope (docs/DESIGN.md, "A
dataset group is a solution"), so ``group_record`` returns None and callers fall back to that.
"""

from __future__ import annotations

import re
from typing import Any

from personalize_core.arns import check_name, parse_arn
from personalize_core.control.paging import PageRequest, paged
from personalize_core.control.records import ACTIVE, Record
from personalize_core.control.tags import check_tags
from personalize_core.control.workspace import (
    DATASET,
    DATASET_GROUP,
    EVENT_TRACKER,
    RECOMMENDER,
    SCHEMA,
    SOLUTION,
    Workspace,
)
from personalize_core.datasets.schema import SCHEMA_MAX, Schema, parse_schema
from personalize_core.edge.fields import Fields
from personalize_core.errors import InvalidInputException, ResourceInUseException
from personalize_core.modelstore.attributes import DataSchema

ROLE_ARN = re.compile(r"arn:([a-z\d-]+):iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
KMS_KEY_ARN = re.compile(r"arn:aws.*:kms:.*:[0-9]{12}:key/.*")
DOMAINS = frozenset({"ECOMMERCE", "VIDEO_ON_DEMAND"})


def domain_of(fields: Fields) -> str | None:
    domain = fields.string("domain", max_len=32)
    if domain is not None and domain not in DOMAINS:
        raise InvalidInputException("domain must be ECOMMERCE or VIDEO_ON_DEMAND")
    return domain


def group_record(ws: Workspace, arn: str, field: str = "datasetGroupArn") -> Record | None:
    """The dataset group's record; None for a legacy group (``dataset-group/<solution>``)."""
    parse_arn(arn, field, DATASET_GROUP)
    return ws.records.get(arn, DATASET_GROUP)


def group_schema(ws_records: Any, group: Record) -> DataSchema:
    """What a filter in a real dataset group may name: its datasets' schema fields."""
    schemas: dict[str, Schema] = {}
    for dataset in ws_records.children(group.arn, DATASET):
        schema = ws_records.get(dataset.attributes["schemaArn"], SCHEMA)
        if schema is not None:
            schemas[dataset.attributes["datasetType"]] = parse_schema(schema.attributes["schema"])

    def columns(kind: str, id_field: str) -> dict[str, bool]:
        found = schemas.get(kind)
        return {n: v for n, v in found.numeric_columns().items() if n != id_field} if found else {}

    return DataSchema(columns("ITEMS", "ITEM_ID"), columns("USERS", "USER_ID"), "INTERACTIONS" in schemas)


def _group_json(record: Record, summary: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": record.name, "datasetGroupArn": record.arn, "status": record.status}
    out |= record.timestamps()
    if record.attributes.get("domain"):
        out["domain"] = record.attributes["domain"]
    if not summary:
        out |= {k: record.attributes[k] for k in ("roleArn", "kmsKeyArn") if record.attributes.get(k)}
    return out


def create_dataset_group(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"name", "roleArn", "kmsKeyArn", "domain", "tags"}))
    name = check_name(fields.required_string("name", max_len=63), "name")
    role = fields.string("roleArn", max_len=256, pattern=ROLE_ARN)
    kms = fields.string("kmsKeyArn", max_len=2048, pattern=KMS_KEY_ARN)
    domain = domain_of(fields)
    check_tags(fields)
    now = ws.now()
    attributes = {"roleArn": role, "kmsKeyArn": kms, "domain": domain}
    record = Record(
        DATASET_GROUP,
        ws.arn(DATASET_GROUP, name),
        name,
        ACTIVE,  # nothing to provision: a group is ready as soon as it is recorded
        now,
        now,
        attributes={k: v for k, v in attributes.items() if v},
    )
    ws.records.create(record)
    return {"datasetGroupArn": record.arn} | ({"domain": domain} if domain else {})


def describe_dataset_group(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"datasetGroupArn"}))
    arn = fields.required_arn("datasetGroupArn")
    record = group_record(ws, arn)
    if record is None:
        # A group of the CLI's published models: the solution's versions stand for its data.
        solution = parse_arn(arn, "datasetGroupArn", DATASET_GROUP).path[0]
        manifest = ws.bucket.newest_manifest(solution)
        if manifest is None:
            ws.record(arn, DATASET_GROUP)  # raises ResourceNotFoundException
        assert manifest is not None
        record = Record(DATASET_GROUP, arn, solution, ACTIVE, manifest.created_at, manifest.created_at)
    return {"datasetGroup": _group_json(record)}


def list_dataset_groups(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    page = PageRequest(Fields(body, "", frozenset({"nextToken", "maxResults"})))
    records, token = ws.records.page(DATASET_GROUP, None, page.max_results, page.token)
    return paged("datasetGroups", [_group_json(r, summary=True) for r in records], token)


def delete_dataset_group(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"datasetGroupArn"}))
    record = ws.record(fields.required_arn("datasetGroupArn"), DATASET_GROUP)
    for kind in (DATASET, SOLUTION, RECOMMENDER, EVENT_TRACKER):
        if ws.records.children(record.arn, kind):
            raise ResourceInUseException(f"Dataset group {record.arn} still has {kind}s: delete them first")
    ws.records.delete(record)
    return {}


# -- schemas -----------------------------------------------------------------------------------


def _schema_json(record: Record, summary: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": record.name, "schemaArn": record.arn} | record.timestamps()
    if record.attributes.get("domain"):
        out["domain"] = record.attributes["domain"]
    if not summary:
        out["schema"] = record.attributes["schema"]
    return out


def create_schema(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"name", "schema", "domain"}))
    name = check_name(fields.required_string("name", max_len=63), "name")
    text = fields.required_string("schema", max_len=SCHEMA_MAX)
    domain = domain_of(fields)
    parse_schema(text)  # refused here, with the reason, if it is not a schema Personalize takes
    now = ws.now()
    attributes = {"schema": text} | ({"domain": domain} if domain else {})
    record = Record(SCHEMA, ws.arn(SCHEMA, name), name, ACTIVE, now, now, attributes=attributes)
    ws.records.create(record)
    return {"schemaArn": record.arn}


def describe_schema(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"schemaArn"}))
    return {"schema": _schema_json(ws.record(fields.required_arn("schemaArn"), SCHEMA))}


def list_schemas(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    page = PageRequest(Fields(body, "", frozenset({"nextToken", "maxResults"})))
    records, token = ws.records.page(SCHEMA, None, page.max_results, page.token)
    return paged("schemas", [_schema_json(r, summary=True) for r in records], token)


def delete_schema(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"schemaArn"}))
    record = ws.record(fields.required_arn("schemaArn"), SCHEMA)
    token = None
    while True:
        datasets, token = ws.records.page(DATASET, None, 100, token)
        using = next((d for d in datasets if d.attributes.get("schemaArn") == record.arn), None)
        if using is not None:
            raise ResourceInUseException(f"Schema {record.arn} is used by dataset {using.arn}")
        if token is None:
            break
    ws.records.delete(record)
    return {}


OPERATIONS = {
    "CreateDatasetGroup": create_dataset_group,
    "DescribeDatasetGroup": describe_dataset_group,
    "ListDatasetGroups": list_dataset_groups,
    "DeleteDatasetGroup": delete_dataset_group,
    "CreateSchema": create_schema,
    "DescribeSchema": describe_schema,
    "ListSchemas": list_schemas,
    "DeleteSchema": delete_schema,
}
