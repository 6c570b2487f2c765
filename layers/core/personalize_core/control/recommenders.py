"""CreateRecommender, DescribeRecommender, ListRecommenders, UpdateRecommender, DeleteRecommender,
StartRecommender, StopRecommender.

A recommender is a domain recipe (``aws-vod-top-picks``, ``aws-ecomm-customers-who-viewed-x-also-
viewed``, ...) trained on its dataset group's data like a solution: CreateRecommender records it
(CREATE PENDING) and a solution version of its own (under the solution ``r-<name>``, listed with
it), which the training function trains; once that version is ACTIVE the recommender points to it
through ``recommenders/<name>.json`` (a pointer like a campaign's) and is ACTIVE. GetRecommendations
with its ``recommenderArn`` is then served as a campaign is. Stop and Start switch the pointer off
and on (INACTIVE / ACTIVE).
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Any

from personalize_core.arns import check_name
from personalize_core.control.paging import PageRequest, paged
from personalize_core.control.records import ACTIVE, CREATE_PENDING, UNFINISHED, Record
from personalize_core.control.solution_versions import new_version
from personalize_core.control.tags import check_tags
from personalize_core.control.workspace import DATASET_GROUP, RECOMMENDER, SOLUTION, Workspace
from personalize_core.edge.fields import Fields
from personalize_core.errors import (
    InvalidInputException,
    ResourceAlreadyExistsException,
    ResourceInUseException,
)
from personalize_core.modelstore.bucket_records import RecommenderPointer
from personalize_core.modelstore.layout import recommender_key
from personalize_core.training.config import domain_recipe

INACTIVE = "INACTIVE"
CONFIG_FIELDS = frozenset(
    {
        "itemExplorationConfig",
        "minRecommendationRequestsPerSecond",
        "trainingDataConfig",
        "enableMetadataWithRecommendations",
    }
)


def model_solution(name: str) -> str:
    """The solution name of a recommender's versions (a valid name for any recommender name)."""
    if len(name) <= 61:
        return f"r-{name}"
    return f"r-{name[:52]}-{zlib.crc32(name.encode()):08x}"


def _config(fields: Fields, key: str = "recommenderConfig") -> dict[str, Any]:
    raw = fields.body.get(key)
    if raw is None:
        return {}
    config = Fields(raw, f"{key}.", CONFIG_FIELDS)
    config.integer("minRecommendationRequestsPerSecond", minimum=1, maximum=2**31 - 1)
    if config.body.get("itemExplorationConfig"):
        raise InvalidInputException(
            f"{key}.itemExplorationConfig is not supported: scores are exact, not explored"
        )
    if config.body.get("trainingDataConfig"):
        raise InvalidInputException(f"{key}.trainingDataConfig is not supported by this deployment")
    return dict(raw)


def _json(record: Record, summary: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": record.name,
        "recommenderArn": record.arn,
        "datasetGroupArn": record.parent_arn,
        "recipeArn": record.attributes["recipeArn"],
        "recommenderConfig": record.attributes.get("recommenderConfig") or {},
        "status": record.status,
    } | record.timestamps()
    if summary:
        return out
    if record.failure_reason:
        out["failureReason"] = record.failure_reason
    if record.attributes.get("metrics"):
        out["modelMetrics"] = record.attributes["metrics"]
    if "latestUpdate" in record.attributes:
        out["latestRecommenderUpdate"] = record.attributes["latestUpdate"]
    return out


