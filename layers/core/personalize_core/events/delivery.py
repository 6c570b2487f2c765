"""Every accepted event to Amazon Data Firehose, which batches them into S3 (``events/`` of the
model bucket): the well-kept way to turn a stream of small writes into files.

Each event is one CSV line (no header: Firehose concatenates records into objects) of
``EVENT_COLUMNS``, Personalize's Interactions columns first. ``read_event_rows`` reads them back
(training). Anonymous events carry the sessionId as USER_ID, as Personalize records them; SESSION_ID
lets training give a linked session's events to its user.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Callable, Iterator, Sequence
from functools import cache, cached_property
from typing import NamedTuple

from personalize_core.aws.clients import create_firehose_client
from personalize_core.aws.json_client import AwsError, AwsJsonClient
from personalize_core.events.requests import Event
from personalize_core.settings import get_settings

#: The columns of a Firehose line, in order (the header the files do not carry).
EVENT_COLUMNS = (
    "USER_ID",
    "ITEM_ID",
    "TIMESTAMP",
    "EVENT_TYPE",
    "EVENT_VALUE",
    "IMPRESSION",
    "RECOMMENDATION_ID",
    "EVENT_ATTRIBUTION_SOURCE",
    "SESSION_ID",
    "EVENT_ID",
    "PROPERTIES",
    "DATASET_GROUP_ARN",
    "RECEIVED_AT",
)
#: Firehose's own limit on one PutRecordBatch.
BATCH_MAX = 500


class EventRow(NamedTuple):
    """One line of the files, read back."""

    user_id: str
    item_id: str
    timestamp: int
    event_type: str
    event_value: str
    impression: str
    recommendation_id: str
    attribution_source: str
    session_id: str
    event_id: str
    properties: str
    dataset_group_arn: str
    received_at: float


def event_line(
    event: Event, user_id: str | None, session_id: str, group_arn: str, received_at: float
) -> bytes:
    """The CSV line of one accepted event (``impression`` already resolved from its recommendation)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(
        [
            user_id or session_id,
            event.item_id or "",
            int(event.sent_at),
            event.event_type,
            "" if event.event_value is None else repr(event.event_value),
            "|".join(event.impression),
            event.recommendation_id or "",
            event.attribution_source or "",
            session_id,
            event.event_id,
            event.properties or "",
            group_arn,
            repr(received_at),
        ]
    )
    return out.getvalue().encode("utf-8")


def read_event_rows(data: bytes) -> Iterator[EventRow]:
    """The rows of one Firehose object; lines that are not ours (wrong width) are skipped."""
    reader = csv.reader(io.StringIO(data.decode("utf-8", "replace"), newline=""))
    for row in reader:
        if len(row) != len(EVENT_COLUMNS):
            continue
        try:
            yield EventRow(
                row[0],
                row[1],
                int(row[2]),
                row[3],
                row[4],
                row[5],
                row[6],
                row[7],
                row[8],
                row[9],
                row[10],
                row[11],
                float(row[12]),
            )
        except ValueError:
            continue


class DeliveryFailed(Exception):
    """Firehose did not take every record, after retries."""

    def __init__(self, message: str, throttled: bool) -> None:
        super().__init__(message)
        self.throttled = throttled


class EventDelivery:
    """PutRecordBatch into one delivery stream; records Firehose refused are sent again."""

    def __init__(
        self, stream: str, client_factory: Callable[[], AwsJsonClient] = create_firehose_client
    ) -> None:
        self.stream = stream
        self._client_factory = client_factory

    @cached_property  # made on first use: no I/O when the module or the object is made
    def client(self) -> AwsJsonClient:
        return self._client_factory()

    def send(self, lines: Sequence[bytes]) -> None:
        pending = list(lines)
        attempts = self.client.max_attempts
        for _ in range(attempts):
            if not pending:
                return
            try:
                answer = self.client.call(
                    "PutRecordBatch",
                    {
                        "DeliveryStreamName": self.stream,
                        "Records": [{"Data": base64.b64encode(line).decode()} for line in pending],
                    },
                )
            except AwsError as error:
                raise DeliveryFailed(f"Firehose refused the events: {error}", error.throttled) from error
            if not answer.get("FailedPutCount"):
                return
            results = answer.get("RequestResponses") or []
            pending = [line for line, r in zip(pending, results, strict=False) if r.get("ErrorCode")]
        if pending:
            raise DeliveryFailed(f"Firehose refused {len(pending)} events after {attempts} attempts", True)


@cache
def get_delivery() -> EventDelivery | None:
    stream = get_settings().events_delivery_stream
    return EventDelivery(stream) if stream else None
