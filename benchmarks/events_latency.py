"""Events, measured (issue 17):

1. PutEvents through the events function's handler, warm, against the local DynamoDB and Firehose
   (moto's server in a process of its own, so it does not share this one's GIL), with the
   resources template.yaml declares, created as the local runtime creates them;
2. GetRecommendations through its handler at ``--items`` x ``--dims``: a user the version knows
   in a group without a tracker (the reference), the same user in a tracked group (one read of
   the user's events, one write of the answer's items), and an anonymous session with 10 events
   (the same I/O, plus its fold-in and softmax normaliser): the last two differ by the fold-in;
3. what events add to a cold start: the import of the modules they bring (fresh processes), and a
   tracked group's first read;
4. (``--make-run``) the time from PutEvents returning to the event being visible in
   GetRecommendations, through `make run`: an EXCLUDE filter on watched items must hide the item
   just watched, checked with the very next request.

    .venv/bin/python -m benchmarks.events_latency [--items 100000 --dims 64] [--make-run]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REGION, ACCOUNT = "us-east-1", "123456789012"


def ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(0.9 * len(ordered))]
    return f"p50 {1000 * statistics.median(ordered):.2f} ms, p90 {1000 * p90:.2f} ms"


def timed(run: Callable[[], object], repeats: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return samples


def interleaved(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Each case timed in turn, ``repeats`` rounds: the machine's load moves them all alike."""
    for run in cases.values():
        timed(run, 0, warmup=20)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            started = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - started)
    return samples


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return process, url
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("moto_server did not start")


def stack_environment(moto_url: str) -> dict[str, str]:
    """template.yaml's resources in the embedded AWS, and its functions' environment (as make run)."""
    from lambda_personalize.local_resources import create_resources
    from lambda_personalize.local_runtime import merged_environment
    from lambda_personalize.template import LocalTemplate, Stack

    template = LocalTemplate(ROOT / "template.yaml", Stack(aws_endpoint_url=moto_url))
    session = boto3.session.Session(
        region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
    )
    create_resources(session, moto_url, template.local_resources())
    return merged_environment(template.functions())


def publish(bucket: str, solution: str, items: np.ndarray, users: np.ndarray) -> str:
    from personalize_core.modelstore.bucket import ModelBucket
    from personalize_core.modelstore.layout import Recipe
    from personalize_core.modelstore.writer import prepare_version, put_campaign, upload_version

    prepared = prepare_version(
        solution=solution,
        recipe=Recipe.USER_PERSONALIZATION,
        region=REGION,
        account=ACCOUNT,
        item_ids=[f"item-{i}" for i in range(len(items))],
        item_factors=items,
        user_ids=[f"user-{u}" for u in range(len(users))],
        user_factors=users,
    )
    model_bucket = ModelBucket(boto3.client("s3"), bucket)
    manifest = upload_version(model_bucket, prepared)
    return put_campaign(model_bucket, solution, manifest).campaign_arn


def handler(function: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    from lambda_personalize.lambda_context import LocalLambdaContext
    from lambda_personalize.local_runtime import load_handler_module

    app = load_handler_module(ROOT / "functions" / function, "app")
    context = LocalLambdaContext(function_name=function)
    return lambda event: app.lambda_handler(event, context)


def post(path: str, body: dict[str, Any], target: str | None = None) -> dict[str, Any]:
    from lambda_personalize.local_api import proxy_event

    headers = {"Content-Type": "application/json"}
    if target:
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"AmazonPersonalize.{target}",
        }
    return proxy_event("POST", path, headers, json.dumps(body).encode())


