"""Drive an SQS-triggered Lambda handler locally, the way Lambda's SQS event source mapping does.

    poller = SqsPoller(queue_url, handler, "BatchWorkerFunction", batch_size=10)
    poller.start()      # poll in a background thread, until poller.stop()
    poller.drain()      # or: run in this thread until the queue is empty (tests)

Each batch of received messages becomes a genuine SQS event (``Records`` with messageId,
receiptHandle, body, attributes incl. ApproximateReceiveCount, messageAttributes, md5OfBody,
eventSource, eventSourceARN, awsRegion) and goes to ``handler(event, context)``:
- a result ``{"batchItemFailures": [{"itemIdentifier": id}, ...]}`` (ReportBatchItemFailures):
  every other message is deleted, the listed ones are left on the queue;
- a handler that raises: the whole batch is left on the queue (a failed invocation).
Messages left on the queue come back when their visibility timeout ends, and SQS (here moto)
moves them to the dead-letter queue after ``maxReceiveCount`` receives, as in AWS. Nothing is
retried by the poller itself. ``failure_visibility_timeout`` optionally shortens the wait before
a failed message comes back (handy with a queue whose timeout is long); it is off by default.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .lambda_context import LocalLambdaContext

Handler = Callable[[dict[str, Any], Any], Any]
log = logging.getLogger(__name__)


def _message_attributes(raw: dict[str, Any]) -> dict[str, Any]:
    """SQS's MessageAttributes as Lambda presents them (camelCase, with the list fields)."""
    return {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value.get("DataType"),
        }
        for name, value in raw.items()
    }


class SqsPoller:
    def __init__(
        self,
        queue_url: str,
        handler: Handler,
        function_name: str,
        batch_size: int = 10,
        *,
        sqs_client: Any = None,
        wait_time_seconds: int = 1,
        function_timeout_seconds: float = 900.0,
        failure_visibility_timeout: int | None = None,
        region: str | None = None,
    ) -> None:
        if not 1 <= batch_size <= 10:
            raise ValueError("batch_size must be 1-10 (SQS receives at most 10 messages at once)")
        self.queue_url = queue_url
        self.handler = handler
        self.function_name = function_name
        self.batch_size = batch_size
        self.wait_time_seconds = wait_time_seconds
        self.function_timeout_seconds = function_timeout_seconds
        self.failure_visibility_timeout = failure_visibility_timeout
        self._sqs = sqs_client
        self._region = region
        self._queue_arn: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Invocations made and messages whose processing failed (for logs and tests).
        self.invocations = 0
        self.failures = 0

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            import boto3  # noqa: PLC0415 - the client is built when first needed, not at import

            self._sqs = boto3.client("sqs", region_name=self._region)
        return self._sqs

    @property
    def queue_arn(self) -> str:
        if self._queue_arn is None:
            attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
            self._queue_arn = str(attributes["Attributes"]["QueueArn"])
        return self._queue_arn

    def _event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        region = self.queue_arn.split(":")[3]
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": dict(m.get("Attributes", {})),
                    "messageAttributes": _message_attributes(m.get("MessageAttributes", {})),
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": region,
                }
                for m in messages
            ]
        }

    def poll_once(self, wait_time_seconds: int | None = None) -> int:
        """Receive one batch and invoke the handler with it; returns how many messages it held."""
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_time_seconds if wait_time_seconds is None else wait_time_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        if not messages:
            return 0
        event = self._event(messages)
        context = LocalLambdaContext(
            function_name=self.function_name, timeout_seconds=self.function_timeout_seconds
        )
        self.invocations += 1
        try:
            result = self.handler(event, context)
        except Exception:
            log.exception("%s failed; its %d message(s) stay on the queue", self.function_name, len(messages))
            failed = {m["MessageId"] for m in messages}
        else:
            reported = (result or {}).get("batchItemFailures", []) if isinstance(result, dict) else []
            failed = {str(f["itemIdentifier"]) for f in reported}
        self.failures += len(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done[start : start + 10])
                ],
            )
        if failed and self.failure_visibility_timeout is not None:
            for m in messages:
                if m["MessageId"] in failed:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queue_url,
                        ReceiptHandle=m["ReceiptHandle"],
                        VisibilityTimeout=self.failure_visibility_timeout,
                    )
        return len(messages)

    def pending(self) -> int:
        """Messages on the queue, visible or in flight (SQS's approximate counts)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def drain(self, timeout_seconds: float = 60.0) -> int:
        """Poll in this thread until the queue is empty (messages in flight included).

        Returns the number of invocations; raises TimeoutError if the queue is not empty in time
        (e.g. a message that keeps failing on a queue without a dead-letter queue).
        """
        deadline = time.monotonic() + timeout_seconds
        invocations = self.invocations
        while True:
            if self.poll_once(wait_time_seconds=0) == 0:
                if self.pending() == 0:
                    return self.invocations - invocations
                time.sleep(0.05)  # messages in flight come back when their visibility timeout ends
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.queue_url} still holds {self.pending()} message(s)")

    def start(self) -> SqsPoller:
        """Poll in a background (daemon) thread until ``stop()``."""
        if self._thread is not None:
            raise RuntimeError("the poller is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"sqs-poller-{self.function_name}", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # a transient SQS fault must not kill the local runtime's poller
                log.exception("polling %s failed; trying again", self.queue_url)
                self._stop.wait(1.0)

    def stop(self, timeout_seconds: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)
            self._thread = None