def create_recommender(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(
        body, "", frozenset({"name", "datasetGroupArn", "recipeArn", "recommenderConfig", "tags"})
    )
    name = check_name(fields.required_string("name", max_len=63), "name")
    group_arn = fields.required_arn("datasetGroupArn")
    recipe_arn = fields.required_arn("recipeArn")
    use_case = domain_recipe(recipe_arn)
    config = _config(fields)
    check_tags(fields)
    group = ws.record(group_arn, DATASET_GROUP)
    if group.attributes.get("domain") != use_case.domain:
        raise InvalidInputException(
            f"Recipe {recipe_arn} is a {use_case.domain} use case; dataset group {group_arn} is "
            f"{group.attributes.get('domain') or 'not a domain dataset group'}"
        )
    arn = ws.arn(RECOMMENDER, name)
    solution_name = model_solution(name)
    if ws.records.get(arn) is not None:
        raise ResourceAlreadyExistsException(f"Recommender {arn} already exists")
    if ws.records.get(ws.arn(SOLUTION, solution_name)) or ws.bucket.newest_manifest(solution_name):
        raise ResourceAlreadyExistsException(
            f"Solution {solution_name}, which recommender {name} trains, exists"
        )
    now = ws.now()
    attributes = {
        "recipeArn": recipe_arn,
        "recipe": use_case.recipe.value,
        "eventType": use_case.event_type,
        "recommenderConfig": config,
    }
    record = Record(RECOMMENDER, arn, name, CREATE_PENDING, now, now, group.arn, attributes=attributes)
    # The recommender's model is a solution version like any other, of a solution never listed.
    solution = Record(
        SOLUTION,
        ws.arn(SOLUTION, solution_name),
        solution_name,
        ACTIVE,
        now,
        now,
        group.arn,
        attributes=attributes,
    )
    ws.records.create(record)
    try:
        version = new_version(ws, solution, extra={"recommenderArn": arn})
    except Exception:
        ws.records.delete(record)
        raise
    ws.records.transition(
        arn, (CREATE_PENDING,), CREATE_PENDING, ws.now(), attributes={"solutionVersionArn": version.arn}
    )
    return {"recommenderArn": arn}


def describe_recommender(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"recommenderArn"}))
    return {"recommender": _json(ws.record(fields.required_arn("recommenderArn"), RECOMMENDER))}


def list_recommenders(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"datasetGroupArn", "nextToken", "maxResults"}))
    group_arn = fields.arn("datasetGroupArn")
    page = PageRequest(fields)
    records, token = ws.records.page(RECOMMENDER, group_arn, page.max_results, page.token)
    return paged("recommenders", [_json(r, summary=True) for r in records], token)


def update_recommender(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"recommenderArn", "recommenderConfig"}))
    record = ws.record(fields.required_arn("recommenderArn"), RECOMMENDER)
    if fields.body.get("recommenderConfig") is None:
        raise InvalidInputException("recommenderConfig is required")
    config = _config(fields)
    if record.status not in (ACTIVE, INACTIVE):
        raise ResourceInUseException(
            f"Recommender {record.arn} is {record.status}: it can be updated once ACTIVE"
        )
    now = ws.now()
    update = {
        "recommenderConfig": config,
        "status": ACTIVE,
        "creationDateTime": now,
        "lastUpdatedDateTime": now,
    }
    changed = replace(
        record.with_attributes(recommenderConfig=config, latestUpdate=update),
        updated_at=max(now, record.updated_at + 0.001),
    )
    if ws.records.replace(record, changed) is None:
        raise ResourceInUseException(f"Recommender {record.arn} changed meanwhile; try again")
    return {"recommenderArn": record.arn}


def _switch(ws: Workspace, body: dict[str, Any], active: bool) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"recommenderArn"}))
    record = ws.record(fields.required_arn("recommenderArn"), RECOMMENDER)
    want, other = (ACTIVE, INACTIVE) if active else (INACTIVE, ACTIVE)
    if record.status != other:
        raise ResourceInUseException(f"Recommender {record.arn} is {record.status}, not {other}")
    raw = ws.bucket.read_json(recommender_key(record.name))
    if raw is None:
        raise ResourceInUseException(f"Recommender {record.arn} has no model yet")
    pointer = RecommenderPointer.from_json(raw)._replace(active=active, updated_at=ws.now())
    ws.bucket.write_json(recommender_key(record.name), pointer.to_json())
    if ws.records.transition(record.arn, (other,), want, ws.now()) is None:
        raise ResourceInUseException(f"Recommender {record.arn} changed meanwhile; try again")
    return {"recommenderArn": record.arn}


def start_recommender(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    return _switch(ws, body, active=True)


def stop_recommender(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    return _switch(ws, body, active=False)


def delete_recommender(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"recommenderArn"}))
    record = ws.record(fields.required_arn("recommenderArn"), RECOMMENDER)
    if record.status in UNFINISHED:
        raise ResourceInUseException(f"Recommender {record.arn} is {record.status}: wait until it is ACTIVE")
    ws.bucket.delete(recommender_key(record.name))
    ws.records.delete(record)
    return {}


OPERATIONS = {
    "CreateRecommender": create_recommender,
    "DescribeRecommender": describe_recommender,
    "ListRecommenders": list_recommenders,
    "UpdateRecommender": update_recommender,
    "DeleteRecommender": delete_recommender,
    "StartRecommender": start_recommender,
    "StopRecommender": stop_recommender,
}