def handlers_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    moto, moto_url = start_moto()
    try:
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,
            }
        )
        os.environ["AWS_ENDPOINT_URL"] = moto_url
        os.environ.update(
            {k: v for k, v in stack_environment(moto_url).items() if not k.startswith("POWERTOOLS_")}
        )
        os.environ.update({"POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true"})
        os.environ["POWERTOOLS_LOG_LEVEL"] = "ERROR"
        rng = np.random.default_rng(17)
        items = rng.normal(0, 0.3, (args.items, args.dims)).astype(np.float32)
        users = rng.normal(0, 0.3, (args.users, args.dims)).astype(np.float32)
        bucket = os.environ["MODEL_BUCKET"]
        tracked = publish(bucket, "tracked", items, users)
        untracked = publish(bucket, "untracked", items, users)
        control, events, recommend = (
            handler("control_plane"),
            handler("events"),
            handler("get_recommendations"),
        )
        group = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset-group/tracked"
        created = json.loads(
            control(post("/", {"name": "bench", "datasetGroupArn": group}, "CreateEventTracker"))["body"]
        )
        wait = float(os.environ.get("EVENT_GROUP_TTL_SECONDS", "5")) + 1.1
        time.sleep(wait)  # CREATE PENDING until every serving container can have seen the tracker
        assert "trackingId" in created, created
        tracking = created["trackingId"]
        results: dict[str, Any] = {"catalog": f"{args.items} x {args.dims}", "users": args.users}
        counter = iter(range(10**9))

        def put(n_events: int) -> Callable[[], object]:
            def run() -> object:
                i = next(counter)
                body = {
                    "trackingId": tracking,
                    "sessionId": f"bench-{i % 500}",
                    "eventList": [
                        {
                            "eventId": f"b{i}-{j}",
                            "eventType": "watch",
                            "itemId": f"item-{(i * 7 + j) % args.items}",
                            "sentAt": time.time(),
                        }
                        for j in range(n_events)
                    ],
                }
                answer = events(post("/events", body))
                assert answer["statusCode"] == 200, answer
                return answer

            return run

        # The floor, interleaved with PutEvents: one bare UpdateItem and one bare PutRecordBatch of
        # the same stores through the same client (what PutEvents waits for, in parallel)
        from personalize_core.events.delivery import get_delivery
        from personalize_core.events.table import get_events_table

        table, delivery = get_events_table(), get_delivery()
        assert table is not None
        assert delivery is not None
        table_name = table.name

        def update() -> object:
            return table.client.call(
                "UpdateItem",
                {
                    "TableName": table_name,
                    "Key": {"pk": {"S": "bench-floor"}},
                    "UpdateExpression": "SET a = :a",
                    "ExpressionAttributeValues": {":a": {"S": "x" * 80}},
                },
            )

        line = b"s,item-1,1,watch,,,,,s,e,,g,1\n"
        cases = {
            "put_events_1": put(1),
            "dynamodb_update_floor": update,
            "firehose_put_floor": lambda: delivery.send([line]),
        }
        results.update(interleaved(cases, args.requests))
        # The handler's own work: CPU time of the calling thread (the waits for the stores excluded)
        one = put(1)
        cpu = []
        for _ in range(args.requests):
            started = time.thread_time()
            one()
            cpu.append(time.thread_time() - started)
        results["put_events_1_cpu"] = cpu
        results["put_events_10"] = timed(put(10), args.requests)
        session = "bench-session-10"
        events(
            post(
                "/events",
                {
                    "trackingId": tracking,
                    "sessionId": session,
                    "eventList": [
                        {
                            "eventId": f"s-{j}",
                            "eventType": "watch",
                            "itemId": f"item-{j * 101}",
                            "sentAt": time.time(),
                        }
                        for j in range(10)
                    ],
                },
            )
        )

        # A known user whose ten events all came before the version (so not folded in): the same
        # item read as the session's, the stored vector's path
        from personalize_core.events.items import RecentEvent

        table.add_events(
            "tracked",
            "user-5",
            [RecentEvent(f"old-{j}", "watch", f"item-{j * 103}", 1.0, None, 1.0) for j in range(10)],
        )

        def ask(campaign: str, user: str) -> Callable[[], object]:
            event = post("/recommendations", {"campaignArn": campaign, "userId": user, "numResults": 25})

            def run() -> object:
                answer = recommend(event)
                assert answer["statusCode"] == 200, answer
                return answer

            return run

        # Interleaved, so that the machine's load moves all three alike
        cases = {
            "known_user_untracked": ask(untracked, "user-3"),
            "known_user_tracked": ask(tracked, "user-3"),
            "known_user_10_old_events": ask(tracked, "user-5"),
            "session_10_events": ask(tracked, session),
        }
        results.update(interleaved(cases, args.requests))
        # The fold-in alone, on the loaded version (what the session pays beyond the known user)
        from personalize_core.modelstore.store import get_store
        from personalize_core.serving import recipes
        from personalize_core.serving.live import get_live

        _, model = get_store().campaign(tracked)
        live = get_live().read(model, session)
        results["fold_in_only"] = timed(
            lambda: recipes.user_vector(model, session, {}, live.events), args.requests
        )
        results["events_read_only"] = timed(lambda: get_live().read(model, session), args.requests)
        from personalize_core.serving.scoring import user_top_k

        folded = recipes.user_vector(model, session, {}, live.events)
        known = recipes.user_vector(model, "user-3", {}, ())
        assert folded is not None
        assert known is not None
        assert model.item_factors is not None
        factors = model.item_factors
        results["score_stored_normaliser"] = timed(
            lambda: user_top_k(
                factors, known.vector, 25, log_normaliser=known.log_normaliser, max_norm=model.item_max_norm
            ),
            args.requests,
        )
        results["score_folded_vector"] = timed(
            lambda: user_top_k(factors, folded.vector, 25, max_norm=model.item_max_norm), args.requests
        )
        return results
    finally:
        moto.kill()
        moto.wait()


