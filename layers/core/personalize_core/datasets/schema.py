"""Personalize's dataset schemas (Avro JSON records), checked as CreateSchema and CreateDataset do,
and the checks an import applies to each CSV row.

    {"type": "record", "name": "Interactions", "namespace": "com.amazonaws.personalize.schema",
     "fields": [{"name": "USER_ID", "type": "string"},
                {"name": "ITEM_ID", "type": "string"},
                {"name": "EVENT_TYPE", "type": "string"},
                {"name": "TIMESTAMP", "type": "long"}],
     "version": "1.0"}

A field's type is one of string, int, long, float, double, boolean, or a union with "null" (an
optional field: an empty CSV value is allowed). String fields may be ``"categorical": true``
(``a|b`` is two values) or ``"textual": true``.
"""

from __future__ import annotations

import enum
import json
import math
import re
from typing import Any, NamedTuple

from personalize_core.errors import InvalidInputException

SCHEMA_MAX = 20000
FIELDS_MAX = 1000
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FIELD_NAME_MAX = 150
ID_MAX = 256
CATEGORICAL_VALUE_MAX = 1000
TEXT_MAX = 20000
PRIMITIVES = frozenset({"string", "int", "long", "float", "double", "boolean"})


class DatasetType(enum.StrEnum):
    INTERACTIONS = "INTERACTIONS"
    ITEMS = "ITEMS"
    USERS = "USERS"

    @property
    def id_field(self) -> str:
        return "USER_ID" if self is DatasetType.USERS else "ITEM_ID"


#: Fields a dataset type requires, and the types each may have.
REQUIRED: dict[DatasetType, dict[str, frozenset[str]]] = {
    DatasetType.INTERACTIONS: {
        "USER_ID": frozenset({"string"}),
        "ITEM_ID": frozenset({"string"}),
        "TIMESTAMP": frozenset({"long", "int"}),
    },
    DatasetType.ITEMS: {"ITEM_ID": frozenset({"string"})},
    DatasetType.USERS: {"USER_ID": frozenset({"string"})},
}
#: Optional fields of a fixed meaning, and the types each may have.
RESERVED: dict[str, frozenset[str]] = {
    "EVENT_TYPE": frozenset({"string"}),
    "EVENT_VALUE": frozenset({"float", "double", "int", "long"}),
    "IMPRESSION": frozenset({"string"}),
    "RECOMMENDATION_ID": frozenset({"string"}),
}


class Field(NamedTuple):
    name: str
    type: str  # one of PRIMITIVES
    nullable: bool
    categorical: bool
    textual: bool


class Schema(NamedTuple):
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def numeric_columns(self) -> dict[str, bool]:
        """Column name (upper case) -> numeric, as filters see the dataset."""
        return {f.name.upper(): f.type in ("int", "long", "float", "double") for f in self.fields}


def _field(raw: Any, index: int) -> Field:
    where = f"schema fields[{index}]"
    if not isinstance(raw, dict):
        raise InvalidInputException(f"{where} must be an object with a name and a type")
    name = raw.get("name")
    if not isinstance(name, str) or len(name) > FIELD_NAME_MAX or FIELD_NAME.fullmatch(name) is None:
        raise InvalidInputException(
            f"{where}.name must be 1-{FIELD_NAME_MAX} characters of [A-Za-z0-9_], not starting with a digit"
        )
    kind = raw.get("type")
    nullable = False
    if isinstance(kind, list):
        others = [t for t in kind if t != "null"]
        if len(kind) != 2 or len(others) != 1:
            raise InvalidInputException(f'{where} ({name}): a union type must be ["null", <type>]')
        nullable, kind = True, others[0]
    if not isinstance(kind, str) or kind not in PRIMITIVES:
        raise InvalidInputException(
            f"{where} ({name}): type {json.dumps(kind)[:60]} is not one of {', '.join(sorted(PRIMITIVES))}"
        )
    categorical, textual = raw.get("categorical", False), raw.get("textual", False)
    if not isinstance(categorical, bool) or not isinstance(textual, bool):
        raise InvalidInputException(f"{where} ({name}): categorical and textual must be booleans")
    if (categorical or textual) and kind != "string":
        raise InvalidInputException(f"{where} ({name}): only string fields can be categorical or textual")
    if categorical and textual:
        raise InvalidInputException(f"{where} ({name}): a field is categorical or textual, not both")
    return Field(name, kind, nullable, categorical, textual)


