"""`lambda-personalize run` (what `make run` starts) as a child process on free ports.

For tests and benchmarks that need the whole local stack as a user has it: one place that starts
it, waits for its banner, reads the addresses it printed, and stops it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
READY = "Press Ctrl-C to stop."


class LocalStackError(RuntimeError):
    """The local runtime did not come up; the message holds what it printed."""


@dataclass(frozen=True)
class LocalStack:
    process: subprocess.Popen[str]
    api_url: str
    aws_url: str
    model_bucket: str
    banner: list[str]
    data_dir: Path
    #: The last lines it printed after the banner (what a stop that hangs is explained by).
    output: deque[str] = field(default_factory=lambda: deque(maxlen=400))

    @property
    def printed_commands(self) -> list[str]:
        return [line.split("$ ", 1)[1] for line in self.banner if line.lstrip().startswith("$ ")]

    def client(self, service: str, region: str = "us-east-1", config: Config | None = None) -> Any:
        """A boto3 client as a user of `make run` makes it (fake credentials)."""
        url = self.api_url if service.startswith("personalize") else self.aws_url
        session: Any = boto3.session.Session()  # Any: the service is chosen at run time
        return session.client(
            service,
            endpoint_url=url,
            region_name=region,
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - the embedded AWS accepts any
            config=config,
        )

    def stop(self) -> None:
        # Ctrl-C, as a user stops it; it lets an invocation in flight finish (a batch shard, a
        # training: up to its poller's 10 s). SIGTERM (the runtime's own handler) if Ctrl-C went
        # unheard, as it does where a parent started the process tree with SIGINT ignored.
        for sent in (signal.SIGINT, signal.SIGTERM):
            self.process.send_signal(sent)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
                return
        self.process.send_signal(signal.SIGUSR1)  # `run` dumps every thread's stack on it
        time.sleep(2)
        self.process.kill()
        tail = "\n".join(self.output)
        raise LocalStackError(f"the local runtime did not stop in 40 s; it printed:\n{tail}")


def start_local_stack(data_dir: Path, extra_args: Sequence[str] = (), timeout: float = 120) -> LocalStack:
    """Start `lambda-personalize run --port=0 --aws-port=0` and return once its banner is printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    command = [
        str(Path(sys.executable).parent / "lambda-personalize"),
        "run",
        "--port=0",
        "--aws-port=0",
        f"--data-dir={data_dir}",
        *extra_args,
    ]
    process = subprocess.Popen(  # noqa: S603 - our own console script, our own arguments
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    banner: list[str] = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        banner.append(line.rstrip("\n"))
        if READY in line or time.monotonic() > deadline:
            break
    text = "\n".join(banner)
    api = re.search(r"API \(every route of the template\):\s+(http://\S+)", text)
    aws = re.search(r"Embedded AWS \(moto\):\s+(http://\S+)\s+model bucket: (\S+)", text)
    if api is None or aws is None or READY not in text:
        process.kill()
        raise LocalStackError(f"the local runtime did not start:\n{text}")
    stack = LocalStack(process, api.group(1), aws.group(1), aws.group(2), banner, data_dir)
    # Keep reading its output so that a chatty runtime never blocks on a full pipe.
    threading.Thread(target=lambda: stack.output.extend(process.stdout or ()), daemon=True).start()
    return stack
