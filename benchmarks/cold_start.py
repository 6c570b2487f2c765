"""One cold start, in a fresh process: import the handler, answer one request, report the breakdown.

Run by benchmarks/bench.py, with the environment of a deployed function (the model bucket, the
local S3 endpoint, PRELOAD_CAMPAIGNS or not) and PYTHONPATH on a byte-compiled copy of the layer
and the function, as ``sam build`` ships them:

    python benchmarks/cold_start.py <app.py> <event.json> [warm requests] [distinct users]

Prints one JSON object: seconds spent in init (importing the handler module, which with
PRELOAD_CAMPAIGNS also loads the model while it imports), in the first request, and the peak RSS
after N more warm requests (with ``distinct users``, the warm requests' userIds are u0, u1, ...
cycling through that many users, each fetched once into the user cache). The model's load time
is in the store's own log line ("solution version loaded", on stdout before it), which bench.py
reads.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import importlib.util  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def peak_rss() -> int:
    # VmHWM belongs to this process's own memory map; ru_maxrss would also count the parent's RSS
    # at fork time (Linux carries it across exec).
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    app_path, event = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    warm_requests = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    distinct_users = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    # Imported as the Lambda runtime imports a handler: the module file, nothing else of ours first.
    spec = importlib.util.spec_from_file_location("app", app_path)
    assert spec is not None
    assert spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    initialised = time.perf_counter()
    # The runtime's context object exists before init; ours is imported after it, so not timed.
    from lambda_personalize.lambda_context import LocalLambdaContext

    context = LocalLambdaContext(function_name="cold-start")
    result = app.lambda_handler(event, context)
    answered = time.perf_counter()
    assert result["statusCode"] == 200, result
    body = json.loads(event["body"])
    for n in range(warm_requests):
        if distinct_users:
            body["userId"] = f"u{n % distinct_users}"
            event = {**event, "body": json.dumps(body)}
        assert app.lambda_handler(event, context)["statusCode"] == 200
    print(
        json.dumps(
            {
                "init": initialised - STARTED,
                "first_request": answered - initialised,
                "total": answered - STARTED,
                "peak_rss_bytes": peak_rss(),
            }
        )
    )


if __name__ == "__main__":
    main()
