"""DescribeSolutionVersion and ListSolutionVersions: the versions published to the model bucket.

A solution version is ``solutions/<solution>/<version>/``, described by its manifest.
"""

from __future__ import annotations

from typing import Any

from personalize_core.arns import make_arn, parse_arn
from personalize_core.control.campaigns import timestamps
from personalize_core.control.paging import PageRequest, key_page, paged, skipped
from personalize_core.edge.fields import Fields
from personalize_core.errors import ArtifactError, ResourceNotFoundException
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.layout import ACTIVE, CREATE_FAILED, MANIFEST, Manifest, Recipe

RECIPE_ARNS = {
    Recipe.USER_PERSONALIZATION: "arn:aws:personalize:::recipe/aws-user-personalization",
    Recipe.RELATED_ITEMS: "arn:aws:personalize:::recipe/aws-similar-items",
    Recipe.POPULAR_ITEMS: "arn:aws:personalize:::recipe/aws-popularity-count",
    Recipe.PERSONALIZED_RANKING: "arn:aws:personalize:::recipe/aws-personalized-ranking",
}


def _solution_version_json(manifest: Manifest, summary: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "solutionVersionArn": manifest.solution_version_arn,
        "status": ACTIVE,
        "trainingMode": "FULL",
        **timestamps(manifest.created_at, manifest.created_at),
    }
    if summary:
        return out
    arn = parse_arn(manifest.solution_version_arn, "solutionVersionArn", "solution", parts=2)
    return out | {
        "name": manifest.version,
        "solutionArn": str(make_arn(arn.region, arn.account, "solution", manifest.solution)),
        "recipeArn": RECIPE_ARNS[manifest.recipe],
        "datasetGroupArn": str(make_arn(arn.region, arn.account, "dataset-group", manifest.solution)),
        "performHPO": False,
        "performAutoML": False,
    }


def describe_solution_version(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"solutionVersionArn"}))
    arn = fields.required_arn("solutionVersionArn")
    try:
        manifest = bucket.manifest(arn)
    except ArtifactError as exc:  # say what is wrong with it, as Personalize does of a failed version
        return {
            "solutionVersion": {"solutionVersionArn": arn, "status": CREATE_FAILED, "failureReason": str(exc)}
        }
    return {"solutionVersion": _solution_version_json(manifest)}


def list_solution_versions(bucket: ModelBucket, body: dict[str, Any]) -> dict[str, Any]:
    fields = Fields(body, "", frozenset({"solutionArn", "nextToken", "maxResults"}))
    solution_arn = fields.arn("solutionArn")
    prefix = "solutions/"
    if solution_arn is not None:
        solution = parse_arn(solution_arn, "solutionArn", "solution").path[0]
        prefix = f"solutions/{solution}/"
        if not any(key.endswith("/" + MANIFEST) for key in bucket.keys(prefix)):
            raise ResourceNotFoundException(f"Solution {solution_arn} does not exist")

    def summary(key: str) -> dict[str, Any] | None:
        try:
            raw = bucket.read_json(key) if key.endswith("/" + MANIFEST) else None
            return _solution_version_json(Manifest.from_json(raw), summary=True) if raw is not None else None
        except ArtifactError as exc:
            skipped(key, exc)
            return None

    items, token = key_page(lambda after: bucket.keys(prefix, after), prefix, PageRequest(fields), summary)
    return paged("solutionVersions", items, token)


OPERATIONS = {
    "DescribeSolutionVersion": describe_solution_version,
    "ListSolutionVersions": list_solution_versions,
}