def parse_schema(text: str) -> Schema:
    """An Avro record schema as Personalize accepts it; InvalidInputException naming what is wrong."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidInputException(f"schema is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise InvalidInputException(
            'schema must be an Avro record: {"type": "record", "name": ..., "fields": [...]}'
        )
    if not isinstance(raw.get("name"), str) or not raw["name"]:
        raise InvalidInputException("schema must have a name")
    fields = raw.get("fields")
    if not isinstance(fields, list) or not fields:
        raise InvalidInputException("schema fields must be a non-empty list")
    if len(fields) > FIELDS_MAX:
        raise InvalidInputException(f"schema may have at most {FIELDS_MAX} fields")
    parsed = tuple(_field(f, i) for i, f in enumerate(fields))
    seen: set[str] = set()
    for f in parsed:
        if f.name.upper() in seen:
            raise InvalidInputException(
                f"schema field {f.name} appears twice (names are compared without case)"
            )
        seen.add(f.name.upper())
    return Schema(parsed)


def check_dataset_type(schema: Schema, dataset_type: DatasetType, schema_arn: str) -> None:
    """The schema fits ``dataset_type`` (CreateDataset): its required fields, with their types."""
    for name, types in REQUIRED[dataset_type].items():
        found = schema.field(name)
        if found is None or found.type not in types or found.nullable:
            raise InvalidInputException(
                f"Schema {schema_arn} does not fit a {dataset_type.value} dataset: it needs a non-null "
                f"{name} field of type {' or '.join(sorted(types))}"
            )
    for f in schema.fields:
        allowed = RESERVED.get(f.name)
        if allowed is not None and dataset_type is DatasetType.INTERACTIONS and f.type not in allowed:
            raise InvalidInputException(
                f"Schema {schema_arn}: {f.name} must be of type {' or '.join(sorted(allowed))}, not {f.type}"
            )
    if dataset_type is not DatasetType.INTERACTIONS and len(schema.fields) < 2:
        raise InvalidInputException(
            f"Schema {schema_arn} does not fit a {dataset_type.value} dataset: it needs at least one "
            "metadata field besides its id"
        )


# -- rows --------------------------------------------------------------------------------------


class RowError(Exception):
    """A value that does not fit its field; the import names the row and the column."""


def check_value(field: Field, value: str) -> str:
    """The value as stored (stripped of nothing; numbers checked), or RowError saying why not."""
    if value == "":
        if field.nullable:
            return value
        raise RowError("a value is required (the field is not nullable)")
    match field.type:
        case "int" | "long":
            try:
                int(value)
            except ValueError:
                raise RowError(f"{value[:40]!r} is not an integer ({field.type})") from None
        case "float" | "double":
            try:
                number = float(value)
            except ValueError:
                raise RowError(f"{value[:40]!r} is not a number ({field.type})") from None
            if not math.isfinite(number):
                raise RowError(f"{value[:40]!r} is not a finite number")
        case "boolean":
            if value.lower() not in ("true", "false"):
                raise RowError(f"{value[:40]!r} is not a boolean (true or false)")
        case _:
            if field.name in ("USER_ID", "ITEM_ID") and len(value) > ID_MAX:
                raise RowError(f"an id may have at most {ID_MAX} characters")
            if field.categorical and any(len(v) > CATEGORICAL_VALUE_MAX for v in value.split("|")):
                raise RowError(f"a categorical value may have at most {CATEGORICAL_VALUE_MAX} characters")
            if len(value) > TEXT_MAX:
                raise RowError(f"a value may have at most {TEXT_MAX} characters")
    return value
