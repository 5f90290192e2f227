"""The Ray Serve application built from a modelyard repository.

One deployment per model (`model-NAME`, replicas of `ModelReplica`, options from the model's
config by `scaling.py`) and one ingress deployment (`modelyard`) running `RayFront` (HTTP) and
`RayKServeGRPC` (KServe v2 gRPC) over their handles. `build_app` is the application builder
Ray's own tools call:

    serve run modelyard.ray:build_app repository=/models
    serve deploy config.yaml      # import_path: modelyard.ray:build_app, args: {repository: ...}

and `modelyard serve REPO --ray [ADDRESS]` deploys the same application (`run`).

Each deployment carries a version made from what its replicas load (`model_version`):
deploying the application again, after a model got a new version folder or config, makes Ray
roll that model's replicas one by one (Ray's rolling update) and leaves the others, and the
ingress, running.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from modelyard.advisor.apply import advise_config, estimate_for, with_config
from modelyard.advisor.inspect import inspect_artifact
from modelyard.core.types import InferRequest, InferResponse
from modelyard.errors import InvalidArgument, ModelyardError, Unavailable
from modelyard.fronts.kserve_grpc import serve_servicer
from modelyard.ray.ingress import Coalescer, Message, RayFront
from modelyard.ray.kserve_grpc import RayKServeGRPC, with_rpcs
from modelyard.ray.metrics import MetricsBoard, board_name, exposition
from modelyard.ray.replica import Answer, ModelReplica, ReplicaOptions
from modelyard.ray.scaling import Placement, deployment_options, slots_of, threads_of
from modelyard.repository.scan import ModelSource, scan
from modelyard.spec.pipeline import PipelineSpec

log = logging.getLogger("modelyard.ray")

#: The application's name in Ray Serve and its route prefix.
APP_NAME = "modelyard"
#: Requests one ingress replica holds at once (through Ray's proxy).
INGRESS_ONGOING = 4096
#: Ray's access log writes a line per call in every replica: CPU each request pays for.
QUIET = {"enable_access_log": False}
#: Most KServe requests the ingress sends to a replica in one Ray call.
GROUP = 64
#: The builder args the ingress itself takes.
OWN = ("host", "port", "grpc_port", "max_request_bytes", "grpc_max_message_bytes")
#: Tensor bytes of a group of KServe requests up to which it crosses inline, in Ray's
#: inter-deployment gRPC call (`_by_reference=False`); a larger group goes by reference,
#: through Ray's object store, where each array is stored once and read on the replica's node
#: without a copy. Inline costs less per call: c=64 one-row requests to one replica, 3.2k
#: req/s by reference, 4.0k inline (docs/ray.md).
INLINE_BYTES = 1 << 20
#: Times a request whose replica died is sent again (to a live one).
RETRIES = 2
#: Errors of a replica that went away.
GONE = (ActorDiedError, ActorUnavailableError, RayActorError)
#: Seconds the ingress's own gRPC calls get to finish when it stops.
GRPC_GRACE_S = 2.0
#: `ingress_node: head`: the ingress on Ray's head node, by the resource Ray gives that node.
HEAD = "head"
HEAD_RESOURCE = "node:__internal_head__"


class HandleRemote:
    """A model's deployment handle as the ingress's `Remote`."""

    def __init__(self, name: str, handle: DeploymentHandle[Any]) -> None:
        self.name = name
        self.handle = handle
        self.inline = handle.options(_by_reference=False)
        self.streaming = handle.options(stream=True)
        self.coalescer = Coalescer(self._infer_many, GROUP)

    async def infer(self, request: InferRequest) -> InferResponse:
        return await self.coalescer.infer(request)

    async def _infer_many(self, requests: list[InferRequest]) -> list[Answer]:
        """Run a group of requests on a replica; one that dies holding it hands the group to
        another (Ray routes the retry to a live replica): inference is a function of its
        inputs, so a request the dead replica had started runs again rather than fails."""
        size = sum(array.nbytes for request in requests for array in request.inputs.values())
        handle = self.inline if size <= INLINE_BYTES else self.handle
        answers: list[Answer] = await self._call("infer_many", requests, handle=handle)
        return answers

    async def grpc(self, method: str, request: Any) -> Any:
        """A KServe gRPC call run by a replica (retried elsewhere if it dies, as above)."""
        return await self._call("grpc", method, request)

    async def _call(
        self, method: str, *args: Any, handle: DeploymentHandle[Any] | None = None
    ) -> Any:
        for attempt in range(RETRIES + 1):
            try:
                return await getattr(handle or self.handle, method).remote(*args)
            except GONE as exc:
                if attempt == RETRIES:
                    message = f"model {self.name!r}: its replicas went away ({exc})"
                    raise Unavailable(message) from exc
                log.warning("model %s: a replica went away (%s); retrying", self.name, exc)
        raise AssertionError("unreachable")

    async def infer_stream(self, request: InferRequest) -> AsyncIterator[InferResponse]:
        """A request's responses as the replica produces them; its error raised here."""
        async for answer in self._stream(self.streaming, "infer_stream", request):
            if isinstance(answer, ModelyardError):
                raise answer
            yield answer

    async def http(
        self, scope: dict[str, Any], body: bytes, affinity: str | None = None
    ) -> AsyncIterator[Message]:
        """Forward an HTTP request (its ASGI messages come back as sent). `affinity` travels
        as the call's session id, read by the deployment's router (`routing.AffinityRouter`;
        Ray's default router ignores it)."""
        handle = self.streaming.options(session_id=affinity) if affinity else self.streaming
        async for message in self._stream(handle, "http", scope, body):
            yield message

    async def _stream(
        self, handle: DeploymentHandle[Any], method: str, *args: Any
    ) -> AsyncIterator[Any]:
        """A streaming call, retried elsewhere if its replica dies before answering (a stream
        cut after its first message ends there, as a dropped connection would)."""
        for attempt in range(RETRIES + 1):
            answered = False
            try:
                stream = getattr(handle, method).remote(*args)
                assert isinstance(stream, DeploymentResponseGenerator)  # stream=True
                async for message in stream:
                    answered = True
                    yield message
                return
            except GONE as exc:
                if answered or attempt == RETRIES:
                    raise
                log.warning("model %s: a replica went away (%s); retrying", self.name, exc)


