"""Batch inference worker (SQS): plans jobs and scores their shards, one message at a time.

Each message is processed on its own: the ones that fail are reported in ``batchItemFailures``
(ReportBatchItemFailures), so only they come back after the visibility timeout, and the rest of
the batch is deleted.
"""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from personalize_core.batch import get_worker
from personalize_core.observability import LambdaContext, logger, metrics, tracer

# One failed record must not fail the invocation: the poller (Lambda or ours) redelivers just it.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    logger.set_correlation_id(record.message_id)  # Powertools' SQS correlation id: the message's
    get_worker().handle(record.body, int(record.attributes.approximate_receive_count))


@logger.inject_lambda_context()
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    # The record handler takes no lambda_context, so Powertools is not handed the context.
    response = process_partial_response(event=event, record_handler=record_handler, processor=processor)
    failed = len(response.get("batchItemFailures", []))
    metrics.add_metric(name="BatchMessagesFailed", unit="Count", value=failed)
    metrics.add_metric(name="BatchMessages", unit="Count", value=len(event.get("Records", [])))
    return dict(response)
