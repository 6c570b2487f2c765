"""Personalize's control plane (JSON 1.1 at ``POST /``): one dispatcher, operations registered by name.

A client sends ``X-Amz-Target: AmazonPersonalize.<Operation>`` and a JSON object; the operation
gets the object and returns the response object. Feature modules register their operations:

    plane = ControlPlane()

    @plane.operation("DescribeBatchInferenceJob")
    def describe(body: dict[str, Any]) -> dict[str, Any]: ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import InvalidInputException, UnknownOperationException

TARGET_PREFIX = "AmazonPersonalize."
Operation = Callable[[dict[str, Any]], dict[str, Any]]


class ControlPlane:
    def __init__(self) -> None:
        self.operations: dict[str, Operation] = {}

    def operation(self, name: str) -> Callable[[Operation], Operation]:
        def register(function: Operation) -> Operation:
            if name in self.operations:
                raise ValueError(f"operation {name} is registered twice")
            self.operations[name] = function
            return function

        return register

    def dispatch(self, target: str | None, body: Any) -> dict[str, Any]:
        if not target or not target.startswith(TARGET_PREFIX):
            raise UnknownOperationException(f"X-Amz-Target must be {TARGET_PREFIX}<Operation>")
        name = target[len(TARGET_PREFIX) :]
        operation = self.operations.get(name)
        if operation is None:
            raise UnknownOperationException(f"Operation {name[:100]} is not supported")
        if not isinstance(body, dict):
            raise InvalidInputException("The request body must be a JSON object")
        return operation(body)
