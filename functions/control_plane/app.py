"""Personalize's control plane (POST /, JSON 1.1, X-Amz-Target): batch jobs and management calls."""

from typing import Any

from personalize_core import batch, management, wire
from personalize_core.control_plane import ControlPlane
from personalize_core.observability import API_GATEWAY_REST, LambdaContext, logger, metrics, tracer

app = wire.create_app(json_1_1=True)
plane = ControlPlane()
# Feature modules register their operations on `plane` here (batch jobs, filters, campaigns, ...).
batch.register(plane)
management.register(plane)


@app.post("/")
@tracer.capture_method
def control_plane() -> wire.Response:
    result = plane.dispatch(app.current_event.header("X-Amz-Target"), wire.json_body(app))
    metrics.add_metric(name="ControlPlaneCalls", unit="Count", value=1)
    return wire.respond(app, 200, result, content_type=wire.AMZ_JSON)


@logger.inject_lambda_context(correlation_id_path=API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event)
