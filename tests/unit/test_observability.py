"""Powertools' Tracer (and the X-Ray SDK it imports) only when tracing is on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, sys; from personalize_core.observability import tracer; "
    "traced = tracer.capture_method(len); "
    "print(json.dumps([type(tracer).__name__, 'aws_xray_sdk' in sys.modules, traced([1, 2])]))"
)


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, ["UntracedTracer", False, 2]),  # not in Lambda
        (
            {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"},
            ["UntracedTracer", False, 2],
        ),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "false"}, ["Tracer", True, 2]),
    ],
    ids=["local", "lambda-tracing-off", "lambda-tracing-on"],
)
def test_the_tracer_and_xray_are_imported_only_when_tracing_is_on(
    environment: dict[str, str], expected: list[object]
) -> None:
    # Given a fresh interpreter with the function's environment
    env = {k: v for k, v in os.environ.items() if k not in ("LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED")}
    env |= environment | {"PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "core"), str(ROOT)])}
    # When it imports the observability module and decorates a function
    probe = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    # Then the tracer is the real one only when tracing is on, and the decorated function still works
    assert json.loads(probe.stdout.strip().splitlines()[-1]) == expected
