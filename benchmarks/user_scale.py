"""Users at scale (issue 19): cold start, memory, misses, publishing and batch with 10k-10M users.

    make bench BENCH_ARGS="--only users"                 # 10k, 1M and 10M users, 100k x 64 items
    .venv/bin/python -m benchmarks.user_scale --users 10000 1000000 10000000
    .venv/bin/python -m benchmarks.user_scale --quick    # 10k and 100k users: a couple of minutes

Everything against the local AWS (moto's server, on loopback, in this process), the models
published by the project's own code (the publish CLI, in a child process whose peak RSS is read):
- publish: seconds and peak RSS of ``lambda-personalize publish`` (user factors mmap'd from .npy);
- cold start: fresh processes running the deployed GetRecommendations (benchmarks/cold_start.py),
  first request loads or PreloadCampaigns; peak RSS after warm requests over distinct users
  (USER_CACHE_SIZE bounds what they add); "before": the layout published before user pages
  (tests/legacy_layout.py: the whole user matrix), at the sizes it is practical for;
- the user store side by side: a miss (S3 ranged GET of a page, our reader; the same GET through
  boto3; DynamoDB GetItem through boto3, on a table of the same users), p50 / p99; a hit;
- normalisers: computed on first use (one user) against precomputed in batches (per user), and
  what precomputing 10M users would cost;
- warm GetRecommendations of a cached user, pages against the old layout (same items, same process);
- batch: ``answer_lines`` (the worker's code) over random users of the largest version.
"""

from __future__ import annotations

import benchmarks.environment  # noqa: F401 - first: boto3 and Powertools read it on import

# isort: split
import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from moto.server import ThreadedMotoServer
from tests.legacy_layout import publish_legacy
from tests.utils import clear_process_caches, invoke
from threadpoolctl import threadpool_limits

from benchmarks.common import DEVNULL, deployed_tree, load_seconds, machine, ms, p50_p99
from benchmarks.events import recommendations_event
from personalize_core.aws.json_client import AwsJsonClient
from personalize_core.batch.inference import answer_lines, parse_line
from personalize_core.modelstore.item_matrix import ItemMatrix
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.objects import S3Objects
from personalize_core.modelstore.store import ModelStore
from personalize_core.serving.normalisers import log_normaliser, log_normalisers

ROOT = Path(__file__).resolve().parent.parent
ITEMS, DIMS, K = 100_000, 64, 25
ACCOUNT = "123456789012"
BUCKET = "user-scale"
#: The old layout is published for these sizes only (10M would upload one 2.6 GB object, which
#: the local S3 assembles in memory twice over, and load it whole in every cold start).
LEGACY_MAX_USERS = 1_000_000
OLD_NORMALISERS_MAX_USERS = 10_000
#: After the first answer, warm requests over distinct users: the cache (USER_CACHE_SIZE) fills
#: and evicts. Each miss is a ranged GET of the local S3 (~5-10 ms), so the counts stay small;
#: what a full cache adds is its size times the bytes an entry takes (measured apart: ~0.7 KB).
CACHE_FOR_COLD_STARTS = 200
WARM_REQUESTS, WARM_USERS = 500, 300


def arn(campaign: str) -> str:
    return f"arn:aws:personalize:us-east-1:{ACCOUNT}:campaign/{campaign}"


