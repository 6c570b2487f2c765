"""PutEvents, PutItems and PutUsers, validated against every limit of botocore's
``personalize-events`` model. A violation is an InvalidInputException naming the field as the
request spells it (``eventList[2].properties is not a JSON object``); nothing is stored from a
refused call, since the whole request is checked before anything is written.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from typing import Any, NamedTuple

from personalize_core.arns import ARN_MAX, ARN_PATTERN
from personalize_core.edge.fields import ID_MAX, Fields, type_name
from personalize_core.errors import InvalidInputException

EVENTS_MAX = 10
RECORDS_MAX = 10
EVENT_PROPERTIES_MAX = 1024
ITEM_PROPERTIES_MAX = 32000
USER_PROPERTIES_MAX = 24000
RECOMMENDATION_ID_MAX = 40
IMPRESSION_MAX = 25
ATTRIBUTION_SOURCE_MAX = 1024
ATTRIBUTION_SOURCE = re.compile(r"[\x20-\x7E]*[\x21-\x7E]+[\x20-\x7E]*")
#: Keys ``properties`` may not use (botocore's documentation of Event.properties; any case).
RESERVED_PROPERTIES = frozenset(
    {"userid", "sessionid", "eventtype", "timestamp", "recommendationid", "impression"}
)
EVENT_FIELDS = frozenset(
    {
        "eventId",
        "eventType",
        "eventValue",
        "itemId",
        "properties",
        "sentAt",
        "recommendationId",
        "impression",
        "metricAttribution",
    }
)


class Event(NamedTuple):
    #: The caller's eventId, or one generated for the call (Personalize generates one too).
    event_id: str
    event_type: str
    sent_at: float
    event_value: float | None = None
    item_id: str | None = None
    #: The JSON object text as given (its keys are the Interactions schema's extra fields).
    properties: str | None = None
    recommendation_id: str | None = None
    impression: tuple[str, ...] = ()
    attribution_source: str | None = None


class PutEventsRequest(NamedTuple):
    tracking_id: str
    session_id: str
    user_id: str | None
    events: tuple[Event, ...]

    @classmethod
    def parse(cls, body: Any) -> PutEventsRequest:
        fields = Fields(body, "", frozenset({"trackingId", "userId", "sessionId", "eventList"}))
        tracking_id = fields.required_string("trackingId", max_len=ID_MAX)
        user_id = fields.identifier("userId")
        session_id = fields.required_string("sessionId", max_len=ID_MAX)
        raw = _records(fields, "eventList", EVENTS_MAX)
        events = tuple(_event(Fields(e, f"eventList[{i}].", EVENT_FIELDS)) for i, e in enumerate(raw))
        return cls(tracking_id, session_id, user_id, events)


def _records(fields: Fields, key: str, most: int) -> list[Any]:
    value = fields.body.get(key)
    if value is None:
        raise InvalidInputException(f"{key} is required")
    if not isinstance(value, list):
        raise InvalidInputException(f"{key} must be a list, not a {type_name(value)}")
    if not 1 <= len(value) <= most:
        raise InvalidInputException(f"{key} must have 1 to {most} entries, not {len(value)}")
    return value


def _number(fields: Fields, key: str, *, required: bool = False) -> float | None:
    value = fields.body.get(key)
    if value is None:
        if required:
            raise InvalidInputException(f"{fields.name(key)} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputException(f"{fields.name(key)} must be a number, not a {type_name(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputException(f"{fields.name(key)} must be a finite number")
    return number


def properties_object(fields: Fields, key: str, most: int) -> dict[str, str] | None:
    """A ``properties`` JSON string: an object of scalar values (as strings), at most ``most`` characters."""
    text = fields.string(key, max_len=most, min_len=1)
    if text is None:
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidInputException(f"{fields.name(key)} is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidInputException(f"{fields.name(key)} must be a JSON object, not a {type_name(parsed)}")
    values: dict[str, str] = {}
    for name, value in parsed.items():
        if isinstance(value, dict | list):
            raise InvalidInputException(
                f"{fields.name(key)}.{name[:60]} must be a string, number or boolean, "
                f"not a {type_name(value)}"
            )
        values[name] = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return values


def _event(fields: Fields) -> Event:
    event_id = fields.identifier("eventId") or uuid.uuid4().hex
    event_type = fields.required_string("eventType", max_len=ID_MAX)
    sent_at = _number(fields, "sentAt", required=True)
    assert sent_at is not None
    if sent_at < 0:
        raise InvalidInputException(f"{fields.name('sentAt')} must be a Unix time in seconds, not negative")
    properties = properties_object(fields, "properties", EVENT_PROPERTIES_MAX)
    if properties is not None:
        reserved = sorted(k for k in properties if k.lower() in RESERVED_PROPERTIES)
        if reserved:
            raise InvalidInputException(
                f"{fields.name('properties')} may not use the reserved key {reserved[0]!r} "
                "(userId, sessionId, eventType, timestamp, recommendationId and impression are fields "
                "of the event itself)"
            )
    impression = fields.string_list("impression", max_items=IMPRESSION_MAX, item_max=ID_MAX)
    if impression is not None and not impression:
        raise InvalidInputException(f"{fields.name('impression')} must have 1 to {IMPRESSION_MAX} item ids")
    return Event(
        event_id=event_id,
        event_type=event_type,
        sent_at=sent_at,
        event_value=_number(fields, "eventValue"),
        item_id=fields.identifier("itemId"),
        properties=fields.body["properties"] if properties is not None else None,
        recommendation_id=fields.string("recommendationId", max_len=RECOMMENDATION_ID_MAX, min_len=1),
        impression=tuple(impression or ()),
        attribution_source=_attribution(fields),
    )


def _attribution(fields: Fields) -> str | None:
    value = fields.body.get("metricAttribution")
    if value is None:
        return None
    attribution = Fields(value, fields.name("metricAttribution."), frozenset({"eventAttributionSource"}))
    return attribution.required_string(
        "eventAttributionSource", max_len=ATTRIBUTION_SOURCE_MAX, pattern=ATTRIBUTION_SOURCE
    )


class MetadataRecord(NamedTuple):
    """One item of PutItems or one user of PutUsers."""

    record_id: str
    #: Property (as given, camelCase) -> value; None when the record has no ``properties``.
    properties: dict[str, str] | None


class PutMetadataRequest(NamedTuple):
    """PutItems (``items`` of ``itemId``) or PutUsers (``users`` of ``userId``)."""

    dataset_arn: str
    records: tuple[MetadataRecord, ...]

    @classmethod
    def parse(cls, body: Any, users: bool) -> PutMetadataRequest:
        key, id_key, most = (
            ("users", "userId", USER_PROPERTIES_MAX) if users else ("items", "itemId", ITEM_PROPERTIES_MAX)
        )
        fields = Fields(body, "", frozenset({"datasetArn", key}))
        dataset_arn = fields.string("datasetArn", max_len=ARN_MAX, pattern=ARN_PATTERN, required=True)
        assert dataset_arn is not None
        records = []
        for i, raw in enumerate(_records(fields, key, RECORDS_MAX)):
            record = Fields(raw, f"{key}[{i}].", frozenset({id_key, "properties"}))
            record_id = record.required_string(id_key, max_len=ID_MAX)
            records.append(MetadataRecord(record_id, properties_object(record, "properties", most)))
        return cls(dataset_arn, tuple(records))


def schema_field(property_name: str) -> str:
    """The schema field a camelCase property names: ``numberOfRatings`` -> ``NUMBER_OF_RATINGS``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", property_name).upper()
