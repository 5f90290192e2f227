"""The per-model scheduler: a priority queue of requests, a dynamic batcher, instance slots.

Every model version has one `Batcher`. Requests wait in a heap ordered by (priority, arrival);
a scheduler task takes the head request, adds queued requests of the same shape signature up
to `max_batch_size` rows (waiting at most `max_queue_delay` for more when one is configured),
waits for a free instance slot, and runs the concatenated batch once on a worker thread. The
outputs are split back along the batch dimension; a failure fans out to every request of the
batch. Models without a batch dimension run one request per execution through the same queue,
so queue limits, priorities and timeouts apply to every model.

One future per request; deadlines use `time.monotonic()`; a request whose future is cancelled
(client gone, timeout) before its batch starts is dropped.

A lone request on an idle model may run on the event loop thread instead ("inline"): handing
an execution to a worker thread and its result back costs two thread wake-ups, about 80 µs on
a 2-core VM, which is most of a small model's latency. Only runtimes that declare themselves
`inline_safe` (library calls whose time follows the input size, not user code that may wait on
I/O) do so, only while nothing else is queued or running, and only for inputs of a size whose
recent lone executions ran within `inline_max_us` (decided over the last 16, see
core/inline.py); so the loop is rarely held much longer than that bound, and never under
concurrent load, where batches form.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import heapq
import itertools
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelyard.core.inline import DEFAULT_INLINE_SAMPLES, InlineGate
from modelyard.core.stats import ModelStats
from modelyard.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ModelLoadError,
    ModelyardError,
    ResourceExhausted,
    Unavailable,
)
from modelyard.runtimes import Arrays, Runtime
from modelyard.runtimes.worker import execution_timeout
from modelyard.spec.calls import call_depth
from modelyard.spec.config import ModelConfig

#: (queue, compute_input, compute_infer, compute_output) nanoseconds of one request.
Timing = tuple[int, int, int, int]
#: One execution: each request's outputs (or the error of that request alone), then input,
#: infer and output nanoseconds.
_Outcome = tuple[list[Arrays | ModelyardError], int, int, int]

#: Queue size used when a model's config sets none (Triton's 0 means unbounded; an unbounded
#: queue turns overload into ever-growing latency instead of a 429).
DEFAULT_MAX_QUEUE_SIZE = 1024

#: Longest execution a lone request may run inline on the event loop (model parameter
#: `inline_max_us`; 0 turns it off).
DEFAULT_INLINE_MAX_US = 250


@dataclass
class BatchPolicy:
    max_batch_size: int = 0  # 0: no batch dimension, one request per execution
    max_queue_delay_us: int = 0  # wait this long for a fuller batch (0: take what is queued)
    preferred_batch_sizes: list[int] = field(default_factory=list)
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    instances: int = 1
    priority_levels: int = 0
    default_priority: int = 0
    default_timeout_us: int = 0
    inline_max_us: int = DEFAULT_INLINE_MAX_US
    #: Lone executions of a size measured before it may run inline (core/inline.py).
    inline_samples: int = DEFAULT_INLINE_SAMPLES
    #: Seconds one execution may run before its requests fail with DEADLINE_EXCEEDED and
    #: the model counts as hung (None: no limit). A worker process is killed and restarted
    #: at this deadline by its runtime; a thread cannot be, so it keeps its slot until done.
    execution_timeout_s: float | None = None


def batch_policy(config: ModelConfig) -> BatchPolicy:
    """The scheduling policy a model's config asks for. Models with a batch dimension are
    batched even without a `dynamic_batching` section, with no added delay: whatever queued while
    the instances were busy runs together (set `max_batch_size: 0` to turn batching off)."""
    batching = config.dynamic_batching
    policy = BatchPolicy(
        max_batch_size=config.max_batch_size,
        instances=config.instance_count,
        inline_max_us=_inline_max_us(config.parameters.get("inline_max_us")),
        execution_timeout_s=execution_timeout(config.parameters.get("execution_timeout_s")),
    )
    if batching is not None:
        policy.max_queue_delay_us = batching.max_queue_delay_us
        policy.preferred_batch_sizes = list(batching.preferred_batch_sizes)
        policy.max_queue_size = batching.max_queue_size or DEFAULT_MAX_QUEUE_SIZE
        policy.priority_levels = batching.priority_levels
        policy.default_priority = batching.default_priority_level
        policy.default_timeout_us = batching.default_timeout_us
    return policy


def _inline_max_us(value: str | None) -> int:
    if value is None:
        return DEFAULT_INLINE_MAX_US
    if not value.strip().isdigit():
        raise ModelLoadError(
            f"parameter inline_max_us must be microseconds (0: off), got {value!r}"
        )
    return int(value)


@dataclass(eq=False, slots=True)
class _Request:
    inputs: Arrays
    rows: int
    signature: tuple[Any, ...]
    arrival_ns: int
    deadline: float | None
    future: asyncio.Future[tuple[Arrays, Timing]]
    depth: int = 0


class Batcher:
    def __init__(
        self, runtime: Runtime, executor: Executor, stats: ModelStats, policy: BatchPolicy
    ) -> None:
        self.runtime = runtime
        self.executor = executor
        self.stats = stats
        self.policy = policy
        self.slots = asyncio.Semaphore(policy.instances)
        self._heap: list[tuple[int, int, _Request]] = []
        self._order = itertools.count()
        self._queued_rows = 0
        self._running = 0  # executions started and not yet finished
        self._started: dict[int, float] = {}  # monotonic start of each running execution
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        target = max(policy.preferred_batch_sizes, default=policy.max_batch_size)
        self._target_rows = min(target, policy.max_batch_size) if policy.max_batch_size else 1
        levels = policy.priority_levels
        self._default_priority = (policy.default_priority or (levels + 1) // 2) if levels else 0
        limit_ns = policy.inline_max_us * 1000 if runtime.inline_safe else 0
        self._inline_gate = InlineGate(limit_ns, policy.inline_samples)

    @property
    def queue_depth(self) -> int:
        return len(self._heap)

    def overdue(self) -> int:
        """Executions running past the model's execution_timeout_s (hung ones)."""
        limit = self.policy.execution_timeout_s
        if limit is None:
            return 0
        now = time.monotonic()
        return sum(1 for t in list(self._started.values()) if now - t > limit)

    @property
    def hung(self) -> bool:
        """Every instance is held by an execution past its deadline: nothing can run."""
        return self.overdue() >= self.policy.instances

    async def submit(
        self, inputs: Arrays, rows: int, parameters: dict[str, Any], depth: int = 0
    ) -> tuple[Arrays, Timing]:
        """Queue one request; return its outputs and where its time went. `depth`: how deep
        in calls between models the request is (spec.calls.call_depth)."""
        if len(self._heap) >= self.policy.max_queue_size:
            raise ResourceExhausted(
                f"the queue of this model is full ({self.policy.max_queue_size} requests); "
                "retry later"
            )
        if parameters:
            priority = self._priority(parameters.get("priority"))
            timeout_us = _timeout_us(parameters.get("timeout"), self.policy.default_timeout_us)
        else:
            priority, timeout_us = self._default_priority, self.policy.default_timeout_us
        request = _Request(
            inputs,
            rows,
            _signature(inputs, self.policy.max_batch_size),
            time.perf_counter_ns(),
            time.monotonic() + timeout_us / 1e6 if timeout_us else None,
            asyncio.get_running_loop().create_future(),
            depth,
        )
        heapq.heappush(self._heap, (priority, next(self._order), request))
        self._queued_rows += rows
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._schedule())
        if request.deadline is None:
            return await request.future
        try:
            return await asyncio.wait_for(request.future, timeout_us / 1e6)
        except TimeoutError:
            raise DeadlineExceeded(
                f"request timed out after {timeout_us} µs (its 'timeout' parameter or the model's "
                "default_timeout_microseconds)"
            ) from None

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        while self._heap:
            _, _, request = heapq.heappop(self._heap)
            if not request.future.done():
                request.future.set_exception(
                    Unavailable(f"model {self.runtime.config.name!r} was unloaded")
                )

    def _priority(self, value: Any) -> int:
        levels = self.policy.priority_levels
        if value is None or value == 0:
            return self._default_priority
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > levels:
            raise InvalidArgument(
                f"priority must be an integer from 1 (highest) to {levels}, got {value!r}"
                if levels
                else "this model has no priority levels (dynamic_batching priority_levels)"
            )
        return value

    # ---- the scheduler task ----------------------------------------------------------------

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._heap:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self.slots.acquire()
            if self.policy.max_queue_delay_us:
                await self._wait_for_fuller_batch()
            batch = self._take()
            if not batch:
                self.slots.release()
                continue
            self._running += 1
            started = time.perf_counter_ns()
            parts = [r.inputs for r in batch]
            if self._inline(batch):
                self.stats.inline_execution_count += 1
                try:
                    result: _Outcome | BaseException = _execute(self.runtime, parts)
                except Exception as exc:  # fans out to the batch, as from a worker
                    result = exc
                self._finish(batch, started, result, inline=True)
                continue
            future: asyncio.Future[_Outcome]
            context = _at_depth(max(r.depth for r in batch))
            if self.runtime.asynchronous:  # awaited on the loop: no thread per execution
                future = context.run(asyncio.ensure_future, _execute_async(self.runtime, parts))
            else:
                work = functools.partial(context.run, _execute, self.runtime, parts)
                future = loop.run_in_executor(self.executor, work)
                self._watch(loop, future, batch)
            future.add_done_callback(functools.partial(self._settle, batch, started))

    def _watch(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], batch: list[_Request]
    ) -> None:
        """Track a thread's execution; past the execution timeout, fail its requests (the
        thread keeps the slot until it returns: the model's cap on threads holds)."""
        key = id(future)
        self._started[key] = time.monotonic()
        future.add_done_callback(lambda _: self._started.pop(key, None))
        limit = self.policy.execution_timeout_s
        if limit is None:
            return
        error = DeadlineExceeded(
            f"model {self.runtime.config.name!r} ran past its execution_timeout_s ({limit:g} s); "
            "it is not ready until the execution returns"
        )
        handle = loop.call_later(limit, _fail, batch, error)
        future.add_done_callback(lambda _: handle.cancel())

    def _inline(self, batch: list[_Request]) -> bool:
        """Whether this batch runs on the event loop thread: a lone request with nothing else
        queued or running, of a size whose recent lone executions ran within the limit."""
        return (
            len(batch) == 1
            and not self.runtime.asynchronous
            and self._running == 1
            and not self._heap
            and self._inline_gate.allows(_elements(batch[0].inputs))
        )

    async def _wait_for_fuller_batch(self) -> None:
        oldest = min(r.arrival_ns for _, _, r in self._heap)
        until = oldest + self.policy.max_queue_delay_us * 1000
        while self._queued_rows < self._target_rows:
            remaining = (until - time.perf_counter_ns()) / 1e9
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Request]:
        """Pop the head request and every queued request that fits its batch."""
        batch: list[_Request] = []
        later: list[tuple[int, int, _Request]] = []
        rows, now = 0, time.monotonic()
        limit = self.policy.max_batch_size or 1
        while self._heap and rows < limit:
            entry = heapq.heappop(self._heap)
            request = entry[2]
            self._queued_rows -= request.rows
            if request.future.done():
                continue
            if request.deadline is not None and now > request.deadline:
                request.future.set_exception(DeadlineExceeded("request timed out in the queue"))
                continue
            if batch and (
                request.signature != batch[0].signature
                or rows + request.rows > limit
                or not self.policy.max_batch_size
            ):
                later.append(entry)
                if len(later) > 8:
                    break
                continue
            batch.append(request)
            rows += request.rows
        for entry in later:
            heapq.heappush(self._heap, entry)
            self._queued_rows += entry[2].rows
        return batch

    def _settle(self, batch: list[_Request], started: int, future: asyncio.Future[Any]) -> None:
        """A worker thread's execution ended (called on the event loop)."""
        error = future.exception()
        self._finish(batch, started, future.result() if error is None else error)

    def _finish(
        self,
        batch: list[_Request],
        started: int,
        result: _Outcome | BaseException,
        inline: bool = False,
    ) -> None:
        """An execution ended (`inline`: on the loop's thread): its outputs go to each
        request, or its error to all of them."""
        self._running -= 1
        self.slots.release()
        if self._heap:
            self._wakeup.set()
        if isinstance(result, BaseException):
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(result)
            return
        outputs, input_ns, infer_ns, output_ns = result
        if len(batch) == 1:
            took = input_ns + infer_ns + output_ns
            self._inline_gate.measured(_elements(batch[0].inputs), took, inline)
        self.stats.record_execution(sum(r.rows for r in batch), input_ns, infer_ns, output_ns)
        for request, arrays in zip(batch, outputs, strict=True):
            if request.future.done():
                continue
            if isinstance(arrays, ModelyardError):  # this request's own error (infer_many)
                request.future.set_exception(arrays)
            else:
                timing = (started - request.arrival_ns, input_ns, infer_ns, output_ns)
                request.future.set_result((arrays, timing))


