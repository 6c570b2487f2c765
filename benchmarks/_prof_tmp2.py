import benchmarks.environment  # noqa
import os, sys, time, logging
from contextlib import redirect_stdout
import boto3, numpy as np
from moto.server import ThreadedMotoServer
from threadpoolctl import threadpool_limits
from tests.utils import invoke
from benchmarks.events import recommendations_event
from benchmarks.bench import Bench, catalog, DEVNULL
from personalize_core.modelstore.store import get_store
from personalize_core.modelstore.item_matrix import ItemMatrix
from personalize_core.serving import native

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
with redirect_stdout(DEVNULL):
    invoke("get_recommendations", recommendations_event(arn, "u1", 25))
model = get_store().campaign(arn)[1]
served = model.item_factors
copy = ItemMatrix(served.planes.copy(), served.num_items, served.dims)
k = native.kernels()
res = {}


def run(name, f):
    a = time.perf_counter()
    f()
    res.setdefault(name, []).append(time.perf_counter() - a)


with threadpool_limits(1):
    for i in range(300):
        u = users[i]
        for nm, m in (("served", served), ("copy", copy)):

            def sel():
                s = k.selection(1, 25, np.array([0.05]))
                k.scan(m, u, False, selection=s)
                return s.take()

            run(nm, sel)
for nm, v in res.items():
    print("%-12s min %.3f p50 %.3f ms" % (nm, min(v) * 1e3, np.median(v) * 1e3))
print(served.planes.flags, served.planes.ctypes.data % 4096, copy.planes.ctypes.data % 4096)
server.stop()
