"""One loaded model version as the core serves it.

The repository reads a version from disk into a config and a loaded runtime; the core builds
everything that serves it around them, at load time and in one place: the input contract and
statistics for every model; the generation engine (with its metrics observer) and the chat
template for a runtime that generates text; the batcher for every other model. A runtime
never builds any of these. A pipeline (`core/pipeline.py`) has no runtime: its steps' models
serve it.

A `ServedModel` also counts the leases that hold it (`core.models.ModelService.lease`): it is
never unloaded or evicted while one is held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from typing import Protocol

from modelyard.core import chat
from modelyard.core.batcher import Batcher, batch_policy
from modelyard.core.engine import Engine, Observer
from modelyard.core.stats import ModelStats
from modelyard.core.validate import Contract
from modelyard.errors import ModelLoadError
from modelyard.runtimes import Runtime, TextModel
from modelyard.spec.config import ModelConfig

log = logging.getLogger("modelyard.core")

#: Requests that may wait for a sequence slot before the engine answers "retry later".
DEFAULT_MAX_QUEUE = 256


class EngineWatch(Protocol):
    """Where engines report their measurements (the LLM metrics implement it)."""

    def attach(self, model: str, engine: Engine) -> Observer: ...

    def detach(self, model: str, engine: Engine) -> None: ...


class ServedModel:
    """One loaded version of a model, ready to serve: build it on a worker thread (it may
    compile a chat template and starts an engine thread), then call `serve` on the loop."""

    def __init__(
        self,
        name: str,
        version: int,
        config: ModelConfig,
        runtime: Runtime | None,
        watch: EngineWatch | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.config = config
        self.runtime = runtime
        self.stats = ModelStats()
        self.contract = Contract(config)
        self.batcher: Batcher | None = None
        self.text: TextModel | None = runtime if isinstance(runtime, TextModel) else None
        self.template: chat.ChatTemplate | None = None
        self.engine: Engine | None = None
        #: A pipeline's steps (no runtime, no batcher: its steps' models run them).
        self.pipeline = config.pipeline
        self._watch = watch
        self._leases = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.last_used = time.monotonic()
        if self.text is not None and self.text.backend is not None:
            self._build_generation(self.text)

    def _build_generation(self, text: TextModel) -> None:
        parameters = self.config.parameters
        self.template = chat.for_model(
            text.template_source(), parameters.get("chat_template"), self.name
        )
        backend = text.backend
        assert backend is not None
        engine = Engine(
            backend,
            name=self.name,
            max_waiting=_count(parameters.get("max_queue"), DEFAULT_MAX_QUEUE, "max_queue"),
            prefix_cache=_flag(parameters.get("prefix_cache"), True),
        )
        if self._watch is not None:
            engine.observer = self._watch.attach(self.name, engine)
        self.engine = engine
        if self.config.instance_count != backend.n_slots:
            self.config.instance_count = backend.n_slots
            self.config.reasons["instance_count"] = (
                f"one per sequence slot of the engine ({backend.n_slots}, n_seq_max)"
            )

    def serve(self, executor: Executor, max_threads: int = 0) -> None:
        """Start accepting requests (on the event loop): a tensor model's queue and batcher.
        A generator's KServe requests go to its engine instead; a pipeline has neither. A
        model whose executions run on the shared worker threads may hold at most
        `max_threads` of them at once (0: no cap), however many instances it asks for, so that
        no model can starve the others."""
        runtime = self.runtime
        if runtime is None:
            return
        runtime.serve()
        if self.engine is None:
            policy = batch_policy(self.config)
            cap = _thread_cap(self.config, max_threads)
            if not runtime.asynchronous and cap and policy.instances > cap:
                log.warning(
                    "model %s asks for %d instances; it may hold %d of the server's worker "
                    "threads (parameter max_threads)",
                    self.name,
                    policy.instances,
                    cap,
                )
                policy.instances = self.config.instance_count = cap
                self.config.reasons["instance_count"] = (
                    f"capped at {cap}, the worker threads one model may hold (max_threads)"
                )
            self.batcher = Batcher(runtime, executor, self.stats, policy)

    @property
    def ready(self) -> bool:
        """Whether it answers now: its runtime is up (a worker process is not restarting)
        and not every instance is hung past the model's execution_timeout_s."""
        hung = self.batcher is not None and self.batcher.hung
        return (self.runtime is None or self.runtime.ready) and not hung

    @property
    def threads_hung(self) -> int:
        """Shared worker threads held by this model's executions past their deadline."""
        if self.batcher is None or self.runtime is None or self.runtime.asynchronous:
            return 0
        return self.batcher.overdue()

    @property
    def generates(self) -> bool:
        return self.engine is not None

    @property
    def queue_depth(self) -> int:
        if self.engine is not None:
            return self.engine.waiting
        return self.batcher.queue_depth if self.batcher else 0

    # ---- leases ----------------------------------------------------------------------------

    @property
    def leases(self) -> int:
        """Requests, streams and sessions holding this version now."""
        return self._leases

    def hold(self) -> None:
        self._leases += 1
        self._idle.clear()
        self.last_used = time.monotonic()

    def release(self) -> None:
        self._leases -= 1
        self.last_used = time.monotonic()
        if self._leases == 0:
            self._idle.set()

    async def drain(self) -> None:
        """Wait until no lease holds this version."""
        await self._idle.wait()

    # ---- unloading -------------------------------------------------------------------------

    def stop(self) -> None:
        """Refuse what still waits (on the event loop, before draining)."""
        if self.batcher is not None:
            self.batcher.close()

    def close(self) -> None:
        """Stop the engine and free the runtime (blocking: on a worker thread, after
        `drain`)."""
        if self.engine is not None:
            self.engine.close()
            if self._watch is not None:
                self._watch.detach(self.name, self.engine)
            self.engine = None
        try:
            if self.runtime is not None:
                self.runtime.unload()
        except Exception:
            log.exception("unloading %s version %d failed", self.name, self.version)


def _thread_cap(config: ModelConfig, pool: int) -> int:
    """The model parameter `max_threads`, or by default half the pool (at least one)."""
    value = config.parameters.get("max_threads")
    if value is not None:
        return _count(value, 1, "max_threads")
    return max(1, pool // 2) if pool else 0


def _count(value: str | None, default: int, name: str) -> int:
    if value is None:
        return default
    if not value.strip().isdigit() or int(value) < 1:
        raise ModelLoadError(f"parameter {name} must be a positive integer, got {value!r}")
    return int(value)


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")
