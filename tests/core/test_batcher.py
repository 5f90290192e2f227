"""The batcher in-process, with a fake runtime from the Runtime seam: where executions run
(worker thread or, for a lone short request on an idle model, the event loop thread)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from modelyard.core.batcher import Batcher, BatchPolicy, batch_policy
from modelyard.core.stats import ModelStats
from modelyard.errors import ModelLoadError, Unavailable
from modelyard.runtimes import Arrays, Runtime
from modelyard.spec.config import ModelConfig


class Recording(Runtime):
    """y = 2x; records the thread and the rows of every execution."""

    name = "recording"
    inline_safe: ClassVar[bool] = True

    def __init__(
        self, delay: float = 0.0, inline_safe: bool = True, slow_runs: frozenset[int] = frozenset()
    ) -> None:
        super().__init__(Path("recording"), ModelConfig(name="recording", max_batch_size=64))
        self.delay = delay
        self.slow_runs = slow_runs  # these executions (counted from 0) take SLOW seconds
        self.inline_safe = inline_safe  # type: ignore[misc]
        self.runs: list[tuple[int, int]] = []  # (thread id, rows)

    def load(self) -> None:
        pass

    def infer(self, inputs: Arrays) -> Arrays:
        delay = SLOW if len(self.runs) in self.slow_runs else self.delay
        if delay:
            time.sleep(delay)
        self.runs.append((threading.get_ident(), len(inputs["x"])))
        return {"y": inputs["x"] * 2}


def _row(value: float, width: int = 4) -> Arrays:
    return {"x": np.full((1, width), value, dtype=np.float32)}


async def _serve(runtime: Recording, policy: BatchPolicy, requests: list[list[Arrays]]) -> int:
    """Send each group of requests at once, one group after the other; the loop's thread id."""
    with ThreadPoolExecutor(2) as executor:
        batcher = Batcher(runtime, executor, ModelStats(), policy)
        for group in requests:
            results = await asyncio.gather(*(batcher.submit(r, 1, {}) for r in group))
            for request, (outputs, _) in zip(group, results, strict=True):
                np.testing.assert_array_equal(outputs["y"], request["x"] * 2)
        batcher.close()
    return threading.get_ident()


def _places(runtime: Recording, loop_thread: int) -> list[str]:
    return ["loop" if tid == loop_thread else "worker" for tid, _ in runtime.runs]


#: An inline limit no execution of the fake runtime reaches, even on a loaded CI machine (the
#: default 250 µs is not: a first execution may take longer there, and the test would measure
#: the machine's load instead of where the batcher runs work).
ROOMY = BatchPolicy(max_batch_size=64, inline_max_us=100_000, inline_samples=3)
#: An execution well past ROOMY's limit.
SLOW = 0.25


def test_lone_short_requests_run_on_the_loop_after_enough_measured_on_a_worker() -> None:
    runtime = Recording()
    loop_thread = asyncio.run(_serve(runtime, ROOMY, [[_row(k)] for k in range(5)]))
    assert _places(runtime, loop_thread) == ["worker"] * 3 + ["loop"] * 2


def test_a_slow_run_does_not_move_requests_off_the_loop_but_a_slow_trend_does() -> None:
    """Inline lone runs go back to a worker when most of the last 4 were over the limit, not
    at the first slow one (a pause, a collection)."""
    policy = BatchPolicy(max_batch_size=64, inline_max_us=100_000, inline_samples=4)
    runtime = Recording(slow_runs=frozenset({4, 5, 6}))
    loop_thread = asyncio.run(_serve(runtime, policy, [[_row(k)] for k in range(8)]))
    assert _places(runtime, loop_thread) == ["worker"] * 4 + ["loop"] * 3 + ["worker"]


def test_a_slow_first_run_does_not_decide() -> None:
    runtime = Recording(slow_runs=frozenset({0}))
    policy = BatchPolicy(max_batch_size=64, inline_max_us=100_000, inline_samples=10)
    loop_thread = asyncio.run(_serve(runtime, policy, [[_row(k)] for k in range(11)]))
    assert _places(runtime, loop_thread) == ["worker"] * 10 + ["loop"]


def test_concurrent_requests_batch_on_a_worker() -> None:
    runtime = Recording()
    groups = [[_row(0)], [_row(k) for k in range(8)]]
    loop_thread = asyncio.run(_serve(runtime, BatchPolicy(max_batch_size=64), groups))
    assert _places(runtime, loop_thread) == ["worker", "worker"]
    assert [rows for _, rows in runtime.runs] == [1, 8]


