"""Crash isolation: any runtime, run in its own worker process and proxied.

`WorkerRuntime` is the runtime the core sees; the real one (named by `hosted`) lives in a
child process (`child.py`), reached over a socket pair with arrays in shared memory
(`wire.py`). A worker that segfaults, exits or is killed fails its in-flight requests at once
with a 503 that says why, and is started again (the model reloaded, with backoff); the model
is not ready meanwhile. A request that runs past the model's `execution_timeout_s` gets a 504
and its worker is killed and restarted. Unloading the model unloads it in the worker (its
`unload` / `finalize` runs) and ends the process, killing it after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from pathlib import Path

from modelyard.errors import Internal, ModelLoadError, ModelyardError, Unavailable
from modelyard.runtimes.base import Arrays, Runtime, Signature
from modelyard.runtimes.worker.process import WorkerProcess
from modelyard.spec.config import ModelConfig

__all__ = ["UNLOAD_GRACE_S", "WorkerRuntime", "execution_timeout", "max_rss_bytes"]

log = logging.getLogger("modelyard.worker")

#: Seconds a worker may take to unload before it is killed.
UNLOAD_GRACE_S = 10.0
#: Seconds a replaced worker (max_rss_mb) has to finish its requests before it is unloaded.
RECYCLE_DRAIN_S = 60.0
#: Restart delays double from the first to the last after each failed start.
RESTART_DELAYS = (0.25, 30.0)


class WorkerRuntime(Runtime):
    """The server's proxy for a runtime that runs in a worker process."""

    name = "worker"
    asynchronous = True

    def __init__(self, path: Path, config: ModelConfig, hosted: str) -> None:
        super().__init__(path, config)
        self.hosted = hosted
        from modelyard.runtimes import runtime_class

        # Triton's Python backend takes a batch as a list of requests; so does its proxy.
        self.takes_request_lists = runtime_class(hosted).takes_request_lists
        self._declared: int | None = None
        self.timeout = execution_timeout(config.parameters.get("execution_timeout_s"))
        self.max_rss = max_rss_bytes(config.parameters.get("max_rss_mb"))
        self._memory_checked = 0.0
        self._recycling: asyncio.Task[None] | None = None
        self._process: WorkerProcess | None = None
        self._signature: Signature | None = None
        self._attached: asyncio.Task[None] | None = None
        self._restart: asyncio.Task[None] | None = None
        self._down = ""  # why the worker is down while it restarts
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def load(self) -> None:
        process = self._new_process()
        self._signature = process.start()
        self._declared = process.declared_max_batch_size
        self._process = process

    def signature(self) -> Signature | None:
        return self._signature

    def declared_max_batch_size(self) -> int | None:
        return self._declared

    @property
    def pid(self) -> int:
        """The worker's process id (0 while none runs)."""
        return self._process.pid if self._process is not None and not self._down else 0

    @property
    def ready(self) -> bool:
        return self._process is not None and not self._down and not self._closing

    def serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._process is not None:
            self._attached = asyncio.create_task(self._process.attach())

    # ---- inference -----------------------------------------------------------------------

    def infer(self, inputs: Arrays) -> Arrays:
        if self._loop is None:
            raise Internal(f"model {self.config.name!r}'s worker is not serving yet")
        return asyncio.run_coroutine_threadsafe(self.infer_async(inputs), self._loop).result()

    def infer_many(self, parts: list[Arrays]) -> list[Arrays | ModelyardError]:
        if self._loop is None:
            raise Internal(f"model {self.config.name!r}'s worker is not serving yet")
        many = self.infer_many_async(parts)
        return asyncio.run_coroutine_threadsafe(many, self._loop).result()

    async def infer_many_async(self, parts: list[Arrays]) -> list[Arrays | ModelyardError]:
        process = await self._live()
        try:
            return await process.infer_many(parts, self.timeout)
        finally:
            self._check_memory(process)

    async def infer_async(self, inputs: Arrays) -> Arrays:
        process = await self._live()
        try:
            return await process.infer(inputs, self.timeout)
        finally:
            self._check_memory(process)

    async def infer_stream_async(self, inputs: Arrays) -> AsyncGenerator[Arrays, None]:
        process = await self._live()
        try:
            async with contextlib.aclosing(process.stream(inputs, self.timeout)) as responses:
                async for outputs in responses:
                    yield outputs
        finally:
            self._check_memory(process)

    async def _live(self) -> WorkerProcess:
        if self._down or self._process is None:
            raise Unavailable(
                f"model {self.config.name!r}'s worker process is restarting after it died "
                f"({self._down or 'not started'}); retry shortly"
            )
        if self._attached is None:
            self.serve()
        assert self._attached is not None
        await self._attached
        return self._process

    # ---- deaths and restarts -------------------------------------------------------------

    def _new_process(self) -> WorkerProcess:
        process = WorkerProcess(self.hosted, self.path, self.config)
        process.calls = self.calls
        process.on_death = self._died
        return process

    def _died(self, process: WorkerProcess, reason: str) -> None:
        """On the event loop: the worker died; restart it unless the model is going away."""
        if self._closing or process is not self._process:
            return
        log.error("model %s's worker process died (%s); restarting", self.config.name, reason)
        self._down = reason
        self._restart = asyncio.create_task(self._restart_loop())

    async def _restart_loop(self) -> None:
        delay, longest = RESTART_DELAYS
        while not self._closing:
            process = self._new_process()
            try:
                await asyncio.to_thread(process.start)
                await process.attach()
            except Exception as exc:
                log.error("restarting model %s's worker failed: %s", self.config.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)
                continue
            self._process, self._attached = process, None
            self._attached = asyncio.create_task(_done())
            self._down = ""
            log.info("model %s's worker process restarted (pid %d)", self.config.name, process.pid)
            return

    # ---- memory --------------------------------------------------------------------------

    def _check_memory(self, process: WorkerProcess) -> None:
        """After an execution (at most twice a second): a worker grown past `max_rss_mb`
        is replaced, without failing a request (a model that leaks)."""
        now = time.monotonic()
        if self.max_rss is None or self._recycling is not None or now < self._memory_checked:
            return
        self._memory_checked = now + 0.5
        rss = process.rss_bytes()
        if rss > self.max_rss and process is self._process and not self._closing:
            reason = f"its memory ({rss >> 20} MiB) passed max_rss_mb ({self.max_rss >> 20})"
            self._recycling = asyncio.create_task(self._recycle(process, reason))

    async def _recycle(self, old: WorkerProcess, reason: str) -> None:
        """Start a new worker, send new requests to it, let the old one finish its requests,
        then unload it."""
        log.warning("replacing model %s's worker process: %s", self.config.name, reason)
        try:
            new = self._new_process()
            try:
                await asyncio.to_thread(new.start)
                await new.attach()
            except Exception as exc:
                log.error("model %s: a new worker did not start: %s", self.config.name, exc)
                return
            if self._closing or old is not self._process:
                await new.stop(UNLOAD_GRACE_S)
                return
            self._process, self._attached = new, asyncio.create_task(_done())
            with contextlib.suppress(TimeoutError):  # its requests finish, or time out
                await asyncio.wait_for(old.idle(), RECYCLE_DRAIN_S)
            await old.stop(UNLOAD_GRACE_S)
        finally:
            self._recycling = None

    # ---- unloading -----------------------------------------------------------------------

    def unload(self) -> None:
        """Blocking, on a worker thread: unload the model in the worker and end it."""
        self._closing = True
        loop = self._loop
        if loop is not None and loop.is_running():
            stop = asyncio.run_coroutine_threadsafe(self._stop(), loop)
            stop.result(UNLOAD_GRACE_S * 2 + 5)
        elif self._process is not None:
            self._process.stop_blocking(UNLOAD_GRACE_S)

    async def _stop(self) -> None:
        if self._restart is not None:
            self._restart.cancel()
        process = self._process
        if process is None:
            return
        if self._attached is not None:
            await asyncio.wait([self._attached])
            await process.stop(UNLOAD_GRACE_S)
        else:
            await asyncio.to_thread(process.stop_blocking, UNLOAD_GRACE_S)


async def _done() -> None:
    """An attach that has already happened."""


def max_rss_bytes(value: str | None) -> int | None:
    """The model parameter `max_rss_mb`: the memory a worker may grow to before it is
    replaced (unset or 0: no limit)."""
    if value is None or not value.strip():
        return None
    if not value.strip().isdigit():
        raise ModelLoadError(f"parameter max_rss_mb must be whole MiB (0: no limit), got {value!r}")
    return int(value) << 20 or None


def execution_timeout(value: str | None) -> float | None:
    """The model parameter `execution_timeout_s`: seconds one execution may take before its
    worker is killed and restarted (unset or 0: no limit)."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ModelLoadError(
            f"parameter execution_timeout_s must be seconds (0: no limit), got {value!r}"
        )
    return seconds or None
