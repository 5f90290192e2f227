"""Composition root: the core's model service, data plane and LLM sessions + the fronts ->
one ASGI app (the gRPC server is built from the same core in serving.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.core.calls import CoreCalls
from modelyard.core.dataplane import DataPlane
from modelyard.core.llm import LLMService
from modelyard.core.llm_metrics import LLMMetrics
from modelyard.core.metrics import ModelCollector
from modelyard.core.models import ModelService
from modelyard.fronts.auth import APIKeyMiddleware
from modelyard.fronts.console import BrowserHome, Console
from modelyard.fronts.cors import CORS, origin_pattern
from modelyard.fronts.http_common import error_response, guard, json_response, unexpected
from modelyard.fronts.kserve_generate import KServeGenerate
from modelyard.fronts.kserve_http import KServeHTTP
from modelyard.fronts.kserve_infer import InferEndpoint, infer_target
from modelyard.fronts.ollama import OllamaFront
from modelyard.fronts.ollama_models import OllamaModels
from modelyard.fronts.openai import OpenAIFront, openai_error
from modelyard.fronts.openai import error_body as openai_error_body
from modelyard.fronts.openapi import APIDocs
from modelyard.fronts.tgi import TGIFront
from modelyard.fronts.torchserve import TorchServeFront, torchserve_app
from modelyard.repository.residency import ResidencyPolicy
from modelyard.repository.store import PullPolicy
from modelyard.settings import Settings

log = logging.getLogger("modelyard.server")


class Modelyard:
    """One server instance: its model service, data plane, LLM sessions and ASGI app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.executor = ThreadPoolExecutor(settings.worker_threads, "modelyard-model")
        self.registry = CollectorRegistry()
        self.models = ModelService(
            settings.repositories,
            self.executor,
            control_mode=settings.model_control_mode,
            startup_models=settings.load_models,
            trust_pickle=settings.trust_pickle,
            residency=ResidencyPolicy(
                settings.default_keep_alive_s,
                settings.max_loaded_models,
                settings.memory_budget_bytes,
            ),
            watch=LLMMetrics(self.registry),
            keep_startup=settings.keep_alive_s is None,
            pull=PullPolicy(settings.pull_from, settings.pull_code),
            threads=settings.worker_threads,
            goal=settings.goal,
        )
        self.registry.register(ModelCollector(self.models))
        self.llm = LLMService(self.models, self.executor, stand_in=settings.tgi_model)
        self.dataplane = DataPlane(self.models, self.llm, self.executor)
        # Models call each other through the same data plane and LLM service (composition).
        self.calls = CoreCalls(self.dataplane, self.llm)
        self.models.calls = self.calls.bound
        self.app = self._build_app()

    def _build_app(self) -> ASGIApp:
        limit = self.settings.max_request_bytes
        kserve = KServeHTTP(self.dataplane, self.models, limit)
        generate = KServeGenerate(self.dataplane, self.models, limit)
        openai = OpenAIFront(self.llm, limit)
        ollama = OllamaFront(self.llm, self.models, limit)
        ollama_models = OllamaModels(self.models, limit)
        # TGI's /tokenize hands vLLM's requests (no `inputs`) on to the OpenAI front's.
        tgi = TGIFront(self.llm, limit, guard(openai.tokenize, openai_error_body))
        # GET / answers as Ollama's does ("Ollama is running"): clients probe it (a browser is
        # sent to /console by BrowserHome); POST / is TGI's compat route.
        routes = [
            *tgi.routes(),
            *ollama.routes(),
            *ollama_models.routes(),
            *kserve.routes(),
            *generate.routes(),
            *openai.routes(),
            *Console(self.models).routes(),
            Route("/metrics", self._metrics, methods=["GET"]),
        ]
        # /openapi.json describes `routes` as they are once these are added too
        routes += APIDocs(routes, secured=bool(self.settings.api_keys)).routes()
        self.routes: list[BaseRoute] = routes
        handlers = {HTTPException: _http_error, Exception: _unexpected}
        app: ASGIApp = Starlette(
            routes=routes, lifespan=self._lifespan, exception_handlers=handlers
        )
        app = _HotPath(app, InferEndpoint(self.dataplane, limit))
        if self.settings.api_keys:
            app = APIKeyMiddleware(app, keys=self.settings.api_keys)
        app = BrowserHome(app)  # a browser opening / sees the console (no key needed to go)
        return CORS(app, origin_pattern(self.settings.cors_origins))  # preflights need no key

    def torchserve_apps(self) -> tuple[ASGIApp, ASGIApp]:
        """TorchServe's inference and management APIs, each an app for a port of its own
        (no lifespan: the main app runs it), behind the same API keys."""
        front = TorchServeFront(self.dataplane, self.models, self.settings.max_request_bytes)
        apps: list[ASGIApp] = []
        for routes in (front.inference_routes(), front.management_routes()):
            app: ASGIApp = torchserve_app(routes)
            if self.settings.api_keys:
                app = APIKeyMiddleware(app, keys=self.settings.api_keys)
            apps.append(app)
        return apps[0], apps[1]

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.calls.loop = asyncio.get_running_loop()
        await self.models.start()
        tasks = [asyncio.create_task(self._reap())]
        if self.settings.model_control_mode == "poll":
            tasks.append(asyncio.create_task(self._poll()))
        _log_models(self.models)
        from modelyard.tuning.auto import watch

        # `tune: auto` models: measured after readiness, not before; later loads too
        settings = self.settings
        tasks.append(asyncio.create_task(watch(self.models, settings.goal, settings.trust_pickle)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await self.models.close()
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def _reap(self) -> None:
        """Unload idle models past their keep-alive, checking four times a second."""
        while True:
            await asyncio.sleep(0.25)
            try:
                await self.models.reap()
            except Exception:
                log.exception("unloading idle models failed")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.models.poll()
            except Exception:
                log.exception("polling the repository failed")

    async def _metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _HotPath:
    """Send KServe infer requests straight to their bare ASGI endpoint; all else to Starlette."""

    def __init__(self, app: ASGIApp, infer: InferEndpoint) -> None:
        self.app = app
        self.infer = infer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = infer_target(scope) if scope["type"] == "http" else None
        if target is None:
            await self.app(scope, receive, send)
        else:
            await self.infer(scope, receive, send, target)


def create_app(settings: Settings) -> ASGIApp:
    """The ASGI app for `settings`, to run under any ASGI server or mount in another app."""
    return Modelyard(settings).app


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, wrong method) in the shape of the API asked."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if request.url.path.startswith("/v1/"):
        body = openai_error(exc.status_code, exc.detail)
        return json_response(body, exc.status_code, headers)
    return json_response({"error": exc.detail}, exc.status_code, headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    """The last resort, for errors outside every front's guard."""
    return error_response(unexpected(exc, f"{request.method} {request.url.path}"))


def _log_models(models: ModelService) -> None:
    for name, entry in sorted(models.entries.items()):
        if not entry.versions:
            log.warning("model %s is %s: %s", name, entry.state, entry.reason)
            continue
        for version in entry.versions.values():
            config = version.config
            reason = config.reasons.get("runtime", "named in its config")
            log.info(
                "model %s version %d READY on runtime %s (%s); max_batch_size %d",
                name,
                version.version,
                config.runtime or config.platform,  # a pipeline: platform ensemble
                reason,
                config.max_batch_size,
            )
