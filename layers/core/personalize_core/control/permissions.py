"""What each control-plane operation needs in IAM terms: Personalize's own action names on its own
resource ARNs, so that policies written for Amazon Personalize govern this control plane unchanged.

From the Service Authorization Reference for Amazon Personalize: an operation on one resource
needs ``personalize:<Operation>`` on that resource's ARN (a Create, on the ARN it will create);
List operations take no resource (``*``); CreateBatchInferenceJob (and CreateDatasetImportJob, and
CreateDatasetGroup with a role) also needs ``iam:PassRole`` on its ``roleArn`` (passed to
``personalize.amazonaws.com``): the caller must be allowed to hand that
role to the service, which is what keeps a caller from making the worker act as a role they could
not use themselves (the confused deputy). An operation without an entry here (one added later)
needs ``personalize:<Operation>`` on ``*``: a policy scoped to ARNs does not cover it by accident.

The ARNs are derived from the request exactly as the operation derives them (a Create's ARN from
its name and the region and account of the ARN it names), so what is authorised is what is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from personalize_core.arns import make_arn, parse_arn
from personalize_core.control.campaigns import LATEST
from personalize_core.control.workspace import DEFAULT_ACCOUNT
from personalize_core.edge.authorization import Permission, pass_role
from personalize_core.edge.fields import Fields
from personalize_core.settings import get_settings

#: What may be read from a body before the operation validates it all (the operation still does).
_Body = dict[str, Any]


def _string(body: _Body, key: str) -> str:
    # Only the fields a permission needs; their own operation re-validates the whole body.
    value = Fields(body, "", frozenset(body)).string(key, max_len=2048, required=True)
    assert value is not None
    return value


def _named(
    resource_type: str, name_key: str, arn_key: str, arn_type: str, parts: int = 1
) -> Callable[[_Body], str]:
    """The ARN a Create will make: its name, in the region and account of the ARN it names."""

    def arn(body: _Body) -> str:
        source = parse_arn(_string(body, arn_key), arn_key, arn_type, parts)
        return str(make_arn(source.region, source.account, resource_type, _string(body, name_key)))

    return arn


def _campaign(body: _Body) -> str:
    """CreateCampaign's ARN: its name, in the region and account of its solution version (or of the
    solution, for ``<solution ARN>/$LATEST``: control/campaigns.py)."""
    version = _string(body, "solutionVersionArn")
    if version.endswith(LATEST):
        source = parse_arn(version[: -len(LATEST)], "solutionVersionArn", "solution")
    else:
        source = parse_arn(version, "solutionVersionArn", "solution", parts=2)
    return str(make_arn(source.region, source.account, "campaign", _string(body, "name")))


def _given(key: str) -> Callable[[_Body], str]:
    return lambda body: _string(body, key)


def _own(resource_type: str, *keys: str) -> Callable[[_Body], str]:
    """The ARN a data-path Create makes: in the stack's region and account (control/workspace.py)."""

    def arn(body: _Body) -> str:
        settings = get_settings()
        path = [_string(body, key) for key in keys]
        return str(make_arn(settings.region, settings.account_id or DEFAULT_ACCOUNT, resource_type, *path))

    return arn


def _dataset(body: _Body) -> str:
    group = parse_arn(_string(body, "datasetGroupArn"), "datasetGroupArn", "dataset-group").path[0]
    settings = get_settings()
    account = settings.account_id or DEFAULT_ACCOUNT
    return str(make_arn(settings.region, account, "dataset", group, _string(body, "datasetType")))


def _batch_job(body: _Body) -> str:
    settings = get_settings()
    version = parse_arn(_string(body, "solutionVersionArn"), "solutionVersionArn", "solution", parts=2)
    account = settings.account_id or version.account
    return str(make_arn(settings.region, account, "batch-inference-job", _string(body, "jobName")))


#: Operation -> the resource ARN it acts on (None: a List, no resource).
RESOURCES: dict[str, Callable[[_Body], str] | None] = {
    "CreateFilter": _named("filter", "name", "datasetGroupArn", "dataset-group"),
    "DescribeFilter": _given("filterArn"),
    "DeleteFilter": _given("filterArn"),
    "ListFilters": None,
    "CreateCampaign": _campaign,
    "DescribeCampaign": _given("campaignArn"),
    "UpdateCampaign": _given("campaignArn"),
    "DeleteCampaign": _given("campaignArn"),
    "ListCampaigns": None,
    "DescribeSolutionVersion": _given("solutionVersionArn"),
    "ListSolutionVersions": None,
    "CreateBatchInferenceJob": _batch_job,
    "DescribeBatchInferenceJob": _given("batchInferenceJobArn"),
    "ListBatchInferenceJobs": None,
    # The data path (training): Personalize's resource types, the same rule.
    "CreateDatasetGroup": _own("dataset-group", "name"),
    "DescribeDatasetGroup": _given("datasetGroupArn"),
    "DeleteDatasetGroup": _given("datasetGroupArn"),
    "ListDatasetGroups": None,
    "CreateSchema": _own("schema", "name"),
    "DescribeSchema": _given("schemaArn"),
    "DeleteSchema": _given("schemaArn"),
    "ListSchemas": None,
    "CreateDataset": _dataset,
    "DescribeDataset": _given("datasetArn"),
    "DeleteDataset": _given("datasetArn"),
    "ListDatasets": None,
    "CreateDatasetImportJob": _own("dataset-import-job", "jobName"),
    "DescribeDatasetImportJob": _given("datasetImportJobArn"),
    "ListDatasetImportJobs": None,
    "CreateSolution": _own("solution", "name"),
    "DescribeSolution": _given("solutionArn"),
    "UpdateSolution": _given("solutionArn"),
    "DeleteSolution": _given("solutionArn"),
    "ListSolutions": None,
    "CreateSolutionVersion": _given("solutionArn"),
    "StopSolutionVersionCreation": _given("solutionVersionArn"),
    "GetSolutionMetrics": _given("solutionVersionArn"),
    "CreateRecommender": _own("recommender", "name"),
    "DescribeRecommender": _given("recommenderArn"),
    "UpdateRecommender": _given("recommenderArn"),
    "StartRecommender": _given("recommenderArn"),
    "StopRecommender": _given("recommenderArn"),
    "DeleteRecommender": _given("recommenderArn"),
    "ListRecommenders": None,
    "CreateEventTracker": _own("event-tracker", "name"),
    "DescribeEventTracker": _given("eventTrackerArn"),
    "DeleteEventTracker": _given("eventTrackerArn"),
    "ListEventTrackers": None,
}
#: Operations that hand a role to the service: the caller must be allowed to pass it.
PASSED_ROLES = {
    "CreateBatchInferenceJob": "roleArn",
    "CreateDatasetImportJob": "roleArn",
    "CreateDatasetGroup": "roleArn",
}


def required(operation: str, body: _Body) -> list[Permission]:
    """The permissions a call of ``operation`` with ``body`` needs (InvalidInputException if the
    fields that name its resource are missing or malformed: the operation would refuse it too)."""
    action = f"personalize:{operation}"
    if operation not in RESOURCES:
        return [Permission(action)]
    resource = RESOURCES[operation]
    permissions = [Permission(action, resource(body) if resource is not None else "*")]
    role_key = PASSED_ROLES.get(operation)
    if role_key is not None and (role_key in body or operation != "CreateDatasetGroup"):
        permissions.append(pass_role(_string(body, role_key)))  # (a dataset group's role is optional)
    return permissions
