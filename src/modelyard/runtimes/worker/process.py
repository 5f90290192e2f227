"""The server's side of one worker process: start it, load the model in it, send it requests,
answer the calls it makes, notice when it dies, stop it.

`start` (blocking, on a worker thread) spawns the child and waits for its load; `attach` (on
the event loop) starts one reader task that routes every frame the child sends: answers to the
requests waiting on it (one queue per request, no thread per request) and calls to other
models, which run on the server's `ModelCalls`. When the socket ends, every waiting request
fails at once with the reason (the signal or exit code), and `on_death` is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import site
import socket
import subprocess
import sys
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

from modelyard.errors import (
    Code,
    DeadlineExceeded,
    FailedPrecondition,
    ModelLoadError,
    ModelyardError,
    Unavailable,
)
from modelyard.runtimes.worker import wire
from modelyard.runtimes.worker.wire import Arrays, Header
from modelyard.spec.calls import ModelCalls, call_depth
from modelyard.spec.config import ModelConfig, TensorSpec

log = logging.getLogger("modelyard.worker")

#: The folder holding the modelyard package, put on the worker's PYTHONPATH.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])
_serials = itertools.count()
_PAGE = os.sysconf("SC_PAGE_SIZE")
Answer = tuple[Header, Arrays | None]


class WorkerProcess:
    """One child process hosting one model version's runtime."""

    def __init__(self, runtime: str, path: Path, config: ModelConfig) -> None:
        self.runtime = runtime
        self.path = path
        self.config = config
        self.shm = wire.Shm(wire.shm_prefix(f"p{os.getpid()}-{next(_serials)}"))
        self.process: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.on_death: Callable[[WorkerProcess, str], None] | None = None
        self.calls: ModelCalls | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Queue[Answer]] = {}
        self._kill_reason = ""
        self._stopping = False
        self._calls: set[asyncio.Task[None]] = set()
        #: The max_batch_size the hosted model declares (Runtime.declared_max_batch_size).
        self.declared_max_batch_size: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    # ---- start (blocking) ----------------------------------------------------------------

    def start(self) -> tuple[list[TensorSpec], list[TensorSpec]] | None:
        """Spawn the worker and load the model in it; return the signature it reports."""
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", "modelyard.runtimes.worker.child", str(theirs.fileno())]
        with theirs:
            # Its own session: a Ctrl-C meant for the server must not kill the worker first
            # (the server unloads it); it ends by itself when the server's socket closes.
            self.process = subprocess.Popen(
                command, pass_fds=[theirs.fileno()], env=_environment(), start_new_session=True
            )
        self.sock = ours
        rings = [f"{self.shm.prefix}ring-down", f"{self.shm.prefix}ring-up"]
        self.shm.out, self.shm.into = (wire.Ring(path, create=True) for path in rings)
        request = {
            "op": "load",
            "id": 0,
            "runtime": self.runtime,
            "path": str(self.path),
            "config": wire.config_to_wire(self.config),
            "rings": rings,
        }
        try:
            ours.sendall(wire.encode(request))
            header, _ = wire.read_blocking(ours)
        except OSError:
            code = self.process.wait()
            raise ModelLoadError(
                f"model {self.config.name!r}'s worker process died while loading "
                f"({describe_exit(code)})"
            ) from None
        finally:
            wire.sweep(self.shm.prefix)  # the worker has opened the rings (or died)
        if header["op"] == "error":
            self.stop_blocking(5.0)
            raise ModelLoadError(str(header["msg"]))
        self.declared_max_batch_size = header.get("mbs")
        sig = header.get("sig")
        return None if sig is None else (wire.specs_from_wire(sig[0]), wire.specs_from_wire(sig[1]))

    # ---- serving (on the event loop) -----------------------------------------------------

    async def attach(self) -> None:
        """Start reading what the worker sends (once, on the event loop)."""
        assert self.sock is not None
        reader, self._writer = await asyncio.open_unix_connection(sock=self.sock)
        self._reader = asyncio.create_task(self._read(reader))

    async def infer(self, inputs: Arrays, timeout: float | None) -> Arrays:
        extra = wire.request_header(inputs)
        async with contextlib.aclosing(self._request("infer", inputs, timeout, extra)) as answers:
            async for header, arrays in answers:
                return wire.response_from(header, arrays or {})
        raise Unavailable(f"model {self.config.name!r}'s worker process ended the request")

    async def infer_many(
        self, parts: list[Arrays], timeout: float | None
    ) -> list[Arrays | ModelyardError]:
        """A batch as a list of requests; each request's outputs or its own error."""
        specs, arrays = wire.pack_many(parts)
        request = self._request("many", arrays, timeout, {"reqs": specs})
        async with contextlib.aclosing(request) as answers:
            async for header, outputs in answers:
                return wire.unpack_results(header["res"], outputs or {})
        raise Unavailable(f"model {self.config.name!r}'s worker process ended the request")

    async def stream(self, inputs: Arrays, timeout: float | None) -> AsyncGenerator[Arrays, None]:
        extra = wire.request_header(inputs)
        async with contextlib.aclosing(self._request("stream", inputs, timeout, extra)) as answers:
            async for header, arrays in answers:
                if header["op"] == "end":
                    return
                yield wire.response_from(header, arrays or {})

    async def _request(
        self, op: str, inputs: Arrays, timeout: float | None, extra: Header | None = None
    ) -> AsyncGenerator[Answer, None]:
        """Send one request; yield its answers up to the last ("result" or "end")."""
        ident = next(self._ids)
        queue: asyncio.Queue[Answer] = asyncio.Queue()
        self._waiting[ident] = queue
        finished = False
        try:
            try:
                header = {"op": op, "id": ident, "depth": call_depth.get(), **(extra or {})}
                await self._send(header, inputs)
            except (ConnectionError, OSError):  # it just died: the reader will say how
                if self._reader is None or self._reader.done():
                    raise Unavailable(
                        f"model {self.config.name!r}'s worker process is gone; restarting"
                    ) from None
            while True:
                header, arrays = await self._next(queue, timeout)
                if header["op"] == "error":
                    finished = True
                    raise wire.error_from(header)
                finished = header["op"] in ("result", "end", "unloaded")
                yield header, arrays
                if finished:
                    return
        finally:
            self._waiting.pop(ident, None)
            if not finished and self._writer is not None and not self._writer.is_closing():
                self._writer.write(wire.encode({"op": "cancel", "id": ident}))

    async def _next(self, queue: asyncio.Queue[Answer], timeout: float | None) -> Answer:
        if timeout is None:
            return await queue.get()
        try:
            return await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            self.kill(f"killed: a request ran past its execution_timeout_s ({timeout:g} s)")
            raise DeadlineExceeded(
                f"model {self.config.name!r} did not answer within its execution_timeout_s "
                f"({timeout:g} s); its worker process was killed and restarts"
            ) from None

    async def _send(self, header: Header, arrays: Arrays | None = None) -> None:
        if self._writer is None or self._writer.is_closing():
            raise Unavailable(f"model {self.config.name!r}'s worker process is gone")
        self._writer.write(wire.encode(header, arrays, self.shm))
        await self._writer.drain()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header, arrays = await wire.read(reader, self.shm)
                if header["op"] == "call":
                    task = asyncio.create_task(self._serve_call(header, arrays))
                    self._calls.add(task)
                    task.add_done_callback(self._calls.discard)
                    continue
                queue = self._waiting.get(header["id"])
                if queue is not None:
                    queue.put_nowait((header, arrays))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        await self._died()

    async def _died(self) -> None:
        """The socket ended: fail what waits, say why, clean up after the worker."""
        code = await asyncio.to_thread(self._wait, 10.0)
        reason = self._kill_reason or describe_exit(code)
        wire.sweep(self.shm.prefix)
        wire.sweep(wire.shm_prefix(f"c{self.pid}"))
        for task in list(self._calls):
            task.cancel()
        message = f"model {self.config.name!r}'s worker process died ({reason}); restarting"
        if self._stopping:
            message = f"model {self.config.name!r} was unloaded"
        error = {"op": "error", "code": Code.UNAVAILABLE.value, "msg": message}
        for queue in self._waiting.values():
            queue.put_nowait((error, None))
        if self.on_death is not None and not self._stopping:
            self.on_death(self, reason)

    # ---- calls from the model ------------------------------------------------------------

    async def _serve_call(self, header: Header, arrays: Arrays | None) -> None:
        ident = header["id"]
        call_depth.set(header.get("depth", 0))  # this task's: calls it makes are deeper
        try:
            if self.calls is None:
                raise FailedPrecondition("models may not call other models in this server")
            await self._run_call(self.calls, header, arrays or {})
        except Exception as exc:
            with contextlib.suppress(Exception):
                await self._send({"op": "c.error", "id": ident, **wire.error_header(exc)})

    async def _run_call(self, calls: ModelCalls, header: Header, arrays: Arrays) -> None:
        ident, kind, model = header["id"], header["kind"], header["model"]
        if kind == "generate":
            text = await calls.generate(model, header["prompt"], **header["sampling"])
            await self._send({"op": "c.result", "id": ident, "r": text})
        elif kind == "embed":
            vectors = await calls.embed(model, header["texts"])
            await self._send({"op": "c.result", "id": ident, "r": vectors})
        elif kind == "infer":
            out = await calls.infer(model, arrays, **_call_options(header))
            await self._send({"op": "c.result", "id": ident}, out)
        else:
            stream = calls.infer_stream(model, arrays, **_call_options(header))
            async for item in stream:
                await self._send({"op": "c.item", "id": ident}, item)
            await self._send({"op": "c.end", "id": ident})

    def rss_bytes(self) -> int:
        """The worker's resident memory (0 when it cannot be read)."""
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as statm:
                return int(statm.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            return 0

    async def idle(self) -> None:
        """Wait until no request waits on this worker."""
        while self._waiting:
            await asyncio.sleep(0.05)

    # ---- stopping ------------------------------------------------------------------------

    def kill(self, reason: str) -> None:
        """Kill the worker now (a hang); the reader then fails what waits with `reason`."""
        self._kill_reason = reason
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    async def stop(self, grace: float) -> None:
        """Unload the model (its unload/finalize runs), then end the worker; kill it when it
        takes longer than `grace` seconds."""
        self._stopping = True
        try:
            await asyncio.wait_for(self._unload(), grace)
        except Exception:
            log.warning("model %s's worker did not unload in %g s", self.config.name, grace)
        if await asyncio.to_thread(self._wait, grace) is None:
            self.kill("stopped")
        if self._reader is not None:
            await asyncio.wait([self._reader])

    async def _unload(self) -> None:
        async with contextlib.aclosing(self._request("unload", {}, None)) as answers:
            async for _ in answers:
                return

    def stop_blocking(self, grace: float) -> None:
        """`stop` from a thread, for a worker no event loop reads (never attached)."""
        self._stopping = True
        if self.sock is not None:
            try:
                self.sock.settimeout(grace)
                self.sock.sendall(wire.encode({"op": "unload", "id": 0}))
                wire.read_blocking(self.sock)
            except OSError:
                pass
            self.sock.close()
        if self._wait(grace) is None:
            self.kill("stopped")
            self._wait(grace)
        wire.sweep(self.shm.prefix)

    def _wait(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


def _environment() -> dict[str, str]:
    """The server's environment, with the folder holding this modelyard on PYTHONPATH when
    the interpreter would not find it by itself (a source checkout). An installed package is
    left alone: site-packages on PYTHONPATH would shadow the standard library."""
    env = dict(os.environ)
    installed = [*site.getsitepackages(), site.getusersitepackages()]
    if not any(os.path.realpath(p) == os.path.realpath(_PACKAGE_ROOT) for p in installed):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
    return env


def describe_exit(code: int | None) -> str:
    """How a worker ended, in words: `signal SIGSEGV`, `exit code 1`."""
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _call_options(header: Header) -> dict[str, Any]:
    return {
        "version": header.get("version") or "",
        "outputs": header.get("outputs"),
        "parameters": header.get("parameters") or None,
    }
