"""Personalize's control plane (POST /, JSON 1.1, X-Amz-Target): batch jobs and management calls."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from personalize_core import batch, management, wire
from personalize_core.control_plane import ControlPlane
from personalize_core.observability import logger, metrics, tracer

app = wire.create_app(json_1_1=True)
plane = ControlPlane()
# Feature modules register their operations on `plane` here (batch jobs, filters, campaigns, ...).
batch.register(plane)
management.register(plane)


@app.post("/")
@tracer.capture_method
def control_plane() -> wire.Response[str]:
    target = app.current_event.headers.get("X-Amz-Target") or app.current_event.headers.get("x-amz-target")
    result = plane.dispatch(target, wire.json_body(app))
    metrics.add_metric(name="ControlPlaneCalls", unit=MetricUnit.Count, value=1)
    return wire.respond(app, 200, result, content_type=wire.AMZ_JSON)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
