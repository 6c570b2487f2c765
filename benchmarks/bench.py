"""The performance benchmark: ours against faiss, naive numpy and the memory floor, in one run.

    make bench                       # the full run (a few minutes on 2 cores)
    make bench BENCH_ARGS=--quick    # 10k and 100k x 64, 1 thread: a minute

Everything is measured in this one process, on the same synthetic catalogs and thread counts:
- ours: warm GetRecommendations through the real handler (API Gateway event in, response out),
  USER_PERSONALIZATION, top-25 with scores, model published to (local, moto) S3 by the CLI's code;
- faiss: ``IndexFlatIP`` exact top-25 for the same users (no scores);
- naive: ``X @ u`` and a full argsort;
- floor: the catalog's bytes at this machine's read bandwidth (measured here, on a 1 GiB array);
- read: one read pass over the catalog's float32 matrix (``items.max()``), timed in turn with
  ours and faiss, request by request: the floor under the same disturbances.
Then cold start (fresh processes), batch users/s (``batch_user_top_k`` against faiss's batched
search), handler overhead on a 1k-item catalog, and peak RSS of a warm 1M x 64 function; last,
users at scale (benchmarks/user_scale.py: 10k, 1M and 10M users; ``--only users`` runs it alone).
Prints the tables (also as markdown) and saves the plot to docs/performance.png.
"""

from __future__ import annotations

import benchmarks.environment  # noqa: F401 - first: boto3 and Powertools read it on import

# isort: split
import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import faiss
import numpy as np
from moto.server import ThreadedMotoServer
from tests.utils import invoke
from threadpoolctl import threadpool_limits

from benchmarks.common import DEVNULL, deployed_tree, load_seconds, ms, p50_p99, timed
from benchmarks.common import machine as common_machine
from benchmarks.events import recommendations_event
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.item_matrix import ItemMatrix
from personalize_core.modelstore.layout import Recipe
from personalize_core.modelstore.store import get_store
from personalize_core.modelstore.writer import prepare_version, put_campaign, upload_version
from personalize_core.serving.batch_scoring import batch_user_top_k
from personalize_core.serving.scoring import log_normalisers, max_row_norm

ROOT = Path(__file__).resolve().parent.parent
PLOT = ROOT / "docs" / "performance.png"
QUICK_PLOT = ROOT / "benchmarks" / "results" / "performance-quick.png"  # ignored by git
ACCOUNT = "123456789012"
K = 25
PARTS = ["warm", "batch", "overhead", "cold", "users"]


def set_threads(threads: int) -> threadpool_limits:
    faiss.omp_set_num_threads(threads)
    return threadpool_limits(threads)


def read_bandwidth() -> float:
    """Bytes/s of one streaming read pass (the best of several, on a 1 GiB array, past every cache)."""
    buffer = np.ones(1 << 28, dtype=np.float32)
    best = min(timed(buffer.max, 5))
    return buffer.nbytes / best


@dataclass
class Bench:
    s3: Any
    bucket: str
    quick: bool
    rows: list[dict[str, Any]] = field(default_factory=list)

    def publish(self, name: str, items: np.ndarray, users: np.ndarray) -> str:
        prepared = prepare_version(
            solution=name,
            recipe=Recipe.USER_PERSONALIZATION,
            region="us-east-1",
            account=ACCOUNT,
            item_ids=[f"i{i}" for i in range(len(items))],
            item_factors=items,
            user_ids=[f"u{u}" for u in range(len(users))],
            user_factors=users,
        )
        put_campaign(
            ModelBucket(self.s3, self.bucket),
            name,
            upload_version(ModelBucket(self.s3, self.bucket), prepared),
        )
        return f"arn:aws:personalize:us-east-1:{ACCOUNT}:campaign/{name}"