def synthetic(path: Path, rows: int, seed: int) -> None:
    """A [rows, 64] float32 .npy written block by block (10M users: 2.6 GB, never in memory)."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, DIMS))
    rng = np.random.default_rng(seed)
    for start in range(0, rows, 1 << 20):
        stop = min(rows, start + (1 << 20))
        out[start:stop] = rng.normal(0, 2 / np.sqrt(DIMS), (stop - start, DIMS))
    out.flush()
    del out


def write_ids(path: Path, prefix: str, count: int) -> None:
    with path.open("w") as f:
        for start in range(0, count, 1 << 20):
            f.write("".join(f"{prefix}{n}\n" for n in range(start, min(count, start + (1 << 20)))))


def publish(work: Path, moto_url: str, users: int) -> dict[str, Any]:
    """``lambda-personalize publish`` of ``users`` users in a child process: its time and peak RSS."""
    user_factors, user_ids = work / f"users-{users}.npy", work / f"users-{users}.txt"
    synthetic(user_factors, users, seed=users)
    write_ids(user_ids, "u", users)
    command = [
        *("publish", "--bucket", BUCKET, "--endpoint-url", moto_url, "--account-id", ACCOUNT),
        *("--solution", f"users-{users}", "--recipe", "USER_PERSONALIZATION"),
        *("--item-ids", str(work / "items.txt"), "--item-factors", str(work / "items.npy")),
        *("--user-ids", str(user_ids), "--user-factors", str(user_factors), "--campaign", f"users-{users}"),
    ]
    began = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.peak_memory", *command],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - began
    if child.returncode != 0:
        raise RuntimeError(child.stderr[-3000:])
    user_factors.unlink()
    return {
        "users": users,
        "seconds": seconds,
        **json.loads(child.stderr.strip().splitlines()[-1]),
        "matrix_bytes": users * DIMS * 4,
        "version": json.loads(child.stdout)["solutionVersionArn"],
    }


def publish_old(s3: Any, work: Path, users: int) -> None:
    rng = np.random.default_rng(users)
    model = {
        "item_ids": [f"i{i}" for i in range(ITEMS)],
        "item_factors": np.load(work / "items.npy"),
        "user_ids": [f"u{u}" for u in range(users)],
        "user_factors": rng.normal(0, 2 / np.sqrt(DIMS), (users, DIMS)).astype(np.float32),
    }
    # With every user's float64 normaliser, as published until now, where that is practical: for
    # 1M users x 100k items it did not finish in 20 minutes (issue 19)
    normalisers = users <= OLD_NORMALISERS_MAX_USERS
    campaign = f"old-{users}"
    publish_legacy(s3, BUCKET, campaign, Recipe.USER_PERSONALIZATION, model, campaign, normalisers)


def cold_starts(
    work: Path, moto_url: str, campaigns: list[tuple[str, int]], runs: int
) -> list[dict[str, Any]]:
    app = deployed_tree(work / "deployed")
    env = {
        **os.environ,
        "MODEL_BUCKET": BUCKET,
        "AWS_ENDPOINT_URL_S3": moto_url,
        "PYTHONPATH": os.pathsep.join([str(work / "deployed" / "python"), str(ROOT / "src")]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "USER_CACHE_SIZE": str(CACHE_FOR_COLD_STARTS),
    }
    modes = (("first request loads", False), ("PreloadCampaigns", True))
    measured: dict[tuple[str, str], list[dict[str, Any]]] = {}
    # Round after round, every campaign and mode once a round: a drift in the machine's load
    # reaches them all alike, and the best of the rounds is kept.
    for _ in range(runs):
        for campaign, _users in campaigns:
            event = work / f"event-{campaign}.json"
            event.write_text(json.dumps(recommendations_event(arn(campaign), "u1", K)))
            command = [sys.executable, str(ROOT / "benchmarks" / "cold_start.py"), str(app), str(event)]
            for mode, preload in modes:
                child = subprocess.run(
                    [*command, str(WARM_REQUESTS), str(WARM_USERS)],
                    capture_output=True,
                    text=True,
                    env={**env, "PRELOAD_CAMPAIGNS": arn(campaign) if preload else ""},
                    check=False,
                )
                if child.returncode != 0:
                    raise RuntimeError(child.stderr[-3000:])
                run = json.loads(child.stdout.strip().splitlines()[-1])
                run["load"] = load_seconds(child.stdout)
                measured.setdefault((campaign, mode), []).append(run)
    out = []
    for campaign, users in campaigns:
        for mode, _ in modes:
            runs_of = measured[(campaign, mode)]
            best = min(runs_of, key=lambda run: run["total"])
            best.update(campaign=campaign, users=users, mode=mode, runs=[m["total"] for m in runs_of])
            out.append(best)
            print(
                f"cold start {campaign:>16} {mode:<20} | total {ms(best['total'])} ms "
                f"(load {ms(best['load'])}) | runs {' '.join(ms(t) for t in best['runs'])} | "
                f"peak RSS {best['peak_rss_bytes'] / 2**20:.0f} MiB",
                flush=True,
            )
    return out


def store_side_by_side(s3: Any, moto_url: str, campaign: str, users: int, samples: int) -> dict[str, Any]:
    """A miss and a hit of the S3 pages, and DynamoDB GetItem, against the local AWS."""
    rng = np.random.default_rng(7)
    store = ModelStore(S3Objects(BUCKET), user_cache_size=samples * 4)
    model = store.campaign(arn(campaign))[1]
    assert model.users is not None
    reads: list[str] = []
    objects = store.objects
    plain_read_range = objects.read_range

    def counted(key: str, start: int, length: int) -> bytes:
        reads.append(key)
        return plain_read_range(key, start, length)

    objects.read_range = counted  # type: ignore[method-assign]
    picks = [f"u{n}" for n in rng.choice(users, samples, replace=False)]
    model.users.get(picks[0])  # the connection is open, as in a warm function
    misses = []
    for user in picks[1:]:
        began = time.perf_counter()
        model.users.get(user)
        misses.append(time.perf_counter() - began)
    reads_per_miss = (len(reads) - 1) / len(misses)
    hits = []
    for user in picks[1:]:
        began = time.perf_counter()
        model.users.get(user)
        hits.append(time.perf_counter() - began)
    # The GET alone (our reader), and through boto3 (as DynamoDB is read below)
    manifest = model.manifest
    prefix = f"solutions/{manifest.solution}/{manifest.version}/"
    index = model.users.index  # type: ignore[attr-defined]
    pages = rng.integers(0, len(index), samples)
    ours, theirs = [], []
    for page in pages:
        span = index.span(int(page))
        key = f"{prefix}user_pages/{span.file:06d}.bin"
        began = time.perf_counter()
        plain_read_range(key, span.offset, span.length)
        ours.append(time.perf_counter() - began)
        began = time.perf_counter()
        last = span.offset + span.length - 1
        s3.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={span.offset}-{last}")["Body"].read()
        theirs.append(time.perf_counter() - began)
    # DynamoDB: one item per user (vector bytes + row), 20k users; writes timed too
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_url)
    table = "user-vectors"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "u", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "u", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    written = 20_000
    vectors = rng.normal(size=(written, DIMS)).astype(np.float32)
    began = time.perf_counter()
    for start in range(0, written, 25):
        dynamodb.batch_write_item(
            RequestItems={
                table: [
                    {
                        "PutRequest": {
                            "Item": {
                                "u": {"S": f"u{n}"},
                                "v": {"B": vectors[n].tobytes()},
                                "r": {"N": str(n)},
                            }
                        }
                    }
                    for n in range(start, min(written, start + 25))
                ]
            }
        )
    write_rate = written / (time.perf_counter() - began)
    dynamo = []
    for n in rng.integers(0, written, samples):
        began = time.perf_counter()
        dynamodb.get_item(TableName=table, Key={"u": {"S": f"u{n}"}})
        dynamo.append(time.perf_counter() - began)
    # ...and through the serving path's own DynamoDB client (no boto3: aws/json_client.py)
    ours_dynamo = AwsJsonClient("dynamodb", "DynamoDB_20120810", "1.0", "us-east-1", endpoint_url=moto_url)
    ours_dynamo.call("GetItem", {"TableName": table, "Key": {"u": {"S": "u0"}}})  # connected
    dynamo_ours = []
    for n in rng.integers(0, written, samples):
        began = time.perf_counter()
        found = ours_dynamo.call("GetItem", {"TableName": table, "Key": {"u": {"S": f"u{n}"}}})
        dynamo_ours.append(time.perf_counter() - began)
        assert "Item" in found
    normaliser = []
    items = model.item_factors
    assert items is not None
    for n in range(50):
        began = time.perf_counter()
        log_normaliser(items, vectors[n])
        normaliser.append(time.perf_counter() - began)
    batched = min(_timed(lambda: log_normalisers(items, vectors[:512])) for _ in range(3)) / 512
    one_big, batched_big = normalisers_at_a_million(vectors)
    result = {
        "miss": p50_p99(misses),
        "hit": p50_p99(hits),
        "reads_per_miss": reads_per_miss,
        "s3_get_ours": p50_p99(ours),
        "s3_get_boto3": p50_p99(theirs),
        "dynamodb_get_boto3": p50_p99(dynamo),
        "dynamodb_get_ours": p50_p99(dynamo_ours),
        "dynamodb_writes_per_second": write_rate,
        "normaliser_first_use": p50_p99(normaliser),
        "normaliser_batched_per_user": batched,
        "normaliser_first_use_1m_items": one_big,
        "normaliser_batched_per_user_1m_items": batched_big,
        "index_bytes": model.users.nbytes,
        "page_bytes": float(np.mean(index.lengths)),
    }
    print(json.dumps(result, indent=1), flush=True)
    return result


def normalisers_at_a_million(vectors: np.ndarray) -> tuple[tuple[float, float], float]:
    """The normaliser's cost at 1M x 64 items (it grows with the catalog), in the served layout:
    one user (p50, p99 of 10), and per user in batches of 256."""
    big = ItemMatrix.from_matrix(
        np.random.default_rng(5).normal(0, 0.25, (1_000_000, DIMS)).astype(np.float32)
    )
    one = [_timed(lambda: log_normaliser(big, vectors[0])) for _ in range(10)]
    batched = min(_timed(lambda: log_normalisers(big, vectors[:256])) for _ in range(2)) / 256
    return p50_p99(one), batched


def _timed(run: Any) -> float:
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def warm_cached(campaigns: list[str], requests: int) -> dict[str, tuple[float, float]]:
    """Warm GetRecommendations of cached users through the handler, the campaigns interleaved."""
    os.environ.update(MODEL_BUCKET=BUCKET, USER_CACHE_SIZE="100000")
    clear_process_caches()
    events = {c: [recommendations_event(arn(c), f"u{u}", K) for u in range(20)] for c in campaigns}
    times: dict[str, list[float]] = {c: [] for c in campaigns}
    with threadpool_limits(1), redirect_stdout(DEVNULL):
        for c in campaigns:
            for event in events[c]:
                assert invoke("get_recommendations", event)["statusCode"] == 200  # loaded, cached
        for n in range(requests):
            for c in campaigns:
                event = events[c][n % 20]
                began = time.perf_counter()
                invoke("get_recommendations", event)
                times[c].append(time.perf_counter() - began)
    clear_process_caches()
    out = {c: p50_p99(t) for c, t in times.items()}
    print(
        "warm, cached user: " + " | ".join(f"{c} {ms(v[0])} / {ms(v[1])} ms" for c, v in out.items()),
        flush=True,
    )
    return out


def batch(campaign: str, users: int, lines: int) -> dict[str, Any]:
    """The worker's ``answer_lines`` over ``lines`` random users, 1,024 at a time, cold store."""
    store = ModelStore(S3Objects(BUCKET), user_cache_size=65_536)
    model = store.campaign(arn(campaign))[1]
    rng = np.random.default_rng(11)
    picked = rng.integers(0, users, lines)
    parsed = [
        parse_line(json.dumps({"userId": f"u{u}"}).encode(), Recipe.USER_PERSONALIZATION) for u in picked
    ]
    began = time.perf_counter()
    for start in range(0, lines, 1024):
        answer_lines(model, parsed[start : start + 1024], K)
    seconds = time.perf_counter() - began
    assert all(line.output is not None for line in parsed)
    result = {
        "campaign": campaign,
        "users": users,
        "lines": lines,
        "seconds": seconds,
        "lines_per_second": lines / seconds,
    }
    print(f"batch {campaign}: {lines} lines in {seconds:.2f} s ({lines / seconds:.0f} lines/s)", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 1_000_000, 10_000_000])
    parser.add_argument("--quick", action="store_true", help="10k and 100k users, fewer runs")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per cold start (best kept)")
    parser.add_argument("--json", type=Path, help="also save the raw results here")
    parser.add_argument(
        "--normalisers-only", action="store_true", help="only the normalisers' cost at 1M items (no AWS)"
    )
    args = parser.parse_args()
    if args.normalisers_only:
        vectors = np.random.default_rng(7).normal(size=(256, DIMS)).astype(np.float32)
        with threadpool_limits(1):
            (p50, p99), batched = normalisers_at_a_million(vectors)
        shown = f"one user p50 {ms(p50)} / p99 {ms(p99)} ms; {ms(batched)} ms a user in batches"
        print(f"normaliser at 1M x 64: {shown}")
        return
    sizes = [10_000, 100_000] if args.quick else sorted(args.users)
    runs = 2 if args.quick else args.runs

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(64 << 10)  # the local S3 keeps objects on disk
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL_S3"] = moto_url
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    work = Path(tempfile.mkdtemp(prefix="user-scale-"))
    results: dict[str, Any] = {"machine": machine(), "sizes": sizes}
    try:
        print(f"machine: {machine()}; load average {os.getloadavg()}", flush=True)
        synthetic(work / "items.npy", ITEMS, seed=0)
        write_ids(work / "items.txt", "i", ITEMS)
        print("\n== publish (the CLI, in a child process)", flush=True)
        results["publish"] = []
        for users in sizes:
            published = publish(work, moto_url, users)
            results["publish"].append(published)
            print(
                f"publish {users:>10,} users: {published['seconds']:.1f} s, peak anonymous memory "
                f"{published['anon_peak'] / 2**20:.0f} MiB, VmHWM {published['vm_hwm'] / 2**20:.0f} MiB "
                f"(the user matrix: {published['matrix_bytes'] / 2**20:.0f} MiB, mmap'd)",
                flush=True,
            )
        old_sizes = [n for n in sizes if n <= LEGACY_MAX_USERS]
        for users in old_sizes:
            publish_old(s3, work, users)
        print("\n== cold start (fresh processes) and peak RSS", flush=True)
        campaigns = [(f"old-{n}", n) for n in old_sizes] + [(f"users-{n}", n) for n in sizes]
        results["cold"] = cold_starts(work, moto_url, campaigns, runs)
        print("\n== the user store side by side (local AWS)", flush=True)
        samples = 200 if args.quick else 1000
        with threadpool_limits(1):  # one BLAS thread: a 1,769 MB Lambda's one vCPU
            results["store"] = store_side_by_side(s3, moto_url, f"users-{sizes[-1]}", sizes[-1], samples)
        print("\n== warm GetRecommendations, cached user (one process, interleaved)", flush=True)
        # today's lookup: the old layout with its stored normalisers (the smallest old version)
        warm = [f"users-{sizes[-1]}"] + ([f"old-{old_sizes[0]}"] if old_sizes else [])
        results["warm"] = warm_cached(warm, 300 if args.quick else 1000)
        print("\n== batch (answer_lines, 1,024 lines at a time)", flush=True)
        lines = 4096 if args.quick else 20_480
        with threadpool_limits(1):
            results["batch"] = [batch(f"users-{n}", n, lines) for n in (sizes[0], sizes[-1])]
            if old_sizes:
                results["batch"].append(batch(f"old-{old_sizes[-1]}", old_sizes[-1], lines))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["load_average"] = os.getloadavg()
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


