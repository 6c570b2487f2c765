"""docs/openapi.yaml: it is what botocore's models say, it names every route, and schemathesis,
driven by it over real HTTP, gets no 5xx and only Personalize-shaped errors.

CI runs SCHEMATHESIS_EXAMPLES (60) positive and as many negative cases per operation; `make fuzz`
runs many more.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from lambda_personalize.local_api import LocalApiServer
from lambda_personalize.openapi import CONTROL_PLANE_OPERATIONS, render
from tests.conftest import signed_by
from tests.utils import ROOT, load_function

SPEC = ROOT / "docs" / "openapi.yaml"
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
RUNTIME_ERRORS = {"InvalidInputException", "ResourceNotFoundException", "UnknownOperationException"}
CONTROL_PLANE_ERRORS = RUNTIME_ERRORS | {
    "ResourceAlreadyExistsException",
    "ResourceInUseException",
    "LimitExceededException",
    "InvalidNextTokenException",
}
ROUTES = {
    ("POST", "/recommendations"): ("GetRecommendationsFunction", "get_recommendations"),
    ("POST", "/personalize-ranking"): ("GetPersonalizedRankingFunction", "get_personalized_ranking"),
    ("POST", "/"): ("ControlPlaneFunction", "control_plane"),
    ("POST", "/events"): ("EventsFunction", "events"),
    ("POST", "/items"): ("EventsFunction", "events"),
    ("POST", "/users"): ("EventsFunction", "events"),
}


def test_the_committed_description_is_generated_from_botocore() -> None:
    # Then docs/openapi.yaml is exactly what the generator makes of botocore's models today
    assert yaml.safe_load(SPEC.read_text()) == yaml.safe_load(render()), (
        "docs/openapi.yaml is stale: .venv/bin/python -m lambda_personalize.openapi > docs/openapi.yaml"
    )


def test_the_description_names_every_route_and_operation() -> None:
    # Given the description, the template's routes (as the local runtime serves them) and the plane
    spec = yaml.safe_load(SPEC.read_text())
    described = {(m.upper(), p) for p, methods in spec["paths"].items() for m in methods}
    targets = spec["paths"]["/"]["post"]["parameters"][0]["schema"]["enum"]
    # Then both list the same routes, and the control plane's target names every operation it serves
    assert described == set(ROUTES)
    assert sorted(load_function("control_plane").plane.operations) == sorted(CONTROL_PLANE_OPERATIONS)
    assert targets == [f"AmazonPersonalize.{name}" for name in CONTROL_PLANE_OPERATIONS]


@pytest.fixture
def api_url(fuzz_plane: str) -> Iterator[str]:
    """Every route of the template on real HTTP (loopback), calling the real handlers."""
    routes = {
        key: (function, load_function(module).lambda_handler) for key, (function, module) in ROUTES.items()
    }
    server = LocalApiServer(routes, identity=signed_by).start()
    yield server.url
    server.stop()


def assert_personalize_shaped(response: schemathesis.Response, json_1_1: bool) -> None:
    headers = {name.lower(): values[0] for name, values in response.headers.items()}
    assert response.status_code < 500, response.content
    assert headers.get("x-amzn-requestid")
    if response.status_code == 200 and not response.content:
        return  # PutEvents, PutItems and PutUsers answer 200 with an empty body
    body = json.loads(response.content or b"null")
    assert isinstance(body, dict), response.content
    if response.status_code == 200:
        return
    assert isinstance(body.get("message"), str)
    assert body["message"]
    if json_1_1:
        assert response.status_code == 400
        assert body["__type"] in CONTROL_PLANE_ERRORS
    else:
        assert response.status_code in (400, 404)
        assert headers["x-amzn-errortype"] in RUNTIME_ERRORS


@schemathesis.serializer("application/x-amz-json-1.1")
def amz_json(_: schemathesis.SerializationContext, value: Any) -> bytes:
    """JSON 1.1 bodies are JSON (botocore sends them so), under the control plane's media type."""
    return json.dumps(value).encode()


SCHEMA = schemathesis.openapi.from_path(SPEC)
OPERATIONS = {operation.ok().label: operation.ok() for operation in SCHEMA.get_all_operations()}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_schemathesis_finds_no_5xx_and_only_personalize_errors(
    api_url: str, label: str, mode: GenerationMode
) -> None:
    operation = OPERATIONS[label]
    json_1_1 = operation.path == "/"
    session = requests.Session()

    # Given requests generated from the description (valid ones, or ones that break it)
    tried: list[int] = []

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        tried.append(1)
        # When each is sent to the local API
        response = case.call(base_url=api_url, session=session, timeout=30)
        # Then the answer is a 200 or a Personalize-shaped 4xx, never a 5xx
        assert_personalize_shaped(response, json_1_1)

    run()
    # Then hypothesis really tried every case asked for
    print(f"{label} ({mode.value}): {len(tried)} cases")
    assert len(tried) >= EXAMPLES