def test_larger_inputs_than_measured_go_to_a_worker() -> None:
    runtime = Recording()
    small = [[_row(k, width=4)] for k in range(4)]
    groups = [*small, [_row(9, width=400)], [_row(9, width=4)]]
    loop_thread = asyncio.run(_serve(runtime, ROOMY, groups))
    assert _places(runtime, loop_thread) == ["worker"] * 3 + ["loop", "worker", "loop"]


@pytest.mark.parametrize(
    ("runtime", "policy"),
    [
        (Recording(delay=0.002), BatchPolicy(max_batch_size=64, inline_samples=2)),  # > 250 µs
        (Recording(), BatchPolicy(max_batch_size=64, inline_max_us=0, inline_samples=2)),  # off
        (Recording(inline_safe=False), BatchPolicy(max_batch_size=64, inline_samples=2)),
    ],
    ids=["slow", "off", "not-inline-safe"],
)
def test_no_inline_runs(runtime: Recording, policy: BatchPolicy) -> None:
    loop_thread = asyncio.run(_serve(runtime, policy, [[_row(k)] for k in range(5)]))
    assert _places(runtime, loop_thread) == ["worker"] * 5


def test_inline_limit_comes_from_the_model_parameters() -> None:
    config = ModelConfig(name="m", max_batch_size=8, parameters={"inline_max_us": "1000"})
    assert batch_policy(config).inline_max_us == 1000
    assert batch_policy(ModelConfig(name="m")).inline_max_us == 250
    with pytest.raises(ModelLoadError, match="inline_max_us"):
        batch_policy(ModelConfig(name="m", parameters={"inline_max_us": "fast"}))


def test_requests_still_queued_when_the_model_unloads_get_unavailable() -> None:
    async def scenario() -> None:
        with ThreadPoolExecutor(1) as executor:
            runtime = Recording(delay=0.2)
            policy = BatchPolicy(max_batch_size=0, inline_max_us=0)
            batcher = Batcher(runtime, executor, ModelStats(), policy)
            running = asyncio.ensure_future(batcher.submit(_row(1), 1, {}))
            queued = asyncio.ensure_future(batcher.submit(_row(2), 1, {}))
            await asyncio.sleep(0.05)  # the first runs, the second waits for the instance
            batcher.close()
            with pytest.raises(Unavailable, match="was unloaded"):
                await queued
            running.cancel()

    asyncio.run(scenario())


class SlowOnWorkers(Recording):
    """Takes `delay` on a worker thread and no time on the loop's (the main) thread: a model
    whose handoff to a thread, not its work, is over the inline limit."""

    def infer(self, inputs: Arrays) -> Arrays:
        if threading.current_thread() is not threading.main_thread():
            time.sleep(self.delay)
        self.runs.append((threading.get_ident(), len(inputs["x"])))
        return {"y": inputs["x"] * 2}


def test_a_model_slow_only_on_workers_is_probed_inline_and_then_runs_there() -> None:
    """Worker runs over the limit (but within 4x) do not decide alone: every 16th lone request
    runs inline as a probe, and four quick probes start inline runs for good."""
    policy = BatchPolicy(max_batch_size=64, inline_max_us=5_000, inline_samples=2)
    runtime = SlowOnWorkers(delay=0.008)  # over 5 ms; within 4x even on a loaded machine
    loop_thread = asyncio.run(_serve(runtime, policy, [[_row(k)] for k in range(80)]))
    places = _places(runtime, loop_thread)
    assert places[:18] == ["worker"] * 16 + ["loop", "worker"]  # the first probe
    assert places.count("loop") > 4 and places[-10:] == ["loop"] * 10


def test_a_model_slow_everywhere_stays_on_workers_but_for_probes() -> None:
    policy = BatchPolicy(max_batch_size=64, inline_max_us=5_000, inline_samples=2)
    runtime = Recording(delay=0.008)
    loop_thread = asyncio.run(_serve(runtime, policy, [[_row(k)] for k in range(66)]))
    places = _places(runtime, loop_thread)
    probes = [at for at, place in enumerate(places) if place == "loop"]
    assert probes and all(at % 16 == 0 for at in probes)  # probes 16 apart, never more
