"""Personalize's control plane (POST /, JSON 1.1, X-Amz-Target): every resource's operations."""

from typing import Any

from personalize_core.control import (
    batch_jobs,
    campaigns,
    dataset_groups,
    datasets,
    event_trackers,
    filters,
    recommenders,
    solution_versions,
    solutions,
)
from personalize_core.control.permissions import required
from personalize_core.control.registry import ControlPlane, register_all
from personalize_core.control.workspace import get_workspace
from personalize_core.edge import api
from personalize_core.edge.authorization import caller_of, get_authorizer
from personalize_core.modelstore.bucket import get_model_bucket
from personalize_core.observability import API_GATEWAY_REST, LambdaContext, logger, metrics, tracer

app = api.create_app(json_1_1=True)
plane = ControlPlane()
for resource in (filters, campaigns):
    register_all(plane, resource.OPERATIONS, get_model_bucket)
for training in (dataset_groups, datasets, solutions, solution_versions, recommenders, event_trackers):
    register_all(plane, training.OPERATIONS, get_workspace)
register_all(plane, batch_jobs.OPERATIONS, batch_jobs.get_batch_jobs)


def authorize(operation: str, body: dict[str, Any]) -> None:
    """The caller's IAM policies must allow what Personalize would check (control/permissions.py)."""
    get_authorizer().authorize(caller_of(app.current_event), required(operation, body))


@app.post("/")
@tracer.capture_method
def control_plane() -> api.Response:
    result = plane.dispatch(app.current_event.header("X-Amz-Target"), api.json_body(app), authorize)
    metrics.add_metric(name="ControlPlaneCalls", unit="Count", value=1)
    return api.respond(app, 200, result, content_type=api.AMZ_JSON)


@logger.inject_lambda_context(correlation_id_path=API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event)
