"""Personalize's control plane (JSON 1.1 at ``POST /``): one dispatcher, operations registered by name.

A client sends ``X-Amz-Target: AmazonPersonalize.<Operation>`` and a JSON object; the operation
gets the object and returns the response object. Each resource module registers its operations
with the data access they use, resolved per call (so a warm function builds its clients once,
on first use):

    register_all(plane, {"DescribeFilter": describe_filter, ...}, get_model_bucket)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from personalize_core.errors import ArtifactError, InvalidInputException, UnknownOperationException

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

    def dispatch(
        self, target: str | None, body: Any, authorize: Callable[[str, dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Run the operation ``target`` names, once ``authorize(operation, body)`` (when given) has
        returned: it raises to refuse (control/permissions.py says what each operation needs)."""
        if not target or not target.startswith(TARGET_PREFIX):
            raise UnknownOperationException(f"X-Amz-Target must be {TARGET_PREFIX}<Operation>")
        name = target[len(TARGET_PREFIX) :]
        operation = self.operations.get(name)
        if operation is None:
            raise UnknownOperationException(f"Operation {name[:100]} is not supported")
        if not isinstance(body, dict):
            raise InvalidInputException("The request body must be a JSON object")
        if authorize is not None:
            authorize(name, body)
        try:
            return operation(body)
        except ArtifactError as exc:
            # One unreadable object (a garbled manifest or record) is that request's problem, said
            # plainly, never a 500: Describe and List handle their own (they report or skip it).
            raise InvalidInputException(f"A stored object this request needs cannot be used: {exc}") from None


def register_all[T](
    plane: ControlPlane,
    operations: Mapping[str, Callable[[T, dict[str, Any]], dict[str, Any]]],
    resource: Callable[[], T],
) -> None:
    """Register operations that take a resource (a bucket, a service) and the request body."""
    for name, function in operations.items():

        def operation(
            body: dict[str, Any], function: Callable[[T, dict[str, Any]], dict[str, Any]] = function
        ) -> dict[str, Any]:
            return function(resource(), body)

        plane.operation(name)(operation)
