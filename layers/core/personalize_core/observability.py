"""Logs, metrics and traces for every function: created once here and imported everywhere.

The formats are Powertools': a log line is Powertools' JSON (``level``, ``location``, ``message``,
``timestamp``, ``service``, the Lambda context's ``cold_start``, ``function_name``,
``function_request_id``..., ``correlation_id``, extra keys at the top level), a metric is an EMF
blob with the ``service`` dimension, and the settings are Powertools' environment variables
(POWERTOOLS_SERVICE_NAME, POWERTOOLS_LOG_LEVEL, POWERTOOLS_METRICS_NAMESPACE,
POWERTOOLS_METRICS_DISABLED). CloudWatch queries, metric filters and dashboards written for
Powertools read them unchanged.

Why not Powertools' own Logger and Metrics: importing anything of ``aws_lambda_powertools``
runs its package ``__init__``, which imports its Logger, Metrics and Tracer modules (~20 ms), and
its ``event_handler`` package imports every resolver it has (~22 ms more). Together that is more
than a serving function's whole cold-start budget beside numpy and the model's download (issue 7:
1.5x of those two), so the serving path writes the same formats itself, with the standard library.
The batch worker still uses Powertools' BatchProcessor, where a cold start costs nothing.

Tracing is Powertools' Tracer. It imports the X-Ray SDK and botocore (~0.3 s of cold start), so it
is created only when tracing is on (Powertools' own rule: in Lambda, and POWERTOOLS_TRACE_DISABLED
not set; the template's Tracing parameter sets it); otherwise ``tracer`` is a stand-in whose
decorators return the function unchanged, so the handlers read the same either way.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from personalize_core.settings import get_observability, trace_header
from personalize_core.text import dumps

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

F = TypeVar("F", bound=Callable[..., Any])
#: A Lambda handler: (event, context) -> result.
H = TypeVar("H", bound=Callable[[dict[str, Any], "LambdaContext"], Any])

#: Where an API Gateway REST proxy event carries its request id (Powertools' API_GATEWAY_REST).
API_GATEWAY_REST = ("requestContext", "requestId")


class LambdaContext(Protocol):
    """The parts of Lambda's context object the functions read (the runtime passes one in)."""

    @property
    def function_name(self) -> str: ...
    @property
    def memory_limit_in_mb(self) -> int: ...
    @property
    def invoked_function_arn(self) -> str: ...
    @property
    def aws_request_id(self) -> str: ...
    def get_remaining_time_in_millis(self) -> int: ...


class _ColdStart:
    """Which invocation was each function's first in this execution environment (the logs'
    ``cold_start``, the ColdStart metric): the first request id asked about per function, whichever
    decorator asks first. On Lambda a process runs one function; the local runtime runs them all."""

    def __init__(self) -> None:
        self._first_request: dict[str, str] = {}
        self._lock = threading.Lock()

    def is_cold(self, function_name: str, request_id: str) -> bool:
        with self._lock:
            return self._first_request.setdefault(function_name, request_id) == request_id


cold_start = _ColdStart()

# LogRecord's own attributes: everything else on a record came from ``extra=`` and is logged.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


#: The current invocation's keys (function_*, cold_start, correlation_id). A context variable, not a
#: shared dict: Lambda runs one invocation at a time per process, but the local runtime runs every
#: function in one process, each invocation on its own thread, and a line must name its own.
invocation: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "invocation", default=MappingProxyType({})
)


