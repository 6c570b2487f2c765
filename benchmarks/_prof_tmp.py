import benchmarks.environment  # noqa
import os, sys, time, cProfile, pstats, logging
from contextlib import redirect_stdout
import boto3, numpy as np
from moto.server import ThreadedMotoServer
from threadpoolctl import threadpool_limits
from tests.utils import invoke
from benchmarks.events import recommendations_event
from benchmarks.bench import Bench, catalog, DEVNULL

logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
os.environ["AWS_ENDPOINT_URL_S3"] = f"http://{host}:{port}"
os.environ["MODEL_BUCKET"] = "bench"
s3 = boto3.client("s3")
s3.create_bucket(Bucket="bench")
bench = Bench(s3, "bench", True)
n = int(sys.argv[1])
items, users = catalog(n, 64, 300)
arn = bench.publish(f"p{n}", items, users)
events = [recommendations_event(arn, f"u{u % 300}", 25) for u in range(400)]
with threadpool_limits(1), redirect_stdout(DEVNULL):
    invoke("get_recommendations", events[0])
    t = time.perf_counter()
    for e in events:
        invoke("get_recommendations", e)
    per = (time.perf_counter() - t) / len(events)
    prof = cProfile.Profile()
    prof.enable()
    for e in events:
        invoke("get_recommendations", e)
    prof.disable()
print("per request ms", per * 1e3)
st = pstats.Stats(prof)
st.sort_stats("tottime").print_stats(25)
server.stop()
