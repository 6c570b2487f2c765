"""Personalize's events API (personalize-events, REST-JSON): PutEvents (POST /events), PutItems
(POST /items) and PutUsers (POST /users)."""

from typing import Any

from personalize_core.edge import api
from personalize_core.edge.authorization import Permission, caller_of, get_authorizer
from personalize_core.events.recording import dataset_lookup, get_recorder, required_permission
from personalize_core.events.requests import PutEventsRequest, PutMetadataRequest
from personalize_core.observability import API_GATEWAY_REST, LambdaContext, logger, metrics, tracer

app = api.create_app()


def authorize(permission: Permission) -> None:
    """The caller's IAM policies must allow what Personalize checks (as the control plane's do)."""
    get_authorizer().authorize(caller_of(app.current_event), [permission])


@app.post("/events")
@tracer.capture_method
def put_events() -> api.Response:
    request = PutEventsRequest.parse(api.json_body(app))
    authorize(required_permission(request))
    get_recorder().put_events(request)
    metrics.add_metric(name="EventsRecorded", unit="Count", value=len(request.events))
    return api.empty_response(app)


@app.post("/items")
@tracer.capture_method
def put_items() -> api.Response:
    request = PutMetadataRequest.parse(api.json_body(app), users=False)
    authorize(required_permission(request))
    get_recorder().put_metadata(request, users=False, datasets=dataset_lookup())
    metrics.add_metric(name="ItemsPut", unit="Count", value=len(request.records))
    return api.empty_response(app)


@app.post("/users")
@tracer.capture_method
def put_users() -> api.Response:
    request = PutMetadataRequest.parse(api.json_body(app), users=True)
    authorize(required_permission(request, users=True))
    get_recorder().put_metadata(request, users=True, datasets=dataset_lookup())
    metrics.add_metric(name="UsersPut", unit="Count", value=len(request.records))
    return api.empty_response(app)


@logger.inject_lambda_context(correlation_id_path=API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event)
