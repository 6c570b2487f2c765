"""The shard queue's messages, and the one place that sends them.

Two kinds travel on the queue: ``plan`` (list a job's input, split it into shards, start the job)
and ``shard`` (score one shard). A message names its job and shard only; what to read comes from
the job record, so a stale or duplicated message can do no harm.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from personalize_core.aws.clients import create_sqs_client

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@dataclass(frozen=True, slots=True)
class Message:
    kind: str  # "plan" | "shard"
    job_name: str
    shard: str | None = None

    def to_json(self) -> str:
        raw: dict[str, Any] = {"kind": self.kind, "jobName": self.job_name}
        if self.shard is not None:
            raw["shard"] = self.shard
        return json.dumps(raw, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Message:
        """Raises ValueError for anything that is not one of our messages."""
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("kind") not in ("plan", "shard"):
            raise ValueError("not a batch job message")
        job_name, shard = raw.get("jobName"), raw.get("shard")
        if not isinstance(job_name, str) or (raw["kind"] == "shard") != isinstance(shard, str):
            raise ValueError("not a batch job message")
        return cls(raw["kind"], job_name, shard)


class ShardQueue:
    def __init__(self, queue_url: str, client_factory: Callable[[], SQSClient] = create_sqs_client) -> None:
        self.queue_url = queue_url
        self._client_factory = client_factory

    @cached_property  # made on first use: no I/O when the module or the object is made
    def client(self) -> SQSClient:
        return self._client_factory()

    def send(self, messages: list[Message]) -> None:
        """Send every message (SendMessageBatch, ten at a time); raises if any was not accepted."""
        for start in range(0, len(messages), 10):
            batch = messages[start : start + 10]
            answer = self.client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "MessageBody": m.to_json()} for i, m in enumerate(batch)],
            )
            failed = answer.get("Failed", [])
            if failed:
                raise RuntimeError(f"SQS refused {len(failed)} message(s): {failed[0].get('Message')}")
