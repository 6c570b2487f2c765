"""The training queue's messages, and the one place that sends them.

    {"kind": "import", "arn": <dataset import job ARN>}       run an import job
    {"kind": "train", "arn": <solution version ARN>}          train a solution version (or a recommender's)
    {"kind": "autotrain", "arn": <solution ARN>}              EventBridge Scheduler: a new version, trained

A message names a record only; what to do comes from the record, so a stale or repeated message
can do no harm (a record that is no longer pending is left as it is).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

from personalize_core.aws.clients import create_sqs_client

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

KINDS = frozenset({"import", "train", "autotrain"})


class TrainingMessage(NamedTuple):
    kind: str
    arn: str

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "arn": self.arn}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TrainingMessage:
        """Raises ValueError for anything that is not one of our messages."""
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("kind") not in KINDS or not isinstance(raw.get("arn"), str):
            raise ValueError("not a training message")
        return cls(str(raw["kind"]), str(raw["arn"]))


class TrainingQueue:
    def __init__(self, queue_url: str, client_factory: Callable[[], SQSClient] = create_sqs_client) -> None:
        self.queue_url = queue_url
        self._client_factory = client_factory

    def send(self, message: TrainingMessage) -> None:
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=message.to_json())

    @cached_property  # made on first use: no I/O when the module or the object is made
    def client(self) -> SQSClient:
        return self._client_factory()
