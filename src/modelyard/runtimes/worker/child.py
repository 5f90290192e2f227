"""The worker process: `python -m modelyard.runtimes.worker.child FD` hosts one runtime.

It reads requests from the socket FD (wire.py) on an event loop and answers them: `load`
builds the runtime named in the request and loads it; `infer` and `stream` run it (a
synchronous runtime on a pool of `instance_count` threads, an asynchronous one on the loop),
each streamed response sent as soon as it is produced; `unload` frees it and ends the process.
Calls the model makes to other models (`ModelCalls`) go up the same socket to the server,
which runs them through its own core and answers. When the server goes away the worker exits.

Only what the hosted runtime imports is imported here (numpy and the runtime's own library),
so a worker starts in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
import os
import socket
import sys
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from modelyard.errors import FailedPrecondition, Internal
from modelyard.runtimes import Runtime, runtime_class
from modelyard.runtimes.worker import wire
from modelyard.runtimes.worker.wire import Arrays, Header
from modelyard.spec.calls import call_depth

T = TypeVar("T")
log = logging.getLogger("modelyard.worker")


class Worker:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.runtime: Runtime | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.shm = wire.Shm(wire.shm_prefix(f"c{os.getpid()}"))
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.calls = ChildCalls(self)
        self._writer: asyncio.StreamWriter | None = None

    async def serve(self) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=self.sock)
        self.calls.loop = asyncio.get_running_loop()
        while True:
            try:
                header, arrays = await wire.read(reader, self.shm)
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the server went away
            op = header["op"]
            if op == "unload":
                await self._unload(header["id"])
                return
            if op.startswith("c."):
                self.calls.answer(header, arrays)
            elif op == "cancel":
                task = self.tasks.get(header["id"])
                if task is not None:
                    task.cancel()
            else:
                self._start(header, arrays)

    def _start(self, header: Header, arrays: Arrays | None) -> None:
        handlers = {
            "load": self._load,
            "infer": self._infer,
            "many": self._many,
            "stream": self._stream,
        }
        ident = header["id"]
        call_depth.set(header.get("depth", 0))  # copied into the task: its calls carry it
        task = asyncio.create_task(handlers[header["op"]](ident, header, arrays or {}))
        self.tasks[ident] = task
        task.add_done_callback(lambda _: self.tasks.pop(ident, None))

    async def send(self, header: Header, arrays: Arrays | None = None) -> None:
        assert self._writer is not None
        self._writer.write(wire.encode(header, arrays, self.shm))
        await self._writer.drain()

    # ---- requests ------------------------------------------------------------------------

    async def _load(self, ident: int, header: Header, _: Arrays) -> None:
        try:
            down, up = header["rings"]
            self.shm.into, self.shm.out = wire.Ring(down), wire.Ring(up)
            config = wire.config_from_wire(header["config"])
            runtime = runtime_class(header["runtime"])(Path(header["path"]), config)
            runtime.calls = self.calls
            await asyncio.to_thread(runtime.load)
        except BaseException as exc:
            await self.send({"op": "error", "id": ident, **wire.error_header(exc)})
            return
        self.runtime = runtime
        self.pool = ThreadPoolExecutor(max(1, config.instance_count), "modelyard-worker")
        signature = runtime.signature()
        sig = None if signature is None else [[vars(s) for s in side] for side in signature]
        declared = runtime.declared_max_batch_size()
        await self.send({"op": "loaded", "id": ident, "sig": sig, "mbs": declared})

    async def _infer(self, ident: int, header: Header, inputs: Arrays) -> None:
        runtime = self._runtime()
        inputs = wire.request_from(header, inputs)
        try:
            if runtime.asynchronous:
                outputs = await runtime.infer_async(inputs)
            else:
                loop = asyncio.get_running_loop()
                work = functools.partial(contextvars.copy_context().run, runtime.infer, inputs)
                outputs = await loop.run_in_executor(self.pool, work)
            await self.send({"op": "result", "id": ident, **wire.response_header(outputs)}, outputs)
        except Exception as exc:  # the model's, or outputs the wire cannot carry
            await self.send({"op": "error", "id": ident, **wire.error_header(exc)})

    async def _many(self, ident: int, header: Header, arrays: Arrays) -> None:
        """A batch as a list of requests (`Runtime.infer_many`: Triton's execute(requests));
        each request's outputs or its own error go back in one frame."""
        runtime = self._runtime()
        try:
            parts = wire.unpack_many(header["reqs"], arrays)
            loop = asyncio.get_running_loop()
            work = functools.partial(contextvars.copy_context().run, runtime.infer_many, parts)
            results = await loop.run_in_executor(self.pool, work)
            specs, outputs = wire.pack_results(results)
            await self.send({"op": "result", "id": ident, "res": specs}, outputs)
        except Exception as exc:
            await self.send({"op": "error", "id": ident, **wire.error_header(exc)})

    async def _stream(self, ident: int, header: Header, inputs: Arrays) -> None:
        inputs = wire.request_from(header, inputs)
        try:
            async with contextlib.aclosing(self._responses(inputs)) as responses:
                async for outputs in responses:
                    item = {"op": "item", "id": ident, **wire.response_header(outputs)}
                    await self.send(item, outputs)
        except Exception as exc:
            await self.send({"op": "error", "id": ident, **wire.error_header(exc)})
            return
        await self.send({"op": "end", "id": ident})

    async def _responses(self, inputs: Arrays) -> AsyncGenerator[Arrays, None]:
        runtime = self._runtime()
        if runtime.asynchronous:
            async with contextlib.aclosing(runtime.infer_stream_async(inputs)) as stream:
                async for outputs in stream:
                    yield outputs
            return
        loop = asyncio.get_running_loop()
        iterator = iter(runtime.infer_stream(inputs))
        context = contextvars.copy_context()
        while True:
            item = await loop.run_in_executor(self.pool, context.run, _step, iterator)
            if item is None:
                return
            yield item

    async def _unload(self, ident: int) -> None:
        if self.runtime is not None:
            try:
                await asyncio.to_thread(self.runtime.unload)
            except Exception:
                log.exception("unloading the model failed")
        await self.send({"op": "unloaded", "id": ident})

    def _runtime(self) -> Runtime:
        if self.runtime is None:
            raise Internal("the worker has no model loaded")
        return self.runtime


class ChildCalls:
    """`ModelCalls` in a worker: each call goes up to the server, which runs it on its core."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Queue[tuple[Header, Arrays | None]]] = {}

    async def infer(
        self,
        model: str,
        inputs: Arrays,
        *,
        version: str = "",
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Arrays:
        _, arrays = await self._one(_request("infer", model, version, outputs, parameters), inputs)
        return arrays or {}

    async def infer_stream(
        self,
        model: str,
        inputs: Arrays,
        *,
        version: str = "",
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Arrays]:
        request = _request("stream", model, version, outputs, parameters)
        async with contextlib.aclosing(self._call(request, inputs)) as answers:
            async for header, arrays in answers:
                if header["op"] == "c.end":
                    return
                yield arrays or {}

    async def generate(self, model: str, prompt: str, **sampling: Any) -> str:
        request = {"kind": "generate", "model": model, "prompt": prompt, "sampling": sampling}
        header, _ = await self._one(request, None)
        return str(header["r"])

    async def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        header, _ = await self._one({"kind": "embed", "model": model, "texts": list(texts)}, None)
        vectors: list[list[float]] = header["r"]
        return vectors

    def blocking(self, call: Awaitable[T]) -> T:
        loop = self.loop
        if loop is None:
            raise FailedPrecondition("calls to other models are possible once the model serves")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise FailedPrecondition("blocking() waits from a thread; in async code use await")

        depth = call_depth.get()  # the depth of this thread's execution

        async def wait() -> T:
            call_depth.set(depth)
            return await call

        return asyncio.run_coroutine_threadsafe(wait(), loop).result()

    async def _one(self, request: Header, inputs: Arrays | None) -> tuple[Header, Arrays | None]:
        async with contextlib.aclosing(self._call(request, inputs)) as answers:
            async for answer in answers:
                return answer
        raise Internal("the server ended a call without an answer")

    async def _call(
        self, request: Header, inputs: Arrays | None
    ) -> AsyncGenerator[tuple[Header, Arrays | None], None]:
        """Send one call up; yield its answers until the last ("c.result" or "c.end")."""
        if self.worker.runtime is None:
            raise FailedPrecondition(
                "a model may call other models from predict(), not while it loads"
            )
        ident = next(self._ids)
        queue: asyncio.Queue[tuple[Header, Arrays | None]] = asyncio.Queue()
        self._waiting[ident] = queue
        try:
            header = {"op": "call", "id": ident, "depth": call_depth.get(), **request}
            await self.worker.send(header, inputs)
            while True:
                header, arrays = await queue.get()
                if header["op"] == "c.error":
                    raise wire.error_from(header)
                yield header, arrays
                if header["op"] != "c.item":
                    return
        finally:
            self._waiting.pop(ident, None)

    def answer(self, header: Header, arrays: Arrays | None) -> None:
        queue = self._waiting.get(header["id"])
        if queue is not None:
            queue.put_nowait((header, arrays))


def _step(iterator: Iterator[Arrays]) -> Arrays | None:
    return next(iterator, None)


def _request(
    kind: str,
    model: str,
    version: str,
    outputs: Sequence[str] | None,
    parameters: Mapping[str, Any] | None,
) -> Header:
    return {
        "kind": kind,
        "model": model,
        "version": version,
        "outputs": None if outputs is None else list(outputs),
        "parameters": dict(parameters or {}),
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    worker = Worker(socket.socket(fileno=int(sys.argv[1])))
    asyncio.run(worker.serve())
    if worker.pool is not None:
        stopping = threading.Thread(target=worker.pool.shutdown, daemon=True)
        stopping.start()
        stopping.join(1.0)
        if stopping.is_alive():  # a hung model's thread must not keep the process alive
            sys.stdout.flush()
            os._exit(0)


if __name__ == "__main__":
    main()
