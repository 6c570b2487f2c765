"""CreateDataset, DescribeDataset, ListDatasets, DeleteDataset, and the dataset import jobs
(CreateDatasetImportJob, DescribeDatasetImportJob, ListDatasetImportJobs).

A dataset is ``dataset/<dataset group>/<TYPE>`` (one per type and group, as in Personalize). An
import job is recorded CREATE PENDING and queued; the training function runs it
(personalize_core.training.worker): it reads the CSV with the job's ``roleArn``, checks every row
against the dataset's schema and, when all of it is good, makes it part of the dataset.
"""

from __future__ import annotations

from typing import Any

from personalize_core.arns import check_name, parse_arn
from personalize_core.batch.storage import parse_s3_path
from personalize_core.control.batch_jobs import check_role
from personalize_core.control.dataset_groups import ROLE_ARN
from personalize_core.control.paging import PageRequest, paged
from personalize_core.control.records import ACTIVE, CREATE_PENDING, UNFINISHED, Record
from personalize_core.control.tags import check_tags
from personalize_core.control.workspace import DATASET, DATASET_GROUP, IMPORT_JOB, SCHEMA, Workspace
from personalize_core.datasets.schema import DatasetType, check_dataset_type, parse_schema
from personalize_core.edge.fields import Fields
from personalize_core.errors import InvalidInputException, ResourceInUseException
from personalize_core.settings import get_settings
from personalize_core.training.messages import TrainingMessage

IMPORT_MODES = frozenset({"FULL", "INCREMENTAL"})


def dataset_type(fields: Fields) -> DatasetType:
    raw = fields.required_string("datasetType", max_len=256)
    try:
        return DatasetType(raw.upper())
    except ValueError:
        raise InvalidInputException(
            f"datasetType {raw[:40]!r} is not supported: INTERACTIONS, ITEMS or USERS"
        ) from None


def _dataset_json(record: Record, summary: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": record.name,
        "datasetArn": record.arn,
        "datasetType": record.attributes["datasetType"],
        "status": record.status,
    } | record.timestamps()
    if not summary:
        out |= {"datasetGroupArn": record.parent_arn, "schemaArn": record.attributes["schemaArn"]}
    return out


def create_dataset(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"name", "schemaArn", "datasetGroupArn", "datasetType", "tags"}))
    name = check_name(fields.required_string("name", max_len=63), "name")
    schema_arn = fields.required_arn("schemaArn")
    group_arn = fields.required_arn("datasetGroupArn")
    kind = dataset_type(fields)
    check_tags(fields)
    group = ws.record(group_arn, DATASET_GROUP)
    schema = ws.record(schema_arn, SCHEMA)
    check_dataset_type(parse_schema(schema.attributes["schema"]), kind, schema_arn)
    now = ws.now()
    record = Record(
        DATASET,
        ws.arn(DATASET, group.name, kind.value),
        name,
        ACTIVE,
        now,
        now,
        parent_arn=group.arn,
        attributes={"datasetType": kind.value, "schemaArn": schema_arn, "imports": []},
    )
    ws.records.create(record)
    return {"datasetArn": record.arn}


def describe_dataset(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"datasetArn"}))
    return {"dataset": _dataset_json(ws.record(fields.required_arn("datasetArn"), DATASET))}


def list_datasets(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"datasetGroupArn", "nextToken", "maxResults"}))
    group_arn = fields.arn("datasetGroupArn")
    page = PageRequest(fields)
    records, token = ws.records.page(DATASET, group_arn, page.max_results, page.token)
    return paged("datasets", [_dataset_json(r, summary=True) for r in records], token)


def delete_dataset(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"datasetArn"}))
    record = ws.record(fields.required_arn("datasetArn"), DATASET)
    running = [j for j in ws.records.children(record.arn, IMPORT_JOB) if j.status in UNFINISHED]
    if running:
        raise ResourceInUseException(f"Dataset {record.arn} has an import job in progress: {running[0].arn}")
    ws.records.delete(record)
    return {}


# -- import jobs -------------------------------------------------------------------------------


def _job_json(record: Record, summary: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jobName": record.name,
        "datasetImportJobArn": record.arn,
        "status": record.status,
        "importMode": record.attributes["importMode"],
    } | record.timestamps()
    if record.failure_reason:
        out["failureReason"] = record.failure_reason
    if not summary:
        out |= {
            "datasetArn": record.parent_arn,
            "dataSource": {"dataLocation": record.attributes["dataLocation"]},
            "roleArn": record.attributes["roleArn"],
            "publishAttributionMetricsToS3": False,
        }
    return out


def create_dataset_import_job(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(
        body,
        "",
        frozenset(
            {
                "jobName",
                "datasetArn",
                "dataSource",
                "roleArn",
                "tags",
                "importMode",
                "publishAttributionMetricsToS3",
            }
        ),
    )
    name = check_name(fields.required_string("jobName", max_len=63), "jobName")
    dataset_arn = fields.required_arn("datasetArn")
    source = fields.body.get("dataSource")
    if source is None:
        raise InvalidInputException("dataSource is required")
    location = Fields(source, "dataSource.", frozenset({"dataLocation"})).required_string(
        "dataLocation", max_len=256
    )
    parse_s3_path(location, "dataSource.dataLocation")
    # botocore marks roleArn optional; Personalize needs it to read the bucket, and so do we.
    role = fields.required_string("roleArn", max_len=256, pattern=ROLE_ARN)
    # The training function assumes it under the batch worker's grant: role/${BatchJobRoleNamePattern}.
    check_role(role, get_settings().batch_job_role_name_pattern, ws.account)
    mode = fields.string("importMode", max_len=16) or "FULL"
    if mode not in IMPORT_MODES:
        raise InvalidInputException("importMode must be FULL or INCREMENTAL")
    if fields.body.get("publishAttributionMetricsToS3") not in (None, False):
        raise InvalidInputException(
            "publishAttributionMetricsToS3 is not supported: there are no metric attributions"
        )
    check_tags(fields)
    dataset = ws.record(dataset_arn, DATASET)
    parse_arn(dataset_arn, "datasetArn", DATASET, parts=2)
    now = ws.now()
    record = Record(
        IMPORT_JOB,
        ws.arn(IMPORT_JOB, name),
        name,
        CREATE_PENDING,
        now,
        now,
        parent_arn=dataset.arn,
        attributes={"dataLocation": location, "roleArn": role, "importMode": mode},
    )
    ws.records.create(record)
    ws.enqueue(TrainingMessage("import", record.arn), record)
    return {"datasetImportJobArn": record.arn}


def describe_dataset_import_job(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"datasetImportJobArn"}))
    return {"datasetImportJob": _job_json(ws.record(fields.required_arn("datasetImportJobArn"), IMPORT_JOB))}


def list_dataset_import_jobs(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"datasetArn", "nextToken", "maxResults"}))
    dataset_arn = fields.arn("datasetArn")
    page = PageRequest(fields)
    records, token = ws.records.page(IMPORT_JOB, dataset_arn, page.max_results, page.token)
    return paged("datasetImportJobs", [_job_json(r, summary=True) for r in records], token)


OPERATIONS = {
    "CreateDataset": create_dataset,
    "DescribeDataset": describe_dataset,
    "ListDatasets": list_datasets,
    "DeleteDataset": delete_dataset,
    "CreateDatasetImportJob": create_dataset_import_job,
    "DescribeDatasetImportJob": describe_dataset_import_job,
    "ListDatasetImportJobs": list_dataset_import_jobs,
}
