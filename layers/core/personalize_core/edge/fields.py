"""Typed access to a JSON object's fields, checked against botocore's limits.

Every operation (runtime, control plane, batch lines) validates its input through ``Fields``, so
a violation always reads the same way: an InvalidInputException naming the field exactly as the
request spells it (``promotions[0].name is required``). Unknown fields are refused rather than
ignored, so a request never silently loses a part of its meaning.
"""

from __future__ import annotations

import re
from typing import Any

from personalize_core.arns import ARN_MAX, ARN_PATTERN
from personalize_core.errors import InvalidInputException

ID_MAX = 256


def type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


class Fields:
    """Typed access to a JSON object's fields, with Personalize-style messages."""

    def __init__(self, body: Any, where: str, allowed: frozenset[str]) -> None:
        if not isinstance(body, dict):
            raise InvalidInputException(f"{where or 'The request body'} must be a JSON object")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise InvalidInputException(f"Unknown field {where}{unknown[0][:60]}")
        self.body = body
        self.where = where

    def name(self, key: str) -> str:
        return f"{self.where}{key}"

    def string(
        self,
        key: str,
        *,
        max_len: int,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
        min_len: int = 0,
    ) -> str | None:
        value = self.body.get(key)
        if value is None:
            if required:
                raise InvalidInputException(f"{self.name(key)} is required")
            return None
        if not isinstance(value, str):
            raise InvalidInputException(f"{self.name(key)} must be a string, not a {type_name(value)}")
        if len(value) > max_len:
            raise InvalidInputException(f"{self.name(key)} must be at most {max_len} characters")
        if len(value) < min_len:
            raise InvalidInputException(f"{self.name(key)} must be at least {min_len} characters")
        if pattern is not None and pattern.fullmatch(value) is None:
            raise InvalidInputException(f"{self.name(key)} {value!r} does not match {pattern.pattern}")
        return value

    def identifier(self, key: str, *, required: bool = False) -> str | None:
        return self.string(key, max_len=ID_MAX, required=required, min_len=1)

    def arn(self, key: str, *, required: bool = False) -> str | None:
        return self.string(key, max_len=ARN_MAX, required=required, pattern=ARN_PATTERN)

    def integer(self, key: str, *, minimum: int, maximum: int) -> int | None:
        value = self.body.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputException(f"{self.name(key)} must be an integer, not a {type_name(value)}")
        if not minimum <= value <= maximum:
            raise InvalidInputException(f"{self.name(key)} must be between {minimum} and {maximum}")
        return value

    def string_map(
        self, key: str, *, max_entries: int, key_pattern: re.Pattern[str], key_max: int, value_max: int
    ) -> dict[str, str]:
        value = self.body.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise InvalidInputException(f"{self.name(key)} must be an object, not a {type_name(value)}")
        if len(value) > max_entries:
            raise InvalidInputException(f"{self.name(key)} may have at most {max_entries} entries")
        for k, v in value.items():
            if len(k) > key_max or key_pattern.fullmatch(k) is None:
                raise InvalidInputException(
                    f"{self.name(key)} key {k[:60]!r} must be 1-{key_max} characters "
                    f"matching {key_pattern.pattern}"
                )
            if not isinstance(v, str):
                raise InvalidInputException(f"{self.name(key)}.{k} must be a string, not a {type_name(v)}")
            if len(v) > value_max:
                raise InvalidInputException(f"{self.name(key)}.{k} must be at most {value_max} characters")
        return dict(value)

    def string_list(
        self, key: str, *, max_items: int, item_max: int, required: bool = False
    ) -> list[str] | None:
        value = self.body.get(key)
        if value is None:
            if required:
                raise InvalidInputException(f"{self.name(key)} is required")
            return None
        if not isinstance(value, list):
            raise InvalidInputException(f"{self.name(key)} must be a list, not a {type_name(value)}")
        if len(value) > max_items:
            raise InvalidInputException(f"{self.name(key)} may have at most {max_items} entries")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise InvalidInputException(
                    f"{self.name(key)}[{i}] must be a string, not a {type_name(item)}"
                )
            if not 0 < len(item) <= item_max:
                raise InvalidInputException(f"{self.name(key)}[{i}] must be 1-{item_max} characters")
        return list(value)

    def required_string(
        self, key: str, *, max_len: int, min_len: int = 1, pattern: re.Pattern[str] | None = None
    ) -> str:
        """A string that must be present (an InvalidInputException naming it otherwise)."""
        value = self.string(key, max_len=max_len, min_len=min_len, pattern=pattern, required=True)
        assert value is not None
        return value

    def required_arn(self, key: str) -> str:
        value = self.arn(key, required=True)
        assert value is not None
        return value
