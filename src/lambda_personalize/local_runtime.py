"""The whole stack on a laptop, without Docker: ``lambda-personalize run`` (and ``make run``).

1. an embedded AWS (moto's server) on loopback, holding the buckets, tables and queues that
   ``template.yaml`` declares, created from the template's own Properties;
2. a demo model published through the CLI's code (one campaign per recipe), unless disabled;
3. every function of the template loaded as Lambda loads it (``CodeUri`` + ``Handler``), with
   the environment the template gives it (Globals + its own, intrinsics resolved); its ``Api``
   events become routes of a local HTTP server that builds API Gateway proxy events, and its
   ``SQS`` events get a poller that drives it with SQS events;
4. the console page at ``/console``.

All functions share this one process (like ``sam local start-api`` with warm containers), so
they share one environment: two functions that set the same variable differently are refused
at start rather than silently served with the wrong value. The serving code reaches the
embedded AWS only through boto3's standard ``AWS_ENDPOINT_URL`` variables and fake
credentials, so a real AWS account is never touched.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from personalize_core.events.table import get_events_table
from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.settings import get_observability, get_settings

from .console import console_routes
from .demo_data import DemoSpec, ensure_demo_data, publish_demo
from .demo_training import train_demo
from .local_api import Handler, LocalApiServer
from .local_iam import install_policy_simulator, signer_identity
from .local_resources import create_resources
from .template import SQS_QUEUE, FunctionSpec, LocalTemplate, QueueTrigger, Stack, TemplateError

DEFAULT_PORT = 3000  # SAM's `sam local start-api` port
DEFAULT_AWS_PORT = 5050
DEFAULT_DATA_DIR = Path(".local/demo")
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
}
#: Services whose endpoint variables are set explicitly (AWS_ENDPOINT_URL covers the rest).
_SERVICES = ("S3", "STS", "DYNAMODB", "SQS", "SCHEDULER", "IAM", "FIREHOSE")


class LocalRuntimeError(Exception):
    """The local runtime cannot start (a busy port, a template it cannot serve)."""


class Poller(Protocol):
    """What the runtime needs of an SQS poller (``lambda_personalize.sqs_poller.SqsPoller``)."""

    def start(self) -> object: ...

    def stop(self) -> object: ...


#: (queue_url, handler, function_name, batch_size) -> a poller that calls handler with SQS events.
PollerFactory = Callable[[str, Handler, str, int], Poller]


def sqs_poller_factory(queue_url: str, handler: Handler, function_name: str, batch_size: int) -> Poller:
    # Imported only when the template has an SQS-triggered function.
    module = importlib.import_module("lambda_personalize.sqs_poller")
    poller: Poller = module.SqsPoller(queue_url, handler, function_name, batch_size=batch_size)
    return poller


@dataclass
class RuntimeOptions:
    template: Path = Path("template.yaml")
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    aws_port: int = DEFAULT_AWS_PORT
    data_dir: Path = DEFAULT_DATA_DIR
    demo: DemoSpec | None = field(default_factory=DemoSpec)  # None: publish nothing
    stack: str = "lambda-personalize-local"
    region: str = "us-east-1"
    account: str = "123456789012"  # moto's default account
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    verbose: bool = False
    #: Environments per SQS-driven function (None: the machine's CPUs, at least 2), each capped by its
    #: event source's MaximumConcurrency.
    sqs_environments: int | None = None


# -- loading handlers as Lambda does -------------------------------------------------------------


def load_handler_module(code_uri: Path, module: str, environment: int = 0) -> ModuleType:
    """``<code_uri>/<module>.py`` as its own module (every function's file is called app.py).

    The module is registered as ``functions_<folder>_<module>``, so loading it twice (the
    runtime and a test) gives the same module and the same registered state. ``environment`` > 0
    loads another instance (``..._env<n>``): another execution environment of the same function,
    with its own module state, as Lambda runs concurrent invocations in separate environments.
    """
    name = f"functions_{code_uri.name}_{module}" + (f"_env{environment}" if environment else "")
    if name in sys.modules:
        return sys.modules[name]
    path = code_uri / f"{module}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LocalRuntimeError(f"cannot load {path}")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    # Lambda puts CodeUri on sys.path: a function's sibling modules import as top-level modules.
    sys.path.insert(0, str(code_uri))
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        sys.path.remove(str(code_uri))
    return loaded


def load_handler(function: FunctionSpec, environment: int = 0) -> Handler:
    module, _, attribute = function.handler.rpartition(".")
    if not module:
        raise LocalRuntimeError(f"{function.logical_id}: Handler {function.handler!r} is not module.function")
    loaded = load_handler_module(function.code_uri, module.replace(".", "/"), environment)
    handler: Handler = getattr(loaded, attribute)
    return handler


def default_environments() -> int:
    """How many environments an SQS-driven function gets locally when not told: what the machine can
    run side by side (its CPUs, at least 2, so two jobs overlap as they do on Lambda)."""
    return max(2, os.cpu_count() or 1)


def queue_environments(trigger: QueueTrigger, wanted: int | None) -> int:
    """Environments polling one queue: ``wanted`` (default: the machine's), at most the template's
    MaximumConcurrency for that event source, as Lambda caps it."""
    count = default_environments() if wanted is None else max(1, wanted)
    return min(count, trigger.maximum_concurrency) if trigger.maximum_concurrency else count


def merged_environment(functions: list[FunctionSpec]) -> dict[str, str]:
    """One environment for every function; refuses variables that functions set differently."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for function in functions:
        for name, value in function.environment.items():
            if name in merged and merged[name] != value:
                raise LocalRuntimeError(
                    f"{owner[name]} and {function.logical_id} set {name} differently "
                    f"({merged[name]!r} vs {value!r}); the local runtime runs every function in one "
                    "process and needs one value"
                )
            merged[name], owner[name] = value, function.logical_id
    return merged


def forget_settings() -> None:
    """The environment changed: settings read before it (by a test, a benchmark, the CLI in the same
    process) must be read again, or the functions would run on the old ones."""
    get_settings.cache_clear()
    get_observability.cache_clear()


def check_port_free(host: str, port: int, what: str, flag: str) -> None:
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise LocalRuntimeError(
                f"{what} port {host}:{port} is in use: choose another with {flag}"
            ) from None


# -- the runtime -----------------------------------------------------------------------------------


class LocalRuntime:
    def __init__(self, options: RuntimeOptions, poller_factory: PollerFactory = sqs_poller_factory) -> None:
        self.options = options
        self.poller_factory = poller_factory
        self.aws_url = ""
        self.api: LocalApiServer | None = None
        self.template: LocalTemplate | None = None
        self.functions: list[FunctionSpec] = []
        self.pollers: list[Poller] = []
        self.campaigns: dict[str, dict[str, Any]] = {}
        #: The demo's event tracker ({eventTrackerArn, trackingId}), when the demo was trained.
        self.tracker: dict[str, str] = {}
        self.notes: list[str] = []
        self._moto: Any = None
        self._saved_environ: dict[str, str] | None = None

    @property
    def api_url(self) -> str:
        if self.api is None:
            raise LocalRuntimeError("the runtime is not started")
        return self.api.url

    @property
    def model_bucket(self) -> str:
        return merged_environment(self.functions).get("MODEL_BUCKET", "")

    def start(self) -> LocalRuntime:
        options = self.options
        check_port_free(options.host, options.port, "API", "--port")
        check_port_free(options.host, options.aws_port, "embedded AWS", "--aws-port")
        try:
            self._start_aws()
            self._saved_environ = dict(os.environ)
            self._apply_aws_environment()
            self._read_template()
            self._create_resources()
            self._apply_function_environment()
            routes = self._routes()
            trains = ("POST", "/") in routes and "RECORDS_TABLE" in os.environ
            if options.demo is not None and not trains:
                self._publish_demo(options.demo)  # a template without the data path: the CLI's way
            self._start_pollers()
            iam_routes = self.template.iam_auth_routes() if self.template is not None else set()
            self.api = LocalApiServer(
                routes,
                host=options.host,
                port=options.port,
                verbose=options.verbose,
                identity=lambda method, path, headers: (
                    signer_identity(headers, options.account) if (method, path) in iam_routes else {}
                ),
            )
            self.api.start()
            if options.demo is not None and trains:
                self._train_demo(options.demo)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        # All at once: each waits for its receive in flight (up to a second) or its invocation, and
        # one after the other they made Ctrl-C take seconds per function environment.
        def stop_poller(poller: Poller) -> None:
            with contextlib.suppress(Exception):
                poller.stop()

        stoppers = [threading.Thread(target=stop_poller, args=(p,), daemon=True) for p in self.pollers]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        self.pollers.clear()
        if self.api is not None:
            self.api.stop()
            self.api = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self._saved_environ is not None:
            os.environ.clear()
            os.environ.update(self._saved_environ)
            self._saved_environ = None
            forget_settings()

    def wait(self, stop: threading.Event | None = None) -> None:
        """Serve until Ctrl-C (or until ``stop`` is set)."""
        event = stop or threading.Event()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: event.set())
        try:
            while not event.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass

    # -- steps -----------------------------------------------------------------------------------

    def _start_aws(self) -> None:
        from moto.server import ThreadedMotoServer

        # moto's server logs every request it serves; only --verbose wants that.
        logging.getLogger("werkzeug").setLevel(logging.INFO if self.options.verbose else logging.ERROR)
        self._moto = ThreadedMotoServer(
            ip_address=self.options.host, port=self.options.aws_port, verbose=False
        )
        self._moto.start()
        install_policy_simulator()  # IAM's SimulatePrincipalPolicy, which moto lacks (local_iam.py)
        host, port = self._moto.get_host_and_port()
        self.aws_url = f"http://{host}:{port}"

    def _apply_aws_environment(self) -> None:
        options = self.options
        for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_")]:
            del os.environ[name]
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(FAKE_CREDENTIALS)
        os.environ["AWS_ENDPOINT_URL"] = self.aws_url
        os.environ.update({f"AWS_ENDPOINT_URL_{service}": self.aws_url for service in _SERVICES})
        os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = options.region
        # No X-Ray daemon and no CloudWatch locally; --verbose prints the metrics as Lambda would log them.
        os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
        if not options.verbose:
            os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"

    def _read_template(self) -> None:
        options = self.options
        stack = Stack(options.stack, options.region, options.account, self.aws_url)
        self.template = LocalTemplate(options.template, stack, options.parameter_overrides)
        self.template.check_rules()  # as CloudFormation does before a deploy
        self.functions = self.template.functions()
        merged_environment(self.functions)  # refuse conflicting environments before doing anything

    def _session(self) -> Any:
        import boto3

        return boto3.session.Session(region_name=self.options.region)

    def _create_resources(self) -> None:
        assert self.template is not None
        self.notes += create_resources(self._session(), self.aws_url, self.template.local_resources())

    def _apply_function_environment(self) -> None:
        os.environ.update(merged_environment(self.functions))
        forget_settings()

    def _publish_demo(self, spec: DemoSpec) -> None:
        bucket = self.model_bucket
        if not bucket:
            raise LocalRuntimeError("the functions have no MODEL_BUCKET: nowhere to publish the demo")
        s3 = self._s3()
        try:
            s3.head_bucket(Bucket=bucket)
        except s3.exceptions.ClientError:
            # A ModelBucketName override names a bucket the template does not create: make it here.
            s3.create_bucket(Bucket=bucket)
        files, _ = ensure_demo_data(self.options.data_dir, spec)
        self.campaigns = publish_demo(
            ModelBucket(s3, bucket), files, self.options.region, self.options.account
        )

    def _train_demo(self, spec: DemoSpec) -> None:
        """The demo trained through Personalize's workflow on the running stack (demo_training.py)."""
        import boto3

        files, _ = ensure_demo_data(self.options.data_dir, spec)
        personalize = boto3.client(
            "personalize",
            endpoint_url=self.api_url,
            region_name=self.options.region,  # credentials: the fake ones this process set
        )
        data_bucket = f"{self.options.stack}-demo-data".lower()
        self.campaigns, self.tracker = train_demo(
            personalize, self._s3(), files, data_bucket, self.options.account
        )

    def _routes(self) -> dict[tuple[str, str], tuple[str, Handler]]:
        routes: dict[tuple[str, str], tuple[str, Handler]] = {}
        for function in self.functions:
            if not function.routes:
                continue
            handler = load_handler(function)
            for route in function.routes:
                methods = (
                    ("GET", "POST", "PUT", "DELETE", "PATCH") if route.method == "ANY" else (route.method,)
                )
                for method in methods:
                    if (method, route.path) in routes:
                        raise TemplateError(f"two functions serve {method} {route.path}")
                    routes[(method, route.path)] = (function.logical_id, handler)
        for key, value in console_routes(self.model_bucket, self._s3, get_events_table).items():
            routes.setdefault(key, value)  # a template route wins over the console
        return routes

    def _s3(self) -> Any:
        return self._session().client("s3", endpoint_url=self.aws_url)

    def _start_pollers(self) -> None:
        """Every SQS event source: as many pollers as the function gets environments, each calling
        its own instance of the handler module, so batch and training jobs overlap as on Lambda."""
        assert self.template is not None
        for function in self.functions:
            if not function.queues:
                continue
            sqs = self._session().client("sqs", endpoint_url=self.aws_url)
            environments = 0
            for trigger in function.queues:
                if self.template.resources[trigger.queue]["Type"] != SQS_QUEUE:
                    raise TemplateError(f"{function.logical_id}: {trigger.queue} is not a queue")
                queue_url = sqs.get_queue_url(QueueName=self.template.physical_names[trigger.queue])[
                    "QueueUrl"
                ]
                for _ in range(queue_environments(trigger, self.options.sqs_environments)):
                    handler = load_handler(function, environments)
                    environments += 1
                    poller = self.poller_factory(queue_url, handler, function.logical_id, trigger.batch_size)
                    poller.start()
                    self.pollers.append(poller)


# -- what `lambda-personalize run` prints -----------------------------------------------------------


def _aws_cli() -> str:
    candidate = Path(sys.executable).parent / "aws"
    if candidate.exists():
        with contextlib.suppress(ValueError):
            relative = os.path.relpath(candidate)
            if not relative.startswith(".."):
                return relative
        return str(candidate)
    return "aws"


def banner(runtime: LocalRuntime) -> Iterator[str]:
    url = runtime.api_url
    options = runtime.options
    yield f"Lambda Personalize is running locally (template: {options.template})"
    yield f"  API (every route of the template):  {url}"
    yield f"  Console:                            {url}/console"
    yield f"  Embedded AWS (moto):                {runtime.aws_url}   model bucket: {runtime.model_bucket}"
    for function in runtime.functions:
        served = ", ".join(f"{r.method} {r.path}" for r in function.routes)
        polled = ", ".join(f"SQS {q.queue}" for q in function.queues)
        yield f"  {function.logical_id}: {served or polled or 'no trigger served locally'}"
    for note in runtime.notes:
        yield f"  note: {note}"
    if runtime.campaigns:
        yield ""
        yield f"Demo campaigns (data in {options.data_dir}):"
        for name, published in runtime.campaigns.items():
            yield f"  {name:<28} {published['campaignArn']}"
    if runtime.tracker:
        yield f"  event tracker (dataset group demo): trackingId {runtime.tracker['trackingId']}"
    arn = {name: c["campaignArn"] for name, c in runtime.campaigns.items()}
    if {"demo-user-personalization", "demo-personalized-ranking", "demo-related-items"} <= set(arn):
        env = " ".join(f"{k}={v}" for k, v in FAKE_CREDENTIALS.items() if k != "AWS_SESSION_TOKEN")
        aws = f"{env} AWS_DEFAULT_REGION={options.region} {_aws_cli()} personalize-runtime"
        yield ""
        yield "Try it (any Personalize client works with --endpoint-url / endpoint_url):"
        yield (
            f"  $ {aws} get-recommendations --endpoint-url {url} "
            f"--campaign-arn {arn['demo-user-personalization']} --user-id user-3 --num-results 5"
        )
        yield (
            f"  $ {aws} get-recommendations --endpoint-url {url} "
            f"--campaign-arn {arn['demo-related-items']} --item-id item-5 --num-results 5"
        )
        yield (
            f"  $ {aws} get-personalized-ranking --endpoint-url {url} "
            f"--campaign-arn {arn['demo-personalized-ranking']} --user-id user-3 "
            "--input-list item-10 item-42 item-7"
        )
        body = f'{{"campaignArn": "{arn["demo-user-personalization"]}", "userId": "user-3", "numResults": 5}}'
        yield f"  $ curl -s {url}/recommendations -H 'Content-Type: application/json' -d '{body}'"
    if runtime.tracker and "demo-user-personalization" in arn:
        env = " ".join(f"{k}={v}" for k, v in FAKE_CREDENTIALS.items() if k != "AWS_SESSION_TOKEN")
        aws = f"{env} AWS_DEFAULT_REGION={options.region} {_aws_cli()}"
        events = '[{"eventId": "demo-1", "eventType": "watch", "itemId": "item-42", "sentAt": 1700000000}]'
        yield "Record an anonymous visitor's event, then recommend for the session:"
        yield (
            f"  $ {aws} personalize-events put-events --endpoint-url {url} "
            f"--tracking-id {runtime.tracker['trackingId']} --session-id visitor-1 --event-list '{events}'"
        )
        yield (
            f"  $ {aws} personalize-runtime get-recommendations --endpoint-url {url} "
            f"--campaign-arn {arn['demo-user-personalization']} --user-id visitor-1 --num-results 5"
        )
    yield ""
    yield "Press Ctrl-C to stop."