def import_cost(runs: int = 7) -> dict[str, float]:
    """Fresh processes, on the layer byte-compiled as ``sam build`` ships it: what importing the
    modules events bring adds to a serving function's imports (numpy, the store, the scorer first)."""
    with tempfile.TemporaryDirectory() as folder:
        # (benchmarks/bench.py's deployed_tree, without its faiss import)
        layer = Path(folder) / "python"
        shutil.copytree(ROOT / "layers" / "core" / "personalize_core", layer / "personalize_core")
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(layer)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        env = {**os.environ, "PYTHONPATH": str(layer)}
        core = ("modelstore.store", "serving.scoring", "edge.api")
        added = ("aws.json_client", "events.table", "serving.foldin", "serving.overlay", "serving.live")
        base = "import numpy, http.client, json, zlib, threading; " + "; ".join(
            f"import personalize_core.{m}" for m in core
        )
        events = "; ".join(f"import personalize_core.{m}" for m in added)

        def best(statement: str) -> float:
            probe = (
                f"{base}\nimport time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
            )
            return min(
                float(
                    subprocess.run(
                        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
                    ).stdout
                )
                for _ in range(runs)
            )

        return {"events_modules_import": best(events)}


def make_run_benchmark(trials: int) -> dict[str, Any]:
    from lambda_personalize.local_process import start_local_stack

    data = Path(tempfile.mkdtemp(prefix="events-bench-"))
    stack = start_local_stack(data)
    try:
        personalize = stack.client("personalize")
        events, runtime = stack.client("personalize-events"), stack.client("personalize-runtime")
        group = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset-group/demo"
        (tracker,) = personalize.list_event_trackers(datasetGroupArn=group)["eventTrackers"]
        tracking = personalize.describe_event_tracker(eventTrackerArn=tracker["eventTrackerArn"])[
            "eventTracker"
        ]["trackingId"]
        unwatched = personalize.create_filter(
            name=f"unwatched-{uuid.uuid4().hex[:6]}",
            datasetGroupArn=group,
            filterExpression='EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("watch")',
        )["filterArn"]
        campaign = f"arn:aws:personalize:{REGION}:{ACCOUNT}:campaign/demo-user-personalization"
        put_times, visible_after, first_request_saw = [], [], 0
        for trial in range(trials):
            user = f"visitor-{trial}-{uuid.uuid4().hex[:6]}"
            top = runtime.get_recommendations(
                campaignArn=campaign, userId=user, filterArn=unwatched, numResults=5
            )
            item = top["itemList"][0]["itemId"]
            started = time.perf_counter()
            events.put_events(
                trackingId=tracking,
                sessionId=user,
                eventList=[{"eventType": "watch", "itemId": item, "sentAt": time.time()}],
            )
            returned = time.perf_counter()
            put_times.append(returned - started)
            requests = 0
            while True:
                requests += 1
                answer = runtime.get_recommendations(
                    campaignArn=campaign, userId=user, filterArn=unwatched, numResults=5
                )
                if item not in {i["itemId"] for i in answer["itemList"]}:
                    break
            visible_after.append(time.perf_counter() - returned)
            first_request_saw += requests == 1
        return {
            "put_events_round_trip": put_times,
            "visible_after": visible_after,
            "trials": trials,
            "first_request_saw": first_request_saw,
        }
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument(
        "--make-run", action="store_true", help="also measure PutEvents-to-visible through make run"
    )
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    results = handlers_benchmark(args)
    print(f"catalog {results['catalog']}, {results['users']} users; moto_server in its own process")
    for key in (
        "score_stored_normaliser",
        "score_folded_vector",
        "put_events_1",
        "put_events_1_cpu",
        "dynamodb_update_floor",
        "firehose_put_floor",
        "put_events_10",
        "known_user_untracked",
        "known_user_tracked",
        "known_user_10_old_events",
        "session_10_events",
        "fold_in_only",
        "events_read_only",
    ):
        print(f"  {key:<24} {ms(results[key])}")
    extra = statistics.median(results["session_10_events"]) - statistics.median(
        results["known_user_10_old_events"]
    )
    io = statistics.median(results["known_user_tracked"]) - statistics.median(results["known_user_untracked"])
    print(f"  session with 10 events - known user with 10 (older) events: {1000 * extra:+.2f} ms (p50)")
    print(f"  tracked - untracked (the events read and the answer's record): {1000 * io:+.2f} ms (p50)")
    added = 1000 * import_cost()["events_modules_import"]
    print(f"  importing the events modules: {added:.1f} ms (best of 7 fresh processes)")
    if args.make_run:
        seen = make_run_benchmark(args.trials)
        print(f"make run (default demo): PutEvents round trip {ms(seen['put_events_round_trip'])}")
        print(f"  PutEvents returned -> visible in GetRecommendations: {ms(seen['visible_after'])}")
        print(f"  visible on the first request after PutEvents: {seen['first_request_saw']}/{seen['trials']}")


if __name__ == "__main__":
    main()