def _at_depth(depth: int) -> contextvars.Context:
    """The context an execution runs in: it carries the batch's call depth, for the calls
    its model makes (spec.calls)."""
    context = contextvars.copy_context()
    if context.get(call_depth, 0) != depth:
        context.run(call_depth.set, depth)
    return context


def _fail(batch: list[_Request], error: Exception) -> None:
    for request in batch:
        if not request.future.done():
            request.future.set_exception(error)


def _elements(inputs: Arrays) -> int:
    return sum(array.size for array in inputs.values())


def _signature(inputs: Arrays, max_batch_size: int) -> tuple[Any, ...]:
    skip = 1 if max_batch_size else 0
    if len(inputs) == 1:
        ((name, a),) = inputs.items()
        return ((name, a.dtype.str, a.shape[skip:]),)
    return tuple((name, a.dtype.str, a.shape[skip:]) for name, a in sorted(inputs.items()))


def _timeout_us(value: Any, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(
            f"timeout must be a non-negative integer of microseconds, got {value!r}"
        )
    return value


def _execute(runtime: Runtime, parts: list[Arrays]) -> _Outcome:
    """On a worker thread: concatenate, run once, split back. Returns outputs and timings."""
    t0 = time.perf_counter_ns()
    if runtime.takes_request_lists:
        return runtime.infer_many(parts), 0, time.perf_counter_ns() - t0, 0
    if len(parts) == 1:
        results = runtime.infer(parts[0])
        t1 = time.perf_counter_ns()
        return [results], 0, t1 - t0, 0
    joined = _join(parts)
    t1 = time.perf_counter_ns()
    results = runtime.infer(joined)
    t2 = time.perf_counter_ns()
    return _split_back(results, parts, t0, t1, t2)


async def _execute_async(runtime: Runtime, parts: list[Arrays]) -> _Outcome:
    """`_execute` for an asynchronous runtime, on the event loop."""
    t0 = time.perf_counter_ns()
    if runtime.takes_request_lists:
        return await runtime.infer_many_async(parts), 0, time.perf_counter_ns() - t0, 0
    if len(parts) == 1:
        results = await runtime.infer_async(parts[0])
        return [results], 0, time.perf_counter_ns() - t0, 0
    joined = _join(parts)
    t1 = time.perf_counter_ns()
    results = await runtime.infer_async(joined)
    t2 = time.perf_counter_ns()
    return _split_back(results, parts, t0, t1, t2)


def _join(parts: list[Arrays]) -> Arrays:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _split_back(results: Arrays, parts: list[Arrays], t0: int, t1: int, t2: int) -> _Outcome:
    sizes = [len(next(iter(p.values()))) for p in parts]
    split: list[Arrays | ModelyardError] = [*_split(results, sizes)]
    return split, t1 - t0, t2 - t1, time.perf_counter_ns() - t2


def _split(results: Arrays, sizes: list[int]) -> list[Arrays]:
    total = sum(sizes)
    for name, array in results.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise Internal(
                f"output {name!r} has shape {list(array.shape)} for a batch of {total} rows; a "
                "batched model must return one row per input row (or set max_batch_size: 0)"
            )
    bounds = np.cumsum([0, *sizes])
    return [
        {name: array[bounds[i] : bounds[i + 1]] for name, array in results.items()}
        for i in range(len(sizes))
    ]
