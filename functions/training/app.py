"""Training function (SQS): dataset imports, solution versions and recommenders, one message at a time.

A message whose work fails in a way a retry may fix is reported in ``batchItemFailures`` and comes
back after the visibility timeout; the worker fails the record on the last receive.
"""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from personalize_core.observability import LambdaContext, logger, metrics, tracer
from personalize_core.training.worker import get_training_worker

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    logger.set_correlation_id(record.message_id)  # Powertools' SQS correlation id: the message's
    get_training_worker().handle(record.body, int(record.attributes.approximate_receive_count))


@logger.inject_lambda_context()
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    response = process_partial_response(event=event, record_handler=record_handler, processor=processor)
    metrics.add_metric(
        name="TrainingMessagesFailed", unit="Count", value=len(response.get("batchItemFailures", []))
    )
    return dict(response)