def markdown(results: dict[str, Any]) -> str:
    cold = results["cold"]
    first = {r["campaign"]: r for r in cold if r["mode"] == "first request loads"}
    preload = {r["campaign"]: r for r in cold if r["mode"] == "PreloadCampaigns"}
    smallest = first[f"users-{results['sizes'][0]}"]["total"]
    lines = [
        "| users | layout | cold start (first request) | PreloadCampaigns | vs smallest | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    for campaign, row in first.items():
        layout = "before (user matrix)" if campaign.startswith("old-") else "user pages"
        lines.append(
            f"| {row['users']:,} | {layout} | {row['total']:.2f} s | {preload[campaign]['total']:.2f} s | "
            f"{row['total'] / smallest:.2f}x | {row['peak_rss_bytes'] / 2**20:.0f} MiB |"
        )
    store = results["store"]
    rows = [
        ("a miss: ranged GET, decode, first-use normaliser", "miss"),
        ("S3 ranged GET of a page (our reader)", "s3_get_ours"),
        ("S3 ranged GET of a page (boto3)", "s3_get_boto3"),
        ("DynamoDB GetItem of a user (boto3)", "dynamodb_get_boto3"),
        ("DynamoDB GetItem of a user (our JSON client)", "dynamodb_get_ours"),
        ("first-use normaliser (100k x 64, float64)", "normaliser_first_use"),
    ]
    lines += ["", "| read | p50 | p99 |", "|---|---|---|"]
    lines += [f"| {label} | {ms(store[key][0])} ms | {ms(store[key][1])} ms |" for label, key in rows]
    hit = store["hit"]
    lines.append(f"| a hit (the LRU) | {hit[0] * 1e6:.1f} us | {hit[1] * 1e6:.1f} us |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
