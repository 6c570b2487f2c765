"""No batch job stays unfinished forever: a job whose work was lost is failed, with a reason, after
BATCH_STALL_TIMEOUT_SECONDS without progress (checked lazily by Describe and List).

The clock of the control plane's BatchJobs is moved forward instead of waiting out the timeout.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from personalize_core import batch
from personalize_core.batch.queue import Message, ShardQueue
from personalize_core.control.batch_jobs import get_batch_jobs
from personalize_core.settings import Settings, get_settings
from tests.conftest import BatchEnv, template_properties
from tests.integration.test_batch_jobs import _user_job, describe

STALL_TIMEOUT = 120.0


@pytest.fixture
def short_stall(batch_env: BatchEnv, monkeypatch: pytest.MonkeyPatch) -> BatchEnv:
    monkeypatch.setenv("BATCH_STALL_TIMEOUT_SECONDS", str(STALL_TIMEOUT))
    get_settings.cache_clear()
    get_batch_jobs.cache_clear()
    return batch_env


def _later(seconds: float) -> None:
    """Every later Describe / List sees the clock ``seconds`` ahead."""
    get_batch_jobs().clock = lambda: time.time() + seconds


def _dead_letter(batch_env: BatchEnv, monkeypatch: pytest.MonkeyPatch, kind: str) -> list[Message]:
    """Messages of ``kind`` go straight to the DLQ: what SQS does once a worker has died on each
    of its maxReceiveCount deliveries (a crash or a timeout never reaches the worker's own fail)."""
    send = ShardQueue.send
    lost: list[Message] = []

    def send_or_lose(self: ShardQueue, messages: list[Message]) -> None:
        kept = [m for m in messages if m.kind != kind]
        lost.extend(m for m in messages if m.kind == kind)
        send(
            ShardQueue(batch_env.dead_letter_url, self._client_factory),
            [m for m in messages if m.kind == kind],
        )
        if kept:
            send(self, kept)

    monkeypatch.setattr(ShardQueue, "send", send_or_lose)
    return lost


@pytest.mark.parametrize(
    ("lost_kind", "stuck_in"), [("plan", "CREATE PENDING"), ("shard", "CREATE IN_PROGRESS")]
)
def test_a_job_whose_work_is_lost_fails_after_the_stall_timeout(
    short_stall: BatchEnv,
    control_plane: Any,
    s3: Any,
    serving_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    lost_kind: str,
    stuck_in: str,
) -> None:
    # Given a job whose plan (or every shard) message was dead-lettered, as after repeated crashes
    lost = _dead_letter(short_stall, monkeypatch, lost_kind)
    arn, _ = _user_job(short_stall, control_plane, s3, serving_bucket, f"stalled-{lost_kind}")
    short_stall.poller.drain()
    assert lost

    # When it is described within the timeout, and again once the timeout has passed
    within = describe(control_plane, arn)
    _later(STALL_TIMEOUT + 5)
    after = describe(control_plane, arn)
    listed = control_plane.list_batch_inference_jobs()["batchInferenceJobs"][0]

    # Then it waits at first, and is then CREATE FAILED saying why, in Describe and List alike
    assert within["status"] == stuck_in
    assert after["status"] == "CREATE FAILED"
    assert "made no progress" in after["failureReason"]
    assert listed["status"] == "CREATE FAILED"
    assert listed["failureReason"] == after["failureReason"]


def test_messages_that_come_back_after_the_timeout_change_nothing(
    short_stall: BatchEnv, control_plane: Any, s3: Any, serving_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job failed for lack of progress, its shard messages in the DLQ
    _dead_letter(short_stall, monkeypatch, "shard")
    arn, _ = _user_job(short_stall, control_plane, s3, serving_bucket, "late-shards")
    short_stall.poller.drain()
    _later(STALL_TIMEOUT + 5)
    failed = describe(control_plane, arn)
    assert failed["status"] == "CREATE FAILED"

    # When an operator redrives the DLQ onto the shard queue and the worker runs them
    client = batch.get_worker().queue.client
    moved = 0
    while messages := client.receive_message(
        QueueUrl=short_stall.dead_letter_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    ).get("Messages", []):
        for message in messages:
            client.send_message(QueueUrl=short_stall.queue_url, MessageBody=message["Body"])
            client.delete_message(
                QueueUrl=short_stall.dead_letter_url, ReceiptHandle=message["ReceiptHandle"]
            )
            moved += 1
    monkeypatch.undo()
    short_stall.poller.drain()

    # Then the job stays failed, as it was, and writes no output
    assert moved > 0
    assert describe(control_plane, arn) == failed
    listed = s3.list_objects_v2(Bucket=short_stall.data_bucket, Prefix="out/").get("Contents", [])
    assert not [o["Key"] for o in listed if o["Key"].endswith(".out")]


def test_a_job_that_progresses_meanwhile_is_not_expired(
    short_stall: BatchEnv, control_plane: Any, s3: Any, serving_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a running job's record as read by a Describe, and then a shard done by a worker
    _dead_letter(short_stall, monkeypatch, "shard")
    arn, _ = _user_job(short_stall, control_plane, s3, serving_bucket, "racing")
    short_stall.poller.drain()
    table = batch.get_worker().table
    read = table.get("racing")
    assert read is not None
    assert read.plan is not None
    table.mark_shard_done("racing", read.plan.shard_ids[0], read.updated_at + 1)

    # When the stale record is expired
    expired = table.expire(read, "stalled", time.time() + STALL_TIMEOUT * 2)

    # Then nothing changes: the progress wins, and the job runs on
    assert expired is None
    job = describe(control_plane, arn)
    assert job["status"] == "CREATE IN_PROGRESS"
    assert "failureReason" not in job


def test_a_finished_job_is_never_expired(
    short_stall: BatchEnv, control_plane: Any, s3: Any, serving_bucket: str
) -> None:
    # Given a job that completed
    arn, _ = _user_job(short_stall, control_plane, s3, serving_bucket, "done-long-ago")
    short_stall.poller.drain()
    # When it is described long after
    _later(STALL_TIMEOUT * 100)
    # Then it is still ACTIVE
    assert describe(control_plane, arn)["status"] == "ACTIVE"


def test_the_default_timeout_outlasts_every_redelivery_of_the_shard_queue() -> None:
    # Given the shard queue of template.yaml and the default setting
    default = Settings._field_defaults["batch_stall_timeout_seconds"]
    queue = template_properties("ShardQueue")
    redeliveries = int(queue["RedrivePolicy"]["maxReceiveCount"])
    # Then a job is only expired after its last message can no longer come back from a worker
    assert isinstance(default, float)
    assert default > queue["VisibilityTimeout"] * redeliveries