#: A model's replicas: `ModelReplica`, deployed (named `model-NAME` per model).
ModelDeployment = serve.deployment(name="model")(ModelReplica)
#: The replicas' metrics reports, one actor per application (`metrics.py`); no CPU reserved.
BoardActor = ray.remote(num_cpus=0)(MetricsBoard)


class ClusterMetrics:
    """The ingress's `/metrics`: what every replica last reported to the application's board.
    The board is started here, owned by the first ingress replica (it goes when the
    application does); another ingress replica whose board went with its owner starts a new
    one, which the replicas fill within a period."""

    def __init__(self, app: str) -> None:
        self.name = board_name(app)
        self.board = self._board()

    def _board(self) -> Any:
        return BoardActor.options(name=self.name, get_if_exists=True).remote()

    async def __call__(self) -> bytes:
        try:
            families = await self.board.families.remote()
        except GONE:
            self.board = await asyncio.to_thread(self._board)
            families = await self.board.families.remote()
        return exposition(families)


@with_rpcs
class Ingress:
    """The ingress deployment: modelyard's `RayFront` over the models' handles, behind Ray's
    HTTP proxy, and on its own port too when `port` is given (past the proxy); KServe v2 gRPC
    (`RayKServeGRPC`) behind Ray's gRPC proxy, which calls the methods named after its RPCs
    (`with_rpcs`), and on its own port too when `grpc_port` is given."""

    async def __init__(  # type: ignore[misc] # Ray awaits an async constructor
        self, handles: dict[str, DeploymentHandle[Any]], options: dict[str, Any]
    ) -> None:
        remotes = {name: HandleRemote(name, handle) for name, handle in handles.items()}
        metrics = ClusterMetrics(serve.get_replica_context().app_name)
        limit = int(options.get("max_request_bytes", 64 << 20))
        self.front = RayFront(remotes, limit, metrics)
        self.grpc = RayKServeGRPC(self.front, int(options.get("grpc_max_message_bytes", 64 << 20)))
        self.server: Any = None
        self.grpc_server: Any = None
        if options.get("grpc_port"):  # bound first: a port in use fails before HTTP starts
            host = str(options.get("host", "127.0.0.1"))
            self.grpc_server = serve_servicer(self.grpc, host, int(options["grpc_port"]))
            await self.grpc_server.start()
        if options.get("port"):
            self.server = await _own_port(self.front, options)

    def __serve_build_asgi_app__(self) -> RayFront:
        """The app `serve.ingress()` serves behind Ray's proxy, built after `__init__`."""
        return self.front

    async def __del__(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.grpc_server is not None:
            await self.grpc_server.stop(GRPC_GRACE_S)


IngressDeployment = serve.deployment(name="ingress")(serve.ingress()(Ingress))


def build_app(args: dict[str, Any]) -> serve.Application:
    """The application for the repository `args["repository"]` (Ray's builder protocol).

    Other args: `models` (comma-separated names; default every model), `trust_pickle`,
    `workers` (each replica's threads), `host` and `port` (the ingress also serves there,
    past Ray's HTTP proxy), `grpc_port` (KServe v2 gRPC there, past Ray's gRPC proxy),
    `ingress_node` (the node IP the ingress runs on, or `head`), `max_request_bytes`,
    `grpc_max_message_bytes`."""
    repository = Path(str(args.get("repository") or "")).expanduser()
    if not repository.is_dir():
        raise InvalidArgument(f"repository {str(repository)!r} is not a folder")
    sources = scan([repository])
    wanted = _names(args.get("models"), sources)
    replica = ReplicaOptions(
        trust_pickle=_flag(args.get("trust_pickle")),
        workers=int(args.get("workers", 0)),
        max_request_bytes=int(args.get("max_request_bytes", 64 << 20)),
    )
    handles = {name: _model_deployment(sources, name, repository, replica) for name in wanted}
    own = {k: args[k] for k in OWN if k in args}
    ingress = IngressDeployment.options(
        **_ingress_options(args),
        version=_fingerprint(sorted(handles), sorted(own.items())),
        _internal=True,  # Ray keeps `version` for its own use; see `model_version`
    )
    return ingress.bind(handles, own)


def _ingress_options(args: dict[str, Any]) -> dict[str, Any]:
    """The ingress holds every request in flight (Ray's default of 5 would queue the rest in
    the proxy) and, given a node, runs there (where `modelyard serve --ray` said it serves),
    reserving no CPU: there it is the node's front, as a plain server's event loop shares
    the cores with its models (a reservation kept it from starting beside a model that
    reserves every core)."""
    options: dict[str, Any] = {"max_ongoing_requests": INGRESS_ONGOING, "logging_config": QUIET}
    node = str(args.get("ingress_node") or "")
    if node:
        resource = HEAD_RESOURCE if node == HEAD else f"node:{node}"
        options["ray_actor_options"] = {"num_cpus": 0, "resources": {resource: 0.001}}
    return options


def _model_deployment(
    sources: dict[str, ModelSource], name: str, repository: Path, replica: ReplicaOptions
) -> serve.Application:
    source = sources[name]
    options = deployment_options(source.config, _placement(source))
    log.info("model %s on Ray: %s", name, options)
    with warnings.catch_warnings():
        # metrics_interval_s, when the autoscaling section sets it: deprecated, yet Ray 2.60's
        # only way to have replicas report faster than every 10 s
        warnings.filterwarnings("ignore", "The `metrics_interval_s`", DeprecationWarning)
        deployment = ModelDeployment.options(
            name=f"model-{name}",
            logging_config=QUIET,
            version=model_version(sources, name, replica),
            _internal=True,
            **options,
        )
    application: serve.Application = deployment.bind(str(repository), name, replica)
    return application


def model_version(sources: dict[str, ModelSource], name: str, replica: ReplicaOptions) -> str:
    """The version of a model's deployment: a digest of what its replicas load (its config,
    its version files' names, sizes and times; a pipeline's steps too) and how (the replica
    options). Ray restarts a deployment's replicas, rolling, when its version changes, and
    only then: the same application deployed again keeps the models that did not change
    running (Ray would otherwise draw a new version for every deployment, each time)."""
    names = [name, *(sources[name].config.pipeline or PipelineSpec()).models]
    seen = [sources[n] for n in dict.fromkeys(names) if n in sources]
    parts = [(s.name, repr(s.config), sorted(_files(s.versions))) for s in seen]
    return _fingerprint(parts, replica)


def _files(versions: dict[int, Path]) -> list[tuple[int, str, int, int]]:
    out = []
    for number, path in versions.items():
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in (f for f in files if f.is_file()):
            stat = file.stat()
            out.append((number, str(file), stat.st_size, stat.st_mtime_ns))
    return out


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _placement(source: ModelSource) -> Placement:
    """The advisor's view of the model before it loads: threads, memory estimate, and
    whether (and how many sequences at once) it generates text."""
    latest = max(source.versions, default=None)
    if latest is None or source.config.pipeline is not None:
        return Placement()
    artifact = source.versions[latest]
    try:
        config = advise_config(source.config.replace(reasons={}), artifact)
        memory = estimate_for(source.config, artifact).total
        generates = with_config(inspect_artifact(artifact), source.config).generates_text
    except ModelyardError:
        return Placement()
    return Placement(
        memory_bytes=memory,
        threads=threads_of(config),
        generates_text=generates,
        slots=slots_of(config),
    )


def _names(value: Any, sources: dict[str, ModelSource]) -> list[str]:
    names = [n.strip() for n in str(value or "").split(",") if n.strip()] or sorted(sources)
    missing = [n for n in names if n not in sources]
    if missing:
        raise InvalidArgument(f"no models {missing} in the repository; it has {sorted(sources)}")
    broken = [n for n in names if sources[n].error]
    return [n for n in names if n not in broken] if len(broken) < len(names) else names


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


async def _own_port(front: RayFront, options: dict[str, Any]) -> Any:
    import uvicorn

    config = uvicorn.Config(
        front,
        host=str(options.get("host", "127.0.0.1")),
        port=int(options["port"]),
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if task.done():
        task.result()  # the port could not be bound: the replica fails to start, saying why
    return server