class JsonFormatter(logging.Formatter):
    """Powertools' JSON log line: fixed keys first, then the invocation's context, then extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "level": record.levelname,
            "location": f"{record.funcName}:{record.lineno}",
            "message": record.getMessage(),
            "timestamp": self._timestamp(record),
            "service": self.service,
            **invocation.get(),
        }
        trace = trace_header()
        if trace:
            entry["xray_trace_id"] = trace.split(";", 1)[0].removeprefix("Root=")
        entry.update((key, value) for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = self.formatException(record.exc_info)
            entry["exception_name"] = record.exc_info[0].__name__
        return dumps(entry, separators=None, default=str)

    @staticmethod
    def _timestamp(record: logging.LogRecord) -> str:
        # Powertools' format: "2026-11-24 10:02:03,123+0000"
        seconds = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created))
        return f"{seconds},{int(record.msecs):03d}+0000"


class Logger:
    """Structured JSON logs on stdout, one line a record, with the invocation's context."""

    def __init__(self, service: str | None = None) -> None:
        self.service = service or get_observability().service
        self._logger = logging.getLogger(self.service)
        self._logger.propagate = False  # the root logger (Lambda's own) would print it twice
        # Loggers of one service share one handler (and the invocation's keys, in ``invocation``).
        formatters = [h.formatter for h in self._logger.handlers if isinstance(h.formatter, JsonFormatter)]
        if formatters:
            self.registered_formatter = formatters[0]
        else:
            self.registered_formatter = JsonFormatter(self.service)
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(self.registered_formatter)
            self._logger.addHandler(handler)
        level = get_observability().log_level
        self._logger.setLevel(logging.getLevelNamesMapping().get(level.strip().upper(), logging.INFO))

    def debug(self, message: str, *, extra: Mapping[str, Any] | None = None) -> None:
        self._logger.debug(message, extra=extra, stacklevel=2)

    def info(self, message: str, *, extra: Mapping[str, Any] | None = None) -> None:
        self._logger.info(message, extra=extra, stacklevel=2)

    def warning(self, message: str, *, extra: Mapping[str, Any] | None = None) -> None:
        self._logger.warning(message, extra=extra, stacklevel=2)

    def error(self, message: str, *, extra: Mapping[str, Any] | None = None) -> None:
        self._logger.error(message, extra=extra, stacklevel=2)

    def exception(self, message: str, *, extra: Mapping[str, Any] | None = None) -> None:
        self._logger.exception(message, extra=extra, stacklevel=2)

    def inject_lambda_context(self, *, correlation_id_path: Sequence[str] = ()) -> Callable[[H], H]:
        """A Lambda handler's decorator: its invocation's context (and correlation id) on every line."""
        return functools.partial(self._with_context, correlation_id_path=correlation_id_path)

    def _with_context(self, handler: H, correlation_id_path: Sequence[str]) -> H:
        @functools.wraps(handler)
        def with_context(event: dict[str, Any], context: LambdaContext) -> Any:
            keys: dict[str, Any] = {
                "cold_start": cold_start.is_cold(context.function_name, context.aws_request_id),
                "function_name": context.function_name,
                "function_memory_size": context.memory_limit_in_mb,
                "function_arn": context.invoked_function_arn,
                "function_request_id": context.aws_request_id,
            }
            if correlation_id_path:
                keys["correlation_id"] = _lookup(event, correlation_id_path)
            token = invocation.set(keys)
            try:
                return handler(event, context)
            finally:
                invocation.reset(token)

        return cast(H, with_context)

    def set_correlation_id(self, value: str | None) -> None:
        """The correlation id of the lines that follow in this invocation (e.g. an SQS message's)."""
        invocation.set({**invocation.get(), "correlation_id": value})


def _lookup(event: Mapping[str, Any], path: Sequence[str]) -> Any:
    found: Any = event
    for key in path:
        found = found.get(key) if isinstance(found, Mapping) else None
    return found


class Metrics:
    """CloudWatch metrics as EMF lines on stdout (Lambda's log agent turns them into metrics),
    one line an invocation, under POWERTOOLS_METRICS_NAMESPACE with the ``service`` dimension."""

    #: EMF's limit of metrics in one blob.
    MAX_METRICS = 100

    def __init__(self, namespace: str | None = None, service: str | None = None) -> None:
        self.namespace = namespace or get_observability().metrics_namespace
        self.service = service or get_observability().service
        self._values: dict[str, tuple[str, list[float]]] = {}

    def add_metric(self, name: str, unit: str, value: float) -> None:
        if name not in self._values and len(self._values) >= self.MAX_METRICS:
            self.flush()
        self._values.setdefault(name, (unit, []))[1].append(float(value))

    def flush(self) -> None:
        values, self._values = self._values, {}
        if values:
            self._emit({"service": self.service}, values)

    def log_metrics(self, *, capture_cold_start_metric: bool = False) -> Callable[[H], H]:
        """A Lambda handler's decorator: its metrics are written when it returns (or raises), and
        with ``capture_cold_start_metric`` a ColdStart count on the first invocation."""
        return functools.partial(self._with_metrics, capture_cold_start_metric=capture_cold_start_metric)

    def _with_metrics(self, handler: H, capture_cold_start_metric: bool) -> H:
        @functools.wraps(handler)
        def with_metrics(event: dict[str, Any], context: LambdaContext) -> Any:
            if capture_cold_start_metric and cold_start.is_cold(
                context.function_name, context.aws_request_id
            ):
                self._emit(
                    {"function_name": context.function_name, "service": self.service},
                    {"ColdStart": ("Count", [1.0])},
                )
            try:
                return handler(event, context)
            finally:
                self.flush()

        return cast(H, with_metrics)

    def _emit(self, dimensions: dict[str, str], values: dict[str, tuple[str, list[float]]]) -> None:
        if get_observability().metrics_disabled:
            return
        blob = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [list(dimensions)],
                        "Metrics": [{"Name": name, "Unit": unit} for name, (unit, _) in values.items()],
                    }
                ],
            },
            **dimensions,
            **{name: numbers[0] if len(numbers) == 1 else numbers for name, (_, numbers) in values.items()},
        }
        sys.stdout.write(json.dumps(blob, separators=(",", ":")) + "\n")


class UntracedTracer:
    """The Tracer's decorators as no-ops (tracing off: the X-Ray SDK is never imported)."""

    def capture_method(self, method: F | None = None, **_: Any) -> Any:
        return method if method is not None else (lambda function: function)

    def capture_lambda_handler(self, lambda_handler: F | None = None, **_: Any) -> Any:
        return lambda_handler if lambda_handler is not None else (lambda function: function)


def _tracer() -> Tracer:
    if get_observability().tracing:
        from aws_lambda_powertools import Tracer  # noqa: PLC0415 - only when tracing is on

        return Tracer()
    # Typed as a Tracer: the handlers use only the two decorators it has.
    return cast("Tracer", UntracedTracer())


logger = Logger()
tracer = _tracer()
metrics = Metrics()
