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


# ------------------------------------------------------------------ logs and metrics, Powertools' formats

LOG_PROBE = """
import json, sys
from personalize_core.observability import API_GATEWAY_REST, Logger, Metrics
from lambda_personalize.lambda_context import LocalLambdaContext

logger, metrics = Logger(), Metrics()

@logger.inject_lambda_context(correlation_id_path=API_GATEWAY_REST)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    logger.info("answered", extra={"items": 3})
    metrics.add_metric(name="Recommendations", unit="Count", value=1)
    metrics.add_metric(name="Recommendations", unit="Count", value=1)
    if event.get("fail"):
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    logger.debug("not at INFO")
    return "ok"

for number in (1, 2):
    event = {"requestContext": {"requestId": f"api-request-{number}"}, "fail": number == 2}
    handler(event, LocalLambdaContext(function_name="probe", aws_request_id=f"lambda-request-{number}"))
"""


def run_probe(probe: str, **environment: str) -> list[dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
    env |= environment | {"PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "core"), str(ROOT / "src")])}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_log_lines_are_powertools_json_with_the_invocations_context() -> None:
    # Given a handler decorated as the functions are, with Powertools' settings in the environment
    lines = run_probe(
        LOG_PROBE,
        POWERTOOLS_SERVICE_NAME="svc",
        POWERTOOLS_LOG_LEVEL="INFO",
        POWERTOOLS_METRICS_NAMESPACE="Ns",
        _X_AMZN_TRACE_ID="Root=1-abc;Parent=def;Sampled=1",
    )
    # When it is invoked twice (the second time failing and logging the exception)
    logs = [line for line in lines if "_aws" not in line]
    # Then every INFO+ line is Powertools' JSON, with the context of its own invocation
    assert [(log["level"], log["message"]) for log in logs] == [
        ("INFO", "answered"),
        ("INFO", "answered"),
        ("ERROR", "failed"),
    ]
    first, second, failed = logs
    assert first["service"] == "svc"
    assert str(first["location"]).startswith("handler:")
    assert first["items"] == 3
    assert first["cold_start"] is True
    assert second["cold_start"] is False
    assert first["function_name"] == "probe"
    assert first["function_request_id"] == "lambda-request-1"
    assert first["correlation_id"] == "api-request-1"
    assert second["correlation_id"] == "api-request-2"
    assert first["function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:probe"
    assert first["xray_trace_id"] == "1-abc"
    assert failed["exception_name"] == "ValueError"
    assert "boom" in str(failed["exception"])


CONCURRENT_PROBE = """
import threading
from personalize_core.observability import API_GATEWAY_REST, Logger
from lambda_personalize.lambda_context import LocalLambdaContext

logger = Logger()
both_started = threading.Barrier(2)

@logger.inject_lambda_context(correlation_id_path=API_GATEWAY_REST)
def control_plane(event, context):
    both_started.wait()
    logger.info("job created")
    both_started.wait()
    logger.info("job described")

@logger.inject_lambda_context()
def worker(event, context):
    both_started.wait()
    logger.set_correlation_id(event["Records"][0]["messageId"])
    logger.info("job planned")
    both_started.wait()
    logger.info("shard scored")

threads = [
    threading.Thread(target=control_plane, args=(
        {"requestContext": {"requestId": "api-1"}},
        LocalLambdaContext(function_name="ControlPlaneFunction", aws_request_id="cp-1"))),
    threading.Thread(target=worker, args=(
        {"Records": [{"messageId": "message-1"}]},
        LocalLambdaContext(function_name="BatchWorkerFunction", aws_request_id="bw-1"))),
]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""


def test_concurrent_invocations_of_two_functions_in_one_process_log_their_own_context() -> None:
    # Given a control-plane invocation and a worker invocation running at once in one process (the
    # local runtime), each logging while the other is in the middle of its own invocation
    lines = run_probe(CONCURRENT_PROBE, POWERTOOLS_SERVICE_NAME="svc", POWERTOOLS_LOG_LEVEL="INFO")
    # Then every line names the function that wrote it, with that invocation's correlation id
    by_message = {line["message"]: line for line in lines}
    for message in ("job created", "job described"):
        assert by_message[message]["function_name"] == "ControlPlaneFunction"
        assert by_message[message]["correlation_id"] == "api-1"
        assert by_message[message]["function_request_id"] == "cp-1"
    for message in ("job planned", "shard scored"):
        assert by_message[message]["function_name"] == "BatchWorkerFunction"
        assert by_message[message]["correlation_id"] == "message-1"
    # And each function's first invocation is its own cold start
    assert all(line["cold_start"] is True for line in lines)


def test_metrics_are_emf_blobs_and_cold_start_is_counted_once() -> None:
    # Given the same handler
    lines = run_probe(LOG_PROBE, POWERTOOLS_SERVICE_NAME="svc", POWERTOOLS_METRICS_NAMESPACE="Ns")
    blobs = [line for line in lines if "_aws" in line]
    # Then the first invocation writes a ColdStart blob (function_name and service dimensions),
    # and each invocation one blob of its own metrics, values of one name together
    cold, first, second = blobs
    assert cold["ColdStart"] == 1.0
    assert cold["function_name"] == "probe"
    assert cold["service"] == "svc"
    directive = cold["_aws"]["CloudWatchMetrics"][0]  # type: ignore[index]
    assert directive == {
        "Namespace": "Ns",
        "Dimensions": [["function_name", "service"]],
        "Metrics": [{"Name": "ColdStart", "Unit": "Count"}],
    }
    for blob in (first, second):
        assert blob["Recommendations"] == [1.0, 1.0]
        assert blob["service"] == "svc"
        assert blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]  # type: ignore[index]
        assert isinstance(blob["_aws"]["Timestamp"], int)  # type: ignore[index]


def test_metrics_can_be_disabled_and_debug_enabled() -> None:
    # Given POWERTOOLS_METRICS_DISABLED and POWERTOOLS_LOG_LEVEL=DEBUG
    lines = run_probe(LOG_PROBE, POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="DEBUG")
    # Then nothing is written as EMF, and debug lines appear
    assert not [line for line in lines if "_aws" in line]
    assert [line["message"] for line in lines].count("not at INFO") == 2


SERVING_IMPORTS = """
import json, sys, importlib.util
for name in ("get_recommendations", "get_personalized_ranking"):
    spec = importlib.util.spec_from_file_location(name, f"{sys.argv[1]}/functions/{name}/app.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
heavy = ("aws_lambda_powertools", "botocore", "boto3", "pydantic", "aws_xray_sdk",
         "personalize_core.serving.filters", "personalize_core.serving.filter_store",
         "personalize_core.serving.filter_language")
print(json.dumps(sorted(name for name in heavy if name in sys.modules)))
"""


def test_the_serving_functions_import_nothing_heavy_on_their_cold_path() -> None:
    # Given a fresh interpreter with a serving function's environment (tracing off)
    env = {k: v for k, v in os.environ.items() if k not in ("LAMBDA_TASK_ROOT",)}
    env |= {"PYTHONPATH": str(ROOT / "layers" / "core"), "MODEL_BUCKET": "models"}
    # When it imports both serving functions' handler modules
    probe = subprocess.run(
        [sys.executable, "-c", SERVING_IMPORTS, str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    # Then neither Powertools, boto3/botocore, the X-Ray SDK nor the filter language was imported
    assert json.loads(probe.stdout) == []
