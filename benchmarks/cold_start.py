"""One cold start, in a fresh process: import the handler, answer one request, report the breakdown.

Run by benchmarks/bench.py (the environment names the model bucket and the local S3 endpoint):

    python benchmarks/cold_start.py <event.json> [warm requests]

Prints one JSON object: seconds spent in imports, S3 fetch (waiting for bytes), load (verify,
transpose, index), the first query, and the peak RSS after N more warm requests.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import importlib.util  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from lambda_personalize.lambda_context import LocalLambdaContext  # noqa: E402

APP = Path(__file__).resolve().parent.parent / "functions" / "get_recommendations" / "app.py"


def peak_rss() -> int:
    # VmHWM belongs to this process's own memory map; ru_maxrss would also count the parent's RSS
    # at fork time (Linux carries it across exec).
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    event = json.loads(Path(sys.argv[1]).read_text())
    warm_requests = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    # Imported as the Lambda runtime imports a handler: the module file, nothing else of ours.
    spec = importlib.util.spec_from_file_location("app", APP)
    assert spec is not None
    assert spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    imported = time.perf_counter()

    from personalize_core import store as store_module

    fetching = [0.0]
    objects = store_module.get_store().objects
    plain_read, plain_chunks = objects.read, objects.read_chunks

    def read(key: str) -> bytes:
        began = time.perf_counter()
        try:
            return plain_read(key)
        finally:
            fetching[0] += time.perf_counter() - began

    def read_chunks(key: str, chunk_size: int = 4 << 20) -> Iterator[bytes]:
        chunks = plain_chunks(key, chunk_size)
        while True:
            began = time.perf_counter()
            chunk = next(chunks, None)
            fetching[0] += time.perf_counter() - began
            if chunk is None:
                return
            yield chunk

    began = time.perf_counter()
    objects.reader  # noqa: B018 - created lazily on the first request; timed on its own here
    client = time.perf_counter() - began
    objects.read, objects.read_chunks = read, read_chunks  # type: ignore[method-assign]
    plain_load = store_module.ModelStore._load
    loading = [0.0]
    fetch_in_load = [0.0]

    def load(self: Any, prefix: str) -> Any:
        began, fetched = time.perf_counter(), fetching[0]
        try:
            return plain_load(self, prefix)
        finally:
            loading[0] += time.perf_counter() - began
            fetch_in_load[0] += fetching[0] - fetched

    store_module.ModelStore._load = load  # type: ignore[method-assign]
    before = time.perf_counter()
    result = app.lambda_handler(event, LocalLambdaContext(function_name="cold-start"))
    answered = time.perf_counter()
    assert result["statusCode"] == 200, result
    for _ in range(warm_requests):
        app.lambda_handler(event, LocalLambdaContext(function_name="cold-start"))
    fetch = fetching[0]
    print(
        json.dumps(
            {
                "imports": imported - STARTED,
                "s3_client": client,
                "fetch": fetch,
                "load": loading[0] - fetch_in_load[0],
                "first_query": (answered - before) - loading[0] - (fetch - fetch_in_load[0]),
                "total": answered - STARTED,
                "peak_rss_bytes": peak_rss(),
            }
        )
    )


if __name__ == "__main__":
    main()
