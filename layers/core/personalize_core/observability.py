"""Logger, Tracer and Metrics, created once and imported everywhere (service name from the environment).

Powertools' Tracer imports the X-Ray SDK, which imports botocore: ~0.3 s of every cold start.
It is created only when tracing is on (Powertools' own rule: in Lambda, and POWERTOOLS_TRACE_DISABLED
not set; the template's Tracing parameter sets it); otherwise ``tracer`` is a stand-in whose
decorators return the function unchanged, so the handlers read the same either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

F = TypeVar("F", bound=Callable[..., Any])


def tracing_enabled() -> bool:
    """Powertools' rule: only inside Lambda (not SAM local), unless POWERTOOLS_TRACE_DISABLED."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
    )
    in_lambda = bool(os.environ.get("LAMBDA_TASK_ROOT")) and not os.environ.get("AWS_SAM_LOCAL")
    return in_lambda and not disabled


class UntracedTracer:
    """The Tracer's decorators as no-ops (tracing off: the X-Ray SDK is never imported)."""

    def capture_method(self, method: F | None = None, **_: Any) -> Any:
        return method if method is not None else (lambda function: function)

    def capture_lambda_handler(self, lambda_handler: F | None = None, **_: Any) -> Any:
        return lambda_handler if lambda_handler is not None else (lambda function: function)


def _tracer() -> Tracer:
    if tracing_enabled():
        from aws_lambda_powertools import Tracer  # noqa: PLC0415 - only when tracing is on

        return Tracer()
    # Typed as a Tracer: the handlers use only the two decorators it has.
    return cast("Tracer", UntracedTracer())


logger = Logger()
tracer = _tracer()
metrics = Metrics()