def catalog(num_items: int, dims: int, num_users: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = 1 / np.sqrt(dims)
    items = rng.normal(0, 1, (num_items, dims)).astype(np.float32) * np.float32(scale * 2)
    users = rng.normal(0, 1, (num_users, dims)).astype(np.float32) * np.float32(scale * 2)
    return items, users


def warm_latency(
    bench: Bench, bandwidth: float, sizes: list[int], dims_list: list[int], threads: list[int]
) -> None:
    rng = np.random.default_rng(1)
    num_users = 300
    for dims in dims_list:
        for num_items in sizes:
            items, users = catalog(num_items, dims, num_users)
            arn = bench.publish(f"warm-{num_items}-{dims}", items, users)
            requests = 100 if bench.quick else (150 if num_items >= 1_000_000 else 400)
            picks = rng.integers(0, num_users, requests)
            events = [recommendations_event(arn, f"u{u}", K) for u in picks]
            with redirect_stdout(DEVNULL):
                assert invoke("get_recommendations", events[0])["statusCode"] == 200  # loads the model
                # Warm means cached users: each one's first request fetches its page and computes its
                # normaliser (a miss: `--only users` measures those), so every user asks once first.
                for u in np.unique(picks):
                    invoke("get_recommendations", recommendations_event(arn, f"u{u}", K))
            index = faiss.IndexFlatIP(dims)
            index.add(items)
            for count in threads:
                with set_threads(count), redirect_stdout(DEVNULL):
                    # Ours, faiss and one read pass over the catalog's float32 bytes take turns,
                    # request by request: on a shared machine all three then meet the same
                    # disturbances, and their ratios are what they measure.
                    ours, faiss_times, reads = [], [], []
                    for event, u in zip(events, picks, strict=True):
                        began = time.perf_counter()
                        invoke("get_recommendations", event)
                        ours.append(time.perf_counter() - began)
                        query = users[u : u + 1]
                        began = time.perf_counter()
                        index.search(query, K)
                        faiss_times.append(time.perf_counter() - began)
                        began = time.perf_counter()
                        items.max()
                        reads.append(time.perf_counter() - began)
                    naive_times = []
                    for u in picks[: max(10, requests // (10 if num_items >= 1_000_000 else 2))]:
                        began = time.perf_counter()
                        np.argsort(-(items @ users[u]))[:K]
                        naive_times.append(time.perf_counter() - began)
                (o50, o99), (f50, f99), (n50, n99) = p50_p99(ours), p50_p99(faiss_times), p50_p99(naive_times)
                floor = items.nbytes / bandwidth
                read = statistics.median(reads)
                bench.rows.append(
                    {
                        "items": num_items,
                        "dims": dims,
                        "threads": count,
                        "ours_p50": o50,
                        "ours_p99": o99,
                        "faiss_p50": f50,
                        "faiss_p99": f99,
                        "naive_p50": n50,
                        "naive_p99": n99,
                        "floor": floor,
                        "read_p50": read,
                    }
                )
                row = bench.rows[-1]
                print(
                    f"{num_items:>9} x {dims:<3} {count}t | ours {ms(o50):>7} / {ms(o99):>7} | "
                    f"faiss {ms(f50):>7} / {ms(f99):>7} | naive {ms(n50):>8} | floor {ms(floor):>6} | "
                    f"read {ms(read):>6} | ours/faiss {o50 / f50:.2f} | ours/floor {o50 / floor:.2f} | "
                    f"ours/read {o50 / read:.2f}",
                    flush=True,
                )
                del row
            del index
            get_store.cache_clear()  # the next catalog starts from an empty store (memory)


def batch_throughput(sizes: list[int], threads: list[int], quick: bool) -> list[dict[str, Any]]:
    out = []
    for num_items in sizes:
        num_users = 2048 if num_items < 1_000_000 else 512
        if quick:
            num_users //= 2
        items, users = catalog(num_items, 64, num_users, seed=2)
        served = ItemMatrix.from_matrix(items)  # the store's layout
        largest = max_row_norm(served)  # a loaded model carries it
        norms = log_normalisers(items, users)
        index = faiss.IndexFlatIP(64)
        index.add(items)
        for count in threads:
            with set_threads(count):
                ours = min(
                    timed(
                        lambda: batch_user_top_k(served, users, K, log_normalisers=norms, max_norm=largest), 2
                    )
                )
                theirs = min(timed(lambda: index.search(users, K), 2))
            out.append(
                {"items": num_items, "threads": count, "ours": num_users / ours, "faiss": num_users / theirs}
            )
            print(
                f"batch {num_items:>9} x 64 {count}t | ours {num_users / ours:>9.0f} users/s | "
                f"faiss {num_users / theirs:>9.0f} users/s | ours/faiss {theirs / ours:.2f}",
                flush=True,
            )
    return out


def handler_overhead(bench: Bench) -> dict[str, float]:
    items, users = catalog(1000, 64, 100, seed=3)
    arn = bench.publish("overhead-1k", items, users)
    events = [recommendations_event(arn, f"u{u % 100}", K) for u in range(1000)]
    with set_threads(1), redirect_stdout(DEVNULL):
        invoke("get_recommendations", events[0])
        samples = []
        for event in events:
            began = time.perf_counter()
            invoke("get_recommendations", event)
            samples.append(time.perf_counter() - began)
    p50, p99 = p50_p99(samples)
    print(f"handler overhead, 1k x 64: p50 {ms(p50)} ms, p99 {ms(p99)} ms", flush=True)
    return {"p50": p50, "p99": p99}


#: What any function that scores with numpy and reads S3 over HTTPS imports, however it is written.
REQUIRED_IMPORTS = "import numpy, http.client, ssl, hashlib"


def import_seconds(env: dict[str, str], statement: str, runs: int = 5) -> float:
    """The best of ``runs`` fresh processes' time to run an import statement."""
    probe = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    return min(
        float(
            subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
            ).stdout
        )
        for _ in range(runs)
    )


def cold_start(bench: Bench, moto_url: str, sizes: list[int]) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="cold-start-"))
    app_path = deployed_tree(work)
    env = {
        **os.environ,
        "MODEL_BUCKET": bench.bucket,
        "AWS_ENDPOINT_URL_S3": moto_url,
        # the deployed tree first; lambda_personalize (the test context only) from the source
        "PYTHONPATH": os.pathsep.join([str(work / "python"), str(ROOT / "src")]),
        "PYTHONDONTWRITEBYTECODE": "1",  # as on Lambda: nothing is compiled and kept at run time
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    import_numpy = import_seconds(env, "import numpy")
    import_required = import_seconds(env, REQUIRED_IMPORTS)
    print(
        f"imports alone, best of 5 fresh processes: numpy {ms(import_numpy)} ms; numpy + what reading S3 "
        f"over HTTPS needs (http.client, ssl, hashlib) {ms(import_required)} ms",
        flush=True,
    )
    results = []
    for num_items in sizes:
        items, users = catalog(num_items, 64, 1000, seed=4)
        name = f"cold-{num_items}"
        arn = bench.publish(name, items, users)
        del items, users
        prefix = next(
            o["Key"].rsplit("/", 1)[0] + "/"
            for o in bench.s3.list_objects_v2(Bucket=bench.bucket, Prefix=f"solutions/{name}/")["Contents"]
        )
        objects = bench.s3.list_objects_v2(Bucket=bench.bucket, Prefix=prefix)["Contents"]
        model_bytes = sum(o["Size"] for o in objects)
        downloads = []
        for _ in range(3):
            began = time.perf_counter()
            for o in objects:
                bench.s3.get_object(Bucket=bench.bucket, Key=o["Key"])["Body"].read()
            downloads.append(time.perf_counter() - began)
        download = min(downloads)
        reference = import_numpy + download
        event_file = work / f"event-{num_items}.json"
        event_file.write_text(json.dumps(recommendations_event(arn, "u1", K)))
        for mode, preload in (("first request loads", ""), ("PreloadCampaigns", arn)):
            runs = []
            for _ in range(3):  # best of three fresh processes
                child = subprocess.run(
                    [
                        sys.executable,
                        str(ROOT / "benchmarks" / "cold_start.py"),
                        str(app_path),
                        str(event_file),
                        "50",
                    ],
                    capture_output=True,
                    text=True,
                    env={**env, "PRELOAD_CAMPAIGNS": preload},
                    check=False,
                )
                if child.returncode != 0:
                    raise RuntimeError(child.stderr[-2000:])
                measured = json.loads(child.stdout.strip().splitlines()[-1])
                measured["load"] = load_seconds(child.stdout)
                runs.append(measured)
            measured = min(runs, key=lambda run: run["total"])
            measured.update(
                items=num_items,
                mode=mode,
                import_numpy=import_numpy,
                import_required=import_required,
                raw_download=download,
                reference=reference,
                model_bytes=model_bytes,
            )
            results.append(measured)
            loading = "during init" if preload else "in the first request"
            print(
                f"cold start {num_items:>9} x 64, {mode:<20} | init {ms(measured['init'])} | first request "
                f"{ms(measured['first_request'])} | total {ms(measured['total'])} ms (model load "
                f"{ms(measured['load'])} ms {loading}) | reference: import numpy {ms(import_numpy)} + raw "
                f"download {ms(download)} = {ms(reference)} ms | ratio {measured['total'] / reference:.2f} | "
                f"peak RSS {measured['peak_rss_bytes'] / 2**20:.0f} MiB for {model_bytes / 2**20:.0f} MiB "
                f"of model (+{(measured['peak_rss_bytes'] - model_bytes) / 2**20:.0f} MiB)",
                flush=True,
            )
    shutil.rmtree(work, ignore_errors=True)
    return results


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["dims"], r["threads"]) for r in rows})
    columns = min(2, len(panels))
    lines = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(lines, columns, figsize=(6 * columns, 4.2 * lines), squeeze=False)
    for axis, (dims, threads) in zip(axes.flat, panels, strict=False):
        chosen = sorted(
            (r for r in rows if r["dims"] == dims and r["threads"] == threads), key=lambda r: r["items"]
        )
        sizes = [r["items"] for r in chosen]
        for key, label, style in (
            ("ours_p50", "ours: handler, top-25 + softmax scores", "o-"),
            ("faiss_p50", "faiss IndexFlatIP (no scores)", "s--"),
            ("naive_p50", "naive numpy (X@u + argsort)", "^:"),
            ("floor", "floor: one float32 pass at memory bandwidth", "k-"),
            ("read_p50", "read: one float32 pass, timed in turns", "k:"),
        ):
            axis.plot(sizes, [r[key] * 1000 for r in chosen], style, label=label)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("catalog size (items)")
        axis.set_ylabel("p50 latency (ms)")
        axis.set_title(f"{dims} dims, {threads} thread{'s' if threads > 1 else ''}")
        axis.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    figure.suptitle("Warm GetRecommendations, top-25 (same process, same catalog, same threads)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| items x dims | threads | ours p50 / p99 (ms) | faiss p50 / p99 (ms) | naive p50 (ms) | floor (ms) "
        "| read p50 (ms) | ours/faiss | ours/floor | ours/read |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['items']:,} x {r['dims']} | {r['threads']} | {ms(r['ours_p50'])} / {ms(r['ours_p99'])} | "
            f"{ms(r['faiss_p50'])} / {ms(r['faiss_p99'])} | {ms(r['naive_p50'])} | {ms(r['floor'])} | "
            f"{ms(r['read_p50'])} | {r['ours_p50'] / r['faiss_p50']:.2f} | "
            f"{r['ours_p50'] / r['floor']:.2f} | {r['ours_p50'] / r['read_p50']:.2f} |"
        )
    return "\n".join(lines)


