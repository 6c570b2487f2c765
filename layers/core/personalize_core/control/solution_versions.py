"""Solution versions: CreateSolutionVersion, DescribeSolutionVersion, ListSolutionVersions,
StopSolutionVersionCreation and GetSolutionMetrics.

Two kinds of versions answer here: versions trained through the data path (a record in the
records table, CREATE PENDING -> CREATE IN_PROGRESS -> ACTIVE | CREATE FAILED | CREATE STOPPING ->
CREATE STOPPED, then a manifest), and versions published with the CLI (a manifest only, ACTIVE).
A version is ``solutions/<solution>/<version>/``, described by its manifest once it is ACTIVE.
"""

from __future__ import annotations

import uuid
from typing import Any

from personalize_core.arns import check_name, make_arn, parse_arn
from personalize_core.control.campaigns import timestamps
from personalize_core.control.paging import PageRequest, decode_token, encode_token, paged, skipped
from personalize_core.control.records import (
    ACTIVE,
    CREATE_FAILED,
    CREATE_IN_PROGRESS,
    CREATE_PENDING,
    CREATE_STOPPED,
    CREATE_STOPPING,
    UNFINISHED,
    Record,
)
from personalize_core.control.solutions import version_summary
from personalize_core.control.tags import check_tags
from personalize_core.control.workspace import DATASET, SOLUTION, SOLUTION_VERSION, Workspace
from personalize_core.edge.fields import Fields
from personalize_core.errors import (
    ArtifactError,
    InvalidInputException,
    ResourceInUseException,
    ResourceNotFoundException,
)
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.layout import MANIFEST, Manifest, Recipe
from personalize_core.training.messages import TrainingMessage

RECIPE_ARNS = {
    Recipe.USER_PERSONALIZATION: "arn:aws:personalize:::recipe/aws-user-personalization",
    Recipe.RELATED_ITEMS: "arn:aws:personalize:::recipe/aws-similar-items",
    Recipe.POPULAR_ITEMS: "arn:aws:personalize:::recipe/aws-popularity-count",
    Recipe.PERSONALIZED_RANKING: "arn:aws:personalize:::recipe/aws-personalized-ranking",
}


def _manifest_json(manifest: Manifest, summary: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "solutionVersionArn": manifest.solution_version_arn,
        "status": ACTIVE,
        "trainingMode": "FULL",
        **timestamps(manifest.created_at, manifest.created_at),
    }
    if summary:
        return out
    arn = parse_arn(manifest.solution_version_arn, "solutionVersionArn", "solution", parts=2)
    group = manifest.dataset_group_arn or str(
        make_arn(arn.region, arn.account, "dataset-group", manifest.solution)
    )
    return out | {
        "name": manifest.version,
        "solutionArn": str(make_arn(arn.region, arn.account, "solution", manifest.solution)),
        "recipeArn": RECIPE_ARNS[manifest.recipe],
        "datasetGroupArn": group,
        "performHPO": False,
        "performAutoML": False,
    }


def _record_json(record: Record) -> dict[str, Any]:
    attributes = record.attributes
    out = version_summary(record) | {
        "name": record.name,
        "solutionArn": record.parent_arn,
        "recipeArn": attributes["recipeArn"],
        "datasetGroupArn": attributes["datasetGroupArn"],
        "solutionConfig": attributes.get("solutionConfig") or {},
        "performHPO": False,
        "performAutoML": False,
        "performIncrementalUpdate": False,
    }
    if attributes.get("eventType"):
        out["eventType"] = attributes["eventType"]
    if "trainingSeconds" in attributes:
        out["trainingHours"] = round(attributes["trainingSeconds"] / 3600, 6)
    return out


def new_version(
    ws: Workspace,
    solution: Record,
    name: str | None = None,
    training_type: str = "MANUAL",
    extra: dict[str, Any] | None = None,
    enqueue: bool = True,
) -> Record:
    """Record a new version of ``solution`` (CREATE PENDING) and queue its training (unless the
    caller trains it itself: ``lambda-personalize train``)."""
    group_arn = solution.parent_arn or ""
    interactions = ws.records.get(
        ws.arn(DATASET, parse_arn(group_arn, "datasetGroupArn", "dataset-group").path[0], "INTERACTIONS"),
        DATASET,
    )
    if interactions is None or not interactions.attributes.get("imports"):
        raise InvalidInputException(
            f"Dataset group {group_arn} has no imported Interactions data: create an INTERACTIONS dataset "
            "and import data into it first"
        )
    busy = [
        v
        for v in ws.records.children(solution.arn, SOLUTION_VERSION)
        if v.status in (*UNFINISHED, CREATE_STOPPING)
    ]
    if busy:
        raise ResourceInUseException(
            f"Solution {solution.arn} has a version in training already: {busy[0].arn}"
        )
    version = name or uuid.uuid4().hex[:8]
    now = ws.now()
    attributes = {
        "recipeArn": solution.attributes["recipeArn"],
        "recipe": solution.attributes["recipe"],
        "datasetGroupArn": group_arn,
        "solutionConfig": solution.attributes.get("solutionConfig") or {},
        "eventType": solution.attributes.get("eventType"),
        "trainingMode": "FULL",
        "trainingType": training_type,
    } | (extra or {})
    record = Record(
        SOLUTION_VERSION,
        ws.arn(SOLUTION_VERSION, solution.name, version),
        version,
        CREATE_PENDING,
        now,
        now,
        solution.arn,
        attributes=attributes,
    )
    if ws.bucket.exists(f"solutions/{solution.name}/{version}/{MANIFEST}"):
        raise ResourceInUseException(f"Solution version {record.arn} already exists")
    ws.records.create(record)
    if enqueue:
        ws.enqueue(TrainingMessage("train", record.arn), record)
    return record


