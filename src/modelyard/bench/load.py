"""The two ways a step drives load.

Closed loop (`--concurrency C`): C workers, each sending its next request when its last one is
answered; latency runs from each send. Open loop (`--rate R`): requests are scheduled R a
second (Poisson or evenly spaced arrivals) and sent at their time whatever the answers do; a
request's latency (and time to first token) runs from its *scheduled* time, so a server that
falls behind shows it in the percentiles rather than slowing the load down (coordinated
omission)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from modelyard.bench.clients import Client, Outcome
from modelyard.bench.options import Step
from modelyard.cli_progress import StepBar


@dataclass
class Sample:
    at: float  # seconds from the step's start to the request's send (scheduled, open loop)
    latency: float
    error: str = ""
    ttft: float | None = None
    itls: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0


@dataclass
class StepResult:
    step: Step
    seconds: float
    samples: list[Sample]


def sample(origin: float, step_start: float, outcome: Outcome) -> Sample:
    now = time.perf_counter()
    times = outcome.token_times
    return Sample(
        at=origin - step_start,
        latency=now - origin,
        error=outcome.error,
        ttft=times[0] - origin if times else None,
        itls=[b - a for a, b in itertools.pairwise(times)],
        output_tokens=outcome.output_tokens or len(times),
        prompt_tokens=outcome.prompt_tokens,
    )


class Budget:
    """How much of a step is left: until a deadline, or a number of requests."""

    def __init__(self, start: float, seconds: float, requests: int) -> None:
        self.deadline = start + seconds if not requests else float("inf")
        self.left = requests or -1

    def take(self, at: float) -> bool:
        if at >= self.deadline or self.left == 0:
            return False
        self.left -= 1
        return True


async def closed_loop(
    client: Client, concurrency: int, start: float, budget: Budget, out: list[Sample]
) -> None:
    counter = itertools.count()

    async def worker() -> None:
        while budget.take(origin := time.perf_counter()):
            outcome = await client.send(next(counter))
            out.append(sample(origin, start, outcome))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def open_loop(
    client: Client,
    rate: float,
    poisson: bool,
    start: float,
    budget: Budget,
    out: list[Sample],
    seed: int,
) -> None:
    """Requests due at `start` + the arrival gaps; one whose time has passed goes at once."""
    rng = np.random.default_rng(seed)
    due = start
    running: set[asyncio.Task[None]] = set()

    async def one(index: int, origin: float) -> None:
        outcome = await client.send(index)
        out.append(sample(origin, start, outcome))

    for index in itertools.count():
        if not budget.take(due):
            break
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(index, due))
        running.add(task)
        task.add_done_callback(running.discard)
        due += rng.exponential(1 / rate) if poisson else 1 / rate
    if running:
        await asyncio.gather(*running)


async def run_step(
    client: Client,
    step: Step,
    seconds: float,
    requests: int,
    *,
    poisson: bool = True,
    seed: int = 0,
    label: str = "",
) -> StepResult:
    samples: list[Sample] = []
    start = time.perf_counter()
    budget = Budget(start, seconds, requests)
    if step.mode == "concurrency":
        load: Awaitable[None] = closed_loop(client, int(step.load), start, budget, samples)
    else:
        load = open_loop(client, step.load, poisson, start, budget, samples, seed)
    bar = StepBar(label or step.label, requests or seconds, "req" if requests else "s")
    await _with_progress(load, bar, lambda: _progress(bar, samples, start, bool(requests)))
    return StepResult(step, time.perf_counter() - start, samples)


async def _with_progress(load: Awaitable[None], bar: StepBar, draw: Callable[[], None]) -> None:
    task = asyncio.ensure_future(load)
    try:
        while not task.done():
            await asyncio.wait([task], timeout=0.1)
            draw()
        await task
    finally:
        task.cancel()
        bar.done()


def _progress(bar: StepBar, samples: list[Sample], start: float, by_count: bool) -> None:
    elapsed = time.perf_counter() - start
    errors = sum(1 for s in samples if s.error)
    done = float(len(samples)) if by_count else elapsed
    bar.show(done, len(samples), len(samples) / elapsed if elapsed else 0.0, errors)
