"""CreateSolution, DescribeSolution, ListSolutions, UpdateSolution, DeleteSolution.

A solution is a recipe and its configuration in a dataset group; its versions are trained by the
training function (control/solution_versions.py creates them). With ``performAutoTraining`` (the
default, as in Personalize) the solution gets an EventBridge Scheduler schedule that sends the
training queue an ``autotrain`` message at its ``schedulingExpression`` (default every 7 days);
each run trains a new version.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from personalize_core.arns import check_name
from personalize_core.control.paging import PageRequest, paged
from personalize_core.control.records import ACTIVE, UNFINISHED, Record
from personalize_core.control.tags import check_tags
from personalize_core.control.workspace import DATASET_GROUP, SOLUTION, SOLUTION_VERSION, Workspace
from personalize_core.edge.fields import Fields
from personalize_core.errors import (
    InvalidInputException,
    ResourceAlreadyExistsException,
    ResourceInUseException,
)
from personalize_core.training.config import custom_recipe, scheduling_expression, training_config

CREATE_FIELDS = frozenset(
    {
        "name",
        "performHPO",
        "performAutoML",
        "performAutoTraining",
        "performIncrementalUpdate",
        "recipeArn",
        "datasetGroupArn",
        "eventType",
        "solutionConfig",
        "tags",
    }
)


def _boolean(fields: Fields, key: str, default: bool) -> bool:
    value = fields.body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInputException(f"{key} must be a boolean")
    return value


def latest_version(ws: Workspace, solution_arn: str) -> Record | None:
    versions = ws.records.children(solution_arn, SOLUTION_VERSION)
    return max(versions, key=lambda v: v.created_at) if versions else None


def version_summary(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {
        "solutionVersionArn": record.arn,
        "status": record.status,
        "trainingMode": record.attributes.get("trainingMode", "FULL"),
        "trainingType": record.attributes.get("trainingType", "MANUAL"),
    } | record.timestamps()
    if record.failure_reason:
        out["failureReason"] = record.failure_reason
    return out


def _solution_json(ws: Workspace, record: Record, summary: bool = False) -> dict[str, Any]:
    attributes = record.attributes
    out: dict[str, Any] = {
        "name": record.name,
        "solutionArn": record.arn,
        "status": record.status,
        "recipeArn": attributes["recipeArn"],
    } | record.timestamps()
    if summary:
        return out
    out |= {
        "datasetGroupArn": record.parent_arn,
        "performHPO": False,
        "performAutoML": False,
        "performAutoTraining": attributes["performAutoTraining"],
        "performIncrementalUpdate": False,
        "solutionConfig": attributes.get("solutionConfig") or {},
    }
    if attributes.get("eventType"):
        out["eventType"] = attributes["eventType"]
    latest = latest_version(ws, record.arn)
    if latest is not None:
        out["latestSolutionVersion"] = version_summary(latest)
    return out


def _schedule(ws: Workspace, record: Record) -> None:
    if ws.schedules is None:
        return
    if record.attributes["performAutoTraining"]:
        ws.schedules.put(record.name, record.arn, record.attributes["schedulingExpression"])
    else:
        ws.schedules.delete(record.name)


def create_solution(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", CREATE_FIELDS)
    name = check_name(fields.required_string("name", max_len=63), "name")
    group_arn = fields.required_arn("datasetGroupArn")
    recipe_arn = fields.arn("recipeArn")
    if recipe_arn is None:
        raise InvalidInputException("recipeArn is required: this deployment has no AutoML")
    recipe = custom_recipe(recipe_arn)
    for flag in ("performHPO", "performAutoML", "performIncrementalUpdate"):
        if _boolean(fields, flag, False):
            raise InvalidInputException(f"{flag} is not supported by this deployment")
    auto = _boolean(fields, "performAutoTraining", True)
    event_type = fields.string("eventType", max_len=256)
    config = fields.body.get("solutionConfig")
    if config is not None and not isinstance(config, dict):
        raise InvalidInputException("solutionConfig must be an object")
    training_config(config, event_type)  # refuses what training could not honour, now
    expression = scheduling_expression(config)
    check_tags(fields)
    group = ws.record(group_arn, DATASET_GROUP)
    if ws.bucket.newest_manifest(name) is not None:
        raise ResourceAlreadyExistsException(f"Solution {name} already exists (published with the CLI)")
    now = ws.now()
    attributes = {
        "recipeArn": recipe_arn,
        "recipe": recipe.value,
        "performAutoTraining": auto,
        "schedulingExpression": expression,
        "solutionConfig": config or {},
        "eventType": event_type,
    }
    record = Record(
        SOLUTION, ws.arn(SOLUTION, name), name, ACTIVE, now, now, group.arn, attributes=attributes
    )
    ws.records.create(record)
    _schedule(ws, record)
    return {"solutionArn": record.arn}


def describe_solution(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"solutionArn"}))
    return {"solution": _solution_json(ws, ws.record(fields.required_arn("solutionArn"), SOLUTION))}


def list_solutions(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"datasetGroupArn", "nextToken", "maxResults"}))
    group_arn = fields.arn("datasetGroupArn")
    page = PageRequest(fields)
    records, token = ws.records.page(SOLUTION, group_arn, page.max_results, page.token)
    return paged("solutions", [_solution_json(ws, r, summary=True) for r in records], token)


def update_solution(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(
        body,
        "",
        frozenset({"solutionArn", "performAutoTraining", "performIncrementalUpdate", "solutionUpdateConfig"}),
    )
    record = ws.record(fields.required_arn("solutionArn"), SOLUTION)
    if _boolean(fields, "performIncrementalUpdate", False):
        raise InvalidInputException("performIncrementalUpdate is not supported by this deployment")
    update = Fields(
        fields.body.get("solutionUpdateConfig") or {},
        "solutionUpdateConfig.",
        frozenset({"autoTrainingConfig", "eventsConfig"}),
    )
    config = dict(record.attributes.get("solutionConfig") or {})
    if update.body.get("eventsConfig") is not None:
        config["eventsConfig"] = update.body["eventsConfig"]
    if update.body.get("autoTrainingConfig") is not None:
        config["autoTrainingConfig"] = update.body["autoTrainingConfig"]
    training_config(config, record.attributes.get("eventType"))
    changed = record.with_attributes(
        performAutoTraining=_boolean(fields, "performAutoTraining", record.attributes["performAutoTraining"]),
        schedulingExpression=scheduling_expression(config),
        solutionConfig=config,
    )
    changed = replace(changed, updated_at=max(ws.now(), record.updated_at + 0.001))
    if ws.records.replace(record, changed) is None:
        raise ResourceInUseException(f"Solution {record.arn} changed meanwhile; try again")
    _schedule(ws, changed)
    return {"solutionArn": record.arn}


def delete_solution(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"solutionArn"}))
    record = ws.record(fields.required_arn("solutionArn"), SOLUTION)
    training = [v for v in ws.records.children(record.arn, SOLUTION_VERSION) if v.status in UNFINISHED]
    if training:
        raise ResourceInUseException(f"Solution {record.arn} has a version in training: {training[0].arn}")
    if ws.schedules is not None:
        ws.schedules.delete(record.name)
    ws.records.delete(record)
    return {}


OPERATIONS = {
    "CreateSolution": create_solution,
    "DescribeSolution": describe_solution,
    "ListSolutions": list_solutions,
    "UpdateSolution": update_solution,
    "DeleteSolution": delete_solution,
}
