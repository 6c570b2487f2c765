"""The batch worker in a process of its own, so a test can measure its memory alone.

Run by tests/integration/test_batch_scale.py with the worker's environment (JOBS_TABLE,
SHARD_QUEUE_URL, AWS_ENDPOINT_URL_*, ...). It drains the shard queue (a warm-up job the test
queued: imports, clients and the model are loaded), prints its RSS and resets the kernel's peak-RSS
mark (Linux: /proc/self/clear_refs), waits for a line on stdin (the test queues the measured job),
drains again and prints the peak RSS since the reset: the difference is what that job cost.

    python -m tests.batch_worker_process
"""

from __future__ import annotations

import gc
import json
import os
import re
import sys

from lambda_personalize.sqs_poller import SqsPoller
from tests.utils import load_function

#: Marks the lines the test reads (the worker's own logs go to stdout too, as in Lambda).
PROBE = "PROBE "


def memory() -> dict[str, int]:
    """This process's RSS now (VmRSS) and its peak (VmHWM), in bytes."""
    status = open("/proc/self/status").read()  # noqa: SIM115
    return {k: int(v) * 1024 for k, v in re.findall(r"(VmHWM|VmRSS):\s+(\d+) kB", status)}


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # "5": reset the peak RSS to the current RSS


def main() -> None:
    worker = load_function("batch_worker").lambda_handler
    poller = SqsPoller(os.environ["SHARD_QUEUE_URL"], worker, "BatchWorkerFunction", batch_size=1)
    poller.drain(timeout_seconds=120)
    gc.collect()
    reset_peak()
    print(PROBE + json.dumps({"rss": memory()["VmRSS"]}), flush=True)
    sys.stdin.readline()
    invocations = poller.drain(timeout_seconds=float(os.environ.get("DRAIN_TIMEOUT_SECONDS", "1800")))
    print(PROBE + json.dumps({"peak_rss": memory()["VmHWM"], "invocations": invocations}), flush=True)


if __name__ == "__main__":
    main()
