"""Run a server process: uvicorn for every HTTP front, the KServe v2 gRPC server beside it in
the same event loop, and the start-up banner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.errors import FailedPrecondition, Unavailable
from modelyard.fronts.kserve_grpc import create_server, grpc_address
from modelyard.fronts.limits import (
    BodyBudget,
    BodyGuard,
    ConnectionCap,
    connection_cap,
    http_protocol,
    sweep,
)
from modelyard.server import Modelyard
from modelyard.settings import Settings
from modelyard.threads import bound_openmp_spin

log = logging.getLogger("modelyard")


def run(settings: Settings, *, demo: bool = False, started: float | None = None) -> None:
    bound_openmp_spin()  # before any model library loads OpenMP
    limits = settings.limits
    cap = ConnectionCap(connection_cap(limits.max_connections))
    budget = BodyBudget(limits.max_body_memory_bytes)
    server = Modelyard(settings)
    app = _WithGRPC(BodyGuard(server.app, budget), settings.shutdown_timeout_s)
    protocol = http_protocol(limits, cap)
    config = _config(app, settings, protocol, host=settings.host, port=settings.http_port)
    http = _Server(config, server, app, settings.shutdown_timeout_s)
    begin = started if started is not None else time.perf_counter()

    async def main() -> None:
        try:  # bind the gRPC port first, so a port in use fails before any model loads
            app.grpc = create_server(
                server.dataplane,
                server.models,
                settings.host,
                settings.grpc_port,
                api_keys=settings.api_keys,
                max_message_bytes=settings.grpc_max_message_bytes,
                limits=limits,
                cap=cap,
                budget=budget,
            )
        except OSError as exc:
            raise FailedPrecondition(f"{exc}; choose another --grpc-port") from None
        others = _more_ports(server, app, budget, settings, protocol)
        task = asyncio.create_task(http.serve())
        while not http.started and not task.done():
            await asyncio.sleep(0.01)
        if http.started:
            _banner(settings, demo, time.perf_counter() - begin)
            log.info(
                "limits: %d connections, %d bytes of request bodies in flight, headers %d "
                "bytes and %d fields, %g s to send headers, %g s for a body, %g s idle",
                cap.limit,
                budget.limit,
                limits.max_header_bytes,
                limits.max_headers,
                limits.header_timeout_s,
                limits.body_timeout_s,
                limits.idle_timeout_s,
            )
        watched = [http.server_state.connections]
        watched += [follower.server_state.connections for follower, _ in others]
        sweeper = asyncio.create_task(sweep(watched))
        try:
            if others:
                await _follow(http, others, task)
            await task
        finally:
            sweeper.cancel()

    _run_loop(main())


def _config(
    app: ASGIApp, settings: Settings, protocol: type[asyncio.Protocol], **where: Any
) -> uvicorn.Config:
    grace = settings.shutdown_timeout_s
    drain_s: Any = grace - _cut_margin(grace) / 2  # what is still running then is cancelled
    return uvicorn.Config(
        app,
        http=protocol,
        log_level=settings.log_level,
        access_log=False,
        timeout_keep_alive=settings.limits.idle_timeout_s,  # type: ignore[arg-type]
        timeout_graceful_shutdown=drain_s,
        log_config=None,
        **where,
    )


#: Seconds before the end of the shutdown grace at which streams still open are cut (each
#: gets its final error event; a quarter of the grace when that is less), and after its end
#: at which the process exits regardless.
CUT_S = 2.0
EXIT_MARGIN_S = 1.0


def _cut_margin(grace: float) -> float:
    return min(CUT_S, grace / 4)


class _Server(uvicorn.Server):
    """uvicorn's server with modelyard's shutdown: readiness (HTTP and gRPC) turns false
    first; the listeners close; requests in flight finish; near the end of the grace,
    generations still running are cut (each stream ends with its front's error event); then
    gRPC clients get GOAWAY and the models unload; when the grace is spent the process exits
    even if a model thread hangs (`run` owns its process)."""

    def __init__(
        self, config: uvicorn.Config, core: Modelyard, front: _WithGRPC, grace: float
    ) -> None:
        super().__init__(config)
        self.core = core
        self.front = front
        self.grace = grace

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        log.info(
            "shutting down: not ready; finishing requests in flight (%g s at most)", self.grace
        )
        _exit_after(self.grace + EXIT_MARGIN_S)
        self.core.models.drain()
        self.front.stop_accepting()
        when = self.grace - _cut_margin(self.grace)
        cut = asyncio.get_running_loop().call_later(when, self._cut)
        try:
            await super().shutdown(sockets)
        finally:
            cut.cancel()

    def _cut(self) -> None:
        error = Unavailable("the server is shutting down; retry the request")
        if cut := self.core.llm.cut(error):
            log.warning("shutdown grace nearly spent: ended %d running generations", cut)


def _exit_after(seconds: float) -> None:
    """End the process in `seconds` whatever still runs (a hung model thread)."""

    def exit_now() -> None:
        log.error("shutdown grace spent with work still running; exiting now")
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(1)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()


class _Follower(uvicorn.Server):
    """A second HTTP server on the same app: no lifespan (the first one runs it) and no signal
    handlers of its own (it stops when the first one does)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _more_ports(
    server: Modelyard,
    app: ASGIApp,
    budget: BodyBudget,
    settings: Settings,
    protocol: type[asyncio.Protocol],
) -> list[tuple[_Follower, socket.socket]]:
    """The servers of the other ports, their sockets bound now so a port in use fails at
    once: --ollama-port (every HTTP route again) and TorchServe's two."""
    wanted: list[tuple[int, str, ASGIApp]] = []
    if settings.ollama_port:
        wanted.append((settings.ollama_port, "--ollama-port", app))
    if settings.torchserve_port or settings.torchserve_management_port:
        inference, management = server.torchserve_apps()
        wanted += [
            (settings.torchserve_port, "--torchserve-port", BodyGuard(inference, budget)),
            (
                settings.torchserve_management_port,
                "--torchserve-management-port",
                BodyGuard(management, budget),
            ),
        ]
    followers = []
    for port, option, served in [w for w in wanted if w[0]]:
        sock = _bind(settings.host, port, option)
        followers.append((_Follower(_config(served, settings, protocol, lifespan="off")), sock))
    return followers


def _bind(host: str, port: int, option: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FailedPrecondition(f"{exc}; choose another {option}") from None
    return sock


async def _follow(
    first: uvicorn.Server,
    followers: list[tuple[_Follower, socket.socket]],
    first_task: asyncio.Task[None],
) -> None:
    tasks = [asyncio.create_task(f.serve(sockets=[sock])) for f, sock in followers]
    for _, sock in followers:
        log.info("also serving HTTP on %s:%d", *sock.getsockname()[:2])
    while not (first.should_exit or first_task.done() or any(t.done() for t in tasks)):
        await asyncio.sleep(0.1)
    for follower, _ in followers:
        follower.should_exit = True
    await asyncio.gather(*tasks)


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (uvicorn[standard] brings it): its socket writes and
    callbacks cost a fraction of asyncio's own loop on the request path."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    else:  # pragma: no cover - Python 3.10
        uvloop.install()
        asyncio.run(main)


class _WithGRPC:
    """The app, with the gRPC server started once the app has started (models loaded, before
    HTTP listens) and stopped before the app shuts down (models unloaded).

    At SIGTERM its listener closes at once, while the connections open keep answering (a
    client's readiness check says false); once HTTP has drained, they get GOAWAY and what
    is left of the grace."""

    def __init__(self, app: ASGIApp, grace: float) -> None:
        self.app = app
        self.grace = grace
        self.grpc: Any = None
        self.deadline: float | None = None  # loop time by which gRPC calls must end

    def stop_accepting(self) -> None:
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + self.grace - _cut_margin(self.grace) / 2
        if self.grpc is not None:
            self.grpc.close_listener()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" or self.grpc is None:
            await self.app(scope, receive, send)
            return
        grpc_server = self.grpc

        async def receive_stopping() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                now = asyncio.get_running_loop().time()
                deadline = self.deadline if self.deadline is not None else now + self.grace
                await grpc_server.stop(max(0.0, deadline - now))
            return message

        async def send_starting(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await grpc_server.start()
            await send(message)

        await self.app(scope, receive_stopping, send_starting)


_CONTROL = {
    "none": "every model loaded at start; the repository is locked (no load, unload, pull, "
    "copy or delete over the API)",
    "explicit": "the models named at start loaded; the API loads, unloads, pulls, copies and "
    "deletes",
    "poll": "every model loaded at start and reloaded when its files change; the API may not "
    "change the repository",
    "ondemand": "models load at start (those named) and at their first request; the API "
    "loads, unloads, pulls, copies and deletes; --model-control-mode none locks it",
}


def _banner(settings: Settings, demo: bool, seconds: float) -> None:
    url = f"http://{settings.host}:{settings.http_port}"
    log.info(
        "ready in %.2f s (pid %d): KServe v2 HTTP on %s, KServe v2 gRPC on %s",
        seconds,
        os.getpid(),
        url,
        grpc_address(settings.host, settings.grpc_port),
    )
    log.info("console: %s/console (in a browser), API document: %s/docs", url, url)
    log.info(
        "model control mode %s: %s",
        settings.model_control_mode,
        _CONTROL[settings.model_control_mode],
    )
    if demo:
        print(_TRY.format(url=url, host=f"{settings.host}:{settings.http_port}"), flush=True)


_TRY = """
modelyard is serving its demo models. Open {url}/console in a browser (every model, live
charts, a playground for each; the API document is at {url}/docs), or try:

  curl {url}/v2/repository/index -X POST
  curl {url}/v2/models/iris_onnx
  curl {url}/v2/models/iris_onnx/infer -d '{{"inputs":[{{"name":"x","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}}]}}'
  curl {url}/v2/models/iris_sklearn/infer -d '{{"inputs":[{{"name":"input","shape":[1,4],"datatype":"FP64","data":[6.7,3.0,5.2,2.3]}}]}}'
  curl {url}/v2/models/wordcount/infer -d '{{"inputs":[{{"name":"text","shape":[1,1],"datatype":"BYTES","data":["hello model yard"]}}]}}'

  python -c "import tritonclient.http as t, numpy as np; c=t.InferenceServerClient('{host}'); \\
i=t.InferInput('x',[1,4],'FP32'); i.set_data_from_numpy(np.array([[5.1,3.5,1.4,0.2]],np.float32)); \\
print(c.infer('iris_onnx',[i]).as_numpy('probabilities'))"

  # with the [llm] extra: Gemma 3 270M over the OpenAI API (a base model: completion reads best)
  curl {url}/v1/completions -d '{{"model":"gemma3","prompt":"The three primary colors are","max_tokens":16,"temperature":0}}'
  curl {url}/v1/chat/completions -d '{{"model":"gemma3","messages":[{{"role":"user","content":"Name a fruit."}}],"stream":true}}'

  # the same model over Ollama's API and commands (the ollama client works unchanged)
  curl {url}/api/generate -d '{{"model":"gemma3","prompt":"The three primary colors are","raw":true,"options":{{"num_predict":16}}}}'
  MODELYARD_HOST={host} modelyard run gemma3 --raw "The three primary colors are"

  modelyard list          # this server's language models; `modelyard list FOLDER` reads a folder
Stop with Ctrl-C.
"""