def machine() -> str:
    return f"{common_machine()}, faiss {faiss.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10k and 100k x 64, 1 thread; fewer requests")
    parser.add_argument(
        "--plot",
        type=Path,
        help=f"where to save the PNG (default: {PLOT.relative_to(ROOT)}; with --quick, "
        f"{QUICK_PLOT.relative_to(ROOT)}, so a quick run never replaces the README's plot)",
    )
    parser.add_argument("--json", type=Path, help="also save the raw results here")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=PARTS,
        help="run only these parts (the plot is saved only with warm)",
    )
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL_S3"] = moto_url
    os.environ["MODEL_BUCKET"] = "bench"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bench")
    bench = Bench(s3, "bench", args.quick)

    print(f"machine: {machine()}", flush=True)
    bandwidth = read_bandwidth()
    print(f"read bandwidth (1 thread, 1 GiB, best of 5): {bandwidth / 1e9:.1f} GB/s", flush=True)
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    dims_list = [64] if args.quick else [64, 128]
    threads = [1] if args.quick else [1, 2]

    batch: list[dict[str, Any]] = []
    overhead: dict[str, float] = {}
    cold: list[dict[str, Any]] = []
    if "warm" in args.only:
        print("\n== warm GetRecommendations, top-25 (p50 / p99 ms)", flush=True)
        warm_latency(bench, bandwidth, sizes, dims_list, threads)
    if "batch" in args.only:
        print("\n== batch, top-25", flush=True)
        batch = batch_throughput(
            [100_000] if args.quick else [100_000, 1_000_000], [2] if args.quick else threads, args.quick
        )
    if "overhead" in args.only:
        print("\n== handler overhead", flush=True)
        overhead = handler_overhead(bench)
    if "cold" in args.only:
        print(
            "\n== cold start (fresh process, model in local S3) and peak RSS after 50 warm requests",
            flush=True,
        )
        cold = cold_start(bench, moto_url, [100_000] if args.quick else [100_000, 1_000_000])
    server.stop()
    if "users" in args.only:
        print("\n== users at scale (benchmarks/user_scale.py)", flush=True)
        quick = ["--quick"] if args.quick else []
        subprocess.run([sys.executable, "-m", "benchmarks.user_scale", *quick], check=True)

    print(
        f"\nmachine: {machine()}; read bandwidth {bandwidth / 1e9:.1f} GB/s; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
    )
    if bench.rows:
        target = args.plot or (QUICK_PLOT if args.quick else PLOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        plot(bench.rows, target)
        print(f"plot: {target}\n")
        print(markdown(bench.rows))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "bandwidth": bandwidth,
                    "warm": bench.rows,
                    "batch": batch,
                    "overhead": overhead,
                    "cold": cold,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
