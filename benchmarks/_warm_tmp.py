import benchmarks.environment  # noqa
import os, sys, logging
import boto3
from moto.server import ThreadedMotoServer
from benchmarks.bench import Bench, warm_latency, read_bandwidth

logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
os.environ["AWS_ENDPOINT_URL_S3"] = f"http://{host}:{port}"
os.environ["MODEL_BUCKET"] = "bench"
s3 = boto3.client("s3")
s3.create_bucket(Bucket="bench")
bench = Bench(s3, "bench", False)
bw = read_bandwidth()
print("bandwidth", bw / 1e9)
warm_latency(bench, bw, [int(x) for x in sys.argv[1].split(",")], [64], [1])
server.stop()