def create_solution_version(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"name", "solutionArn", "trainingMode", "tags"}))
    name = fields.string("name", max_len=63)
    if name is not None:
        check_name(name, "name")
    solution_arn = fields.required_arn("solutionArn")
    mode = fields.string("trainingMode", max_len=16) or "FULL"
    if mode != "FULL":
        raise InvalidInputException(
            f"trainingMode {mode[:16]} is not supported: this deployment trains FULL versions"
        )
    check_tags(fields)
    solution = ws.record(solution_arn, SOLUTION)
    return {"solutionVersionArn": new_version(ws, solution, name).arn}


def _version_record(ws: Workspace, arn: str) -> Record | None:
    parse_arn(arn, "solutionVersionArn", "solution", parts=2)
    return ws.records.get(arn, SOLUTION_VERSION)


def describe_solution_version(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"solutionVersionArn"}))
    arn = fields.required_arn("solutionVersionArn")
    record = _version_record(ws, arn)
    if record is not None:
        return {"solutionVersion": _record_json(record)}
    try:
        manifest = ws.bucket.manifest(arn)
    except ArtifactError as exc:  # say what is wrong with it, as Personalize does of a failed version
        return {
            "solutionVersion": {"solutionVersionArn": arn, "status": CREATE_FAILED, "failureReason": str(exc)}
        }
    return {"solutionVersion": _manifest_json(manifest)}


def _manifest_arns(bucket: ModelBucket, prefix: str) -> dict[str, str]:
    """Version ARN -> manifest key, from key names alone (no reads): solutions/<s>/<v>/manifest.json."""
    found = {}
    for key in bucket.keys(prefix):
        parts = key.split("/")
        if len(parts) == 4 and parts[3] == MANIFEST:
            found[f"{parts[1]}/{parts[2]}"] = key
    return found


def list_solution_versions(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"solutionArn", "nextToken", "maxResults"}))
    solution_arn = fields.arn("solutionArn")
    page = PageRequest(fields)
    prefix = "solutions/"
    records: list[Record] = []
    if solution_arn is not None:
        solution = parse_arn(solution_arn, "solutionArn", "solution").path[0]
        prefix = f"solutions/{solution}/"
        records = ws.records.children(solution_arn, SOLUTION_VERSION)
        if (
            not records
            and ws.records.get(solution_arn, SOLUTION) is None
            and not _manifest_arns(ws.bucket, prefix)
        ):
            raise ResourceNotFoundException(f"Solution {solution_arn} does not exist")
    else:
        token = None
        while True:
            batch, token = ws.records.page(SOLUTION_VERSION, None, 100, token)
            records += batch
            if token is None:
                break
    # Both kinds in one order (solution/version), keyed by "solution/version".
    entries: dict[str, Record | str] = dict(_manifest_arns(ws.bucket, prefix))
    for record in records:
        entries[record.arn.split(":solution/", 1)[1]] = record
    after = ""
    if page.token is not None:
        after = decode_token(page.token, prefix, lambda p: set(p) == {"k"})["k"]
    chosen = [k for k in sorted(entries) if k > after][: page.max_results + 1]
    items = []
    for key in chosen[: page.max_results]:
        entry = entries[key]
        if isinstance(entry, Record):
            items.append(version_summary(entry))
        else:
            try:
                raw = ws.bucket.read_json(entry)
                if raw is not None:
                    items.append(_manifest_json(Manifest.from_json(raw), summary=True))
            except ArtifactError as exc:  # one unreadable manifest: left out, and logged
                skipped(entry, exc)
    token_out = (
        encode_token(prefix, {"k": chosen[page.max_results - 1]}) if len(chosen) > page.max_results else None
    )
    return paged("solutionVersions", items, token_out)


def stop_solution_version_creation(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"solutionVersionArn"}))
    arn = fields.required_arn("solutionVersionArn")
    record = _version_record(ws, arn)
    if record is None:
        ws.bucket.manifest(arn)  # ResourceNotFoundException if it is not a published version either
        raise ResourceInUseException(f"Solution version {arn} is ACTIVE: there is no training to stop")
    now = ws.now()
    # Not started yet: it stops here. Training: the training function stops at its next check.
    if ws.records.transition(arn, (CREATE_PENDING,), CREATE_STOPPED, now) is None and (
        ws.records.transition(arn, (CREATE_IN_PROGRESS,), CREATE_STOPPING, now) is None
    ):
        current = ws.record(arn, SOLUTION_VERSION)
        if current.status not in (CREATE_STOPPING, CREATE_STOPPED):
            raise ResourceInUseException(
                f"Solution version {arn} is {current.status}: it is not being created"
            )
    return {}


def get_solution_metrics(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"solutionVersionArn"}))
    arn = fields.required_arn("solutionVersionArn")
    record = _version_record(ws, arn)
    if record is None:
        ws.bucket.manifest(arn)
        return {"solutionVersionArn": arn, "metrics": {}}  # published with the CLI: never evaluated here
    if record.status != ACTIVE:
        raise ResourceInUseException(
            f"Solution version {arn} is {record.status}: metrics come once it is ACTIVE"
        )
    return {"solutionVersionArn": arn, "metrics": record.attributes.get("metrics", {})}


OPERATIONS = {
    "CreateSolutionVersion": create_solution_version,
    "DescribeSolutionVersion": describe_solution_version,
    "ListSolutionVersions": list_solution_versions,
    "StopSolutionVersionCreation": stop_solution_version_creation,
    "GetSolutionMetrics": get_solution_metrics,
}
