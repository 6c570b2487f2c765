"""docs/openapi.yaml: an OpenAPI 3 description of the API's routes, built from botocore's models.

The request and response schemas are Personalize's own shapes as botocore (the client every SDK
call goes through) describes them, so the description cannot drift from the contract; a test
regenerates it and compares it with the committed file.

- the runtime (REST-JSON): ``POST /recommendations`` and ``POST /personalize-ranking``, errors as
  ``x-amzn-ErrorType`` + ``{"message"}``;
- the events API (personalize-events, REST-JSON): ``POST /events``, ``POST /items``, ``POST /users``
  (200 with an empty body), its structures named ``Events<Shape>`` (its ``Item`` or
  ``MetricAttribution`` are not the control plane's);
- the control plane (JSON 1.1): ``POST /`` with ``X-Amz-Target: AmazonPersonalize.<Operation>``
  for each operation served; OpenAPI has one operation per path and method, so the body is any
  of the operations' inputs, and errors are ``{"__type", "message"}``.

    .venv/bin/python -m lambda_personalize.openapi > docs/openapi.yaml
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import botocore.session
import yaml

#: The runtime operations this stack serves (the template's routes).
RUNTIME_OPERATIONS = ("GetRecommendations", "GetPersonalizedRanking")
#: The personalize-events operations it serves (EventsFunction's routes).
EVENTS_OPERATIONS = ("PutEvents", "PutItems", "PutUsers")
#: The control-plane operations registered on functions/control_plane/app.py's ``plane``.
CONTROL_PLANE_OPERATIONS = (
    "CreateBatchInferenceJob",
    "CreateCampaign",
    "CreateDataset",
    "CreateDatasetGroup",
    "CreateDatasetImportJob",
    "CreateEventTracker",
    "CreateFilter",
    "CreateRecommender",
    "CreateSchema",
    "CreateSolution",
    "CreateSolutionVersion",
    "DeleteCampaign",
    "DeleteDataset",
    "DeleteDatasetGroup",
    "DeleteEventTracker",
    "DeleteFilter",
    "DeleteRecommender",
    "DeleteSchema",
    "DeleteSolution",
    "DescribeBatchInferenceJob",
    "DescribeCampaign",
    "DescribeDataset",
    "DescribeDatasetGroup",
    "DescribeDatasetImportJob",
    "DescribeEventTracker",
    "DescribeFilter",
    "DescribeRecommender",
    "DescribeSchema",
    "DescribeSolution",
    "DescribeSolutionVersion",
    "GetSolutionMetrics",
    "ListBatchInferenceJobs",
    "ListCampaigns",
    "ListDatasetGroups",
    "ListDatasetImportJobs",
    "ListDatasets",
    "ListEventTrackers",
    "ListFilters",
    "ListRecommenders",
    "ListSchemas",
    "ListSolutionVersions",
    "ListSolutions",
    "StartRecommender",
    "StopRecommender",
    "StopSolutionVersionCreation",
    "UpdateCampaign",
    "UpdateRecommender",
    "UpdateSolution",
)
TARGET_PREFIX = "AmazonPersonalize."
AMZ_JSON = "application/x-amz-json-1.1"
#: Error codes the API answers with (personalize_core.errors), plus API Gateway's own.
RUNTIME_ERRORS = {"400": "InvalidInputException", "404": "ResourceNotFoundException"}


class _Schemas:
    """JSON Schemas of botocore shapes, one component per structure (named ``prefix<Shape>``)."""

    def __init__(self, components: dict[str, Any] | None = None, prefix: str = "") -> None:
        self.components: dict[str, Any] = {} if components is None else components
        self.prefix = prefix

    def of(self, shape: Any) -> dict[str, Any]:
        kind = shape.type_name
        meta = shape.metadata
        if kind == "structure":
            name = self.prefix + shape.name
            if name not in self.components:
                self.components[name] = {}  # placeholder: a structure may refer to itself
                members = shape.members
                schema: dict[str, Any] = {
                    "type": "object",
                    "properties": {n: self.of(m) for n, m in members.items()},
                    "additionalProperties": False,
                }
                required = [n for n in shape.required_members if n in members]
                if required:
                    schema["required"] = required
                self.components[name] = schema
            return {"$ref": f"#/components/schemas/{name}"}
        schema = {}
        if kind == "string":
            schema = {"type": "string"}
            if shape.enum:
                schema["enum"] = list(shape.enum)
            if "min" in meta:
                schema["minLength"] = meta["min"]
            if "max" in meta:
                schema["maxLength"] = meta["max"]
        elif kind in ("integer", "long"):
            schema = {"type": "integer"}
            if "min" in meta:
                schema["minimum"] = meta["min"]
            if "max" in meta:
                schema["maximum"] = meta["max"]
        elif kind in ("float", "double", "timestamp"):
            schema = {"type": "number"}
        elif kind == "boolean":
            schema = {"type": "boolean"}
        elif kind == "list":
            schema = {"type": "array", "items": self.of(shape.member)}
            if "min" in meta:
                schema["minItems"] = meta["min"]
            if "max" in meta:
                schema["maxItems"] = meta["max"]
        elif kind == "map":
            schema = {"type": "object", "additionalProperties": self.of(shape.value)}
            if "max" in meta:
                schema["maxProperties"] = meta["max"]
        else:
            raise ValueError(f"shape {shape.name} of type {kind} has no JSON Schema here")
        return schema


def _error_schema(json_1_1: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {"message": {"type": "string", "minLength": 1}}
    required = ["message"]
    if json_1_1:
        properties["__type"] = {"type": "string", "minLength": 1}
        required.insert(0, "__type")
    return {"type": "object", "properties": properties, "required": required}


def _operations(model: Any, names: Iterable[str]) -> list[Any]:
    return [model.operation_model(name) for name in names]


def build_spec() -> dict[str, Any]:
    session = botocore.session.get_session()
    runtime = session.get_service_model("personalize-runtime")
    control = session.get_service_model("personalize")
    events = session.get_service_model("personalize-events")
    schemas = _Schemas()
    paths: dict[str, Any] = {}
    for operation in _operations(runtime, RUNTIME_OPERATIONS):
        http = operation.http
        responses: dict[str, Any] = {
            "200": {
                "description": f"{operation.name}: the answer",
                "content": {"application/json": {"schema": schemas.of(operation.output_shape)}},
            }
        }
        for status, code in RUNTIME_ERRORS.items():
            responses[status] = {
                "description": f"{code} (x-amzn-ErrorType names the error)",
                "headers": {"x-amzn-ErrorType": {"schema": {"type": "string", "minLength": 1}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RestJsonError"}}},
            }
        paths[http["requestUri"]] = {
            http["method"].lower(): {
                "operationId": operation.name,
                "summary": f"Personalize runtime {operation.name}",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": schemas.of(operation.input_shape)}},
                },
                "responses": responses,
            }
        }
    event_schemas = _Schemas(schemas.components, prefix="Events")
    for operation in _operations(events, EVENTS_OPERATIONS):
        http = operation.http
        responses = {"200": {"description": f"{operation.name}: accepted (an empty body)"}}
        for status, code in {**RUNTIME_ERRORS, "503": "ServiceUnavailableException"}.items():
            responses[status] = {
                "description": f"{code} (x-amzn-ErrorType names the error)",
                "headers": {"x-amzn-ErrorType": {"schema": {"type": "string", "minLength": 1}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RestJsonError"}}},
            }
        paths[http["requestUri"]] = {
            http["method"].lower(): {
                "operationId": operation.name,
                "summary": f"Personalize events {operation.name}",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": event_schemas.of(operation.input_shape)}},
                },
                "responses": responses,
            }
        }
    inputs = [schemas.of(op.input_shape) for op in _operations(control, CONTROL_PLANE_OPERATIONS)]
    paths["/"] = {
        "post": {
            "operationId": "ControlPlane",
            "summary": "Personalize control plane (JSON 1.1): the operation is named by X-Amz-Target",
            "parameters": [
                {
                    "name": "X-Amz-Target",
                    "in": "header",
                    "required": True,
                    "schema": {
                        "type": "string",
                        "enum": [TARGET_PREFIX + n for n in CONTROL_PLANE_OPERATIONS],
                    },
                }
            ],
            "requestBody": {"required": True, "content": {AMZ_JSON: {"schema": {"anyOf": inputs}}}},
            "responses": {
                "200": {
                    "description": "the operation's output",
                    "content": {AMZ_JSON: {"schema": {"type": "object"}}},
                },
                "400": {
                    "description": "a client error, named by __type",
                    "content": {AMZ_JSON: {"schema": {"$ref": "#/components/schemas/Json11Error"}}},
                },
            },
        }
    }
    components = dict(sorted(schemas.components.items()))
    components["RestJsonError"] = _error_schema(json_1_1=False)
    components["Json11Error"] = _error_schema(json_1_1=True)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Lambda Personalize",
            "version": "1",
            "description": "Amazon Personalize's runtime, events and control-plane contract, as served "
            "by this stack. Generated from botocore's service models by lambda_personalize.openapi; "
            "do not edit.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }


def render() -> str:
    return str(yaml.safe_dump(build_spec(), sort_keys=False, width=110, allow_unicode=True))


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
