"""Measure one configuration in-process: the model loaded as the server loads it
(`load_version`, the same batcher), driven by closed-loop clients on an event loop of its own
— the quick prune; no HTTP, so tiny models look faster here than through a front."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from modelyard.advisor.tuned import Figures
from modelyard.core.served import ServedModel
from modelyard.repository.loader import load_version
from modelyard.repository.scan import ModelSource
from modelyard.spec.config import ModelConfig
from modelyard.tuning.space import Settings, pinned_config, sample_inputs


@dataclass(frozen=True)
class Drive:
    """How long each concurrency is driven (seconds) and the concurrency of the load."""

    concurrency: int = 64
    c1_seconds: float = 0.3
    cn_seconds: float = 0.5
    warmup_seconds: float = 0.1


def measure(
    source: ModelSource,
    version: int,
    settings: Settings,
    drive: Drive,
    *,
    trust_pickle: bool = False,
    goal: str = "latency",
) -> tuple[Figures, ModelConfig]:
    """Load the model with `settings` pinned, drive it at 1 and `drive.concurrency` clients,
    unload it; its figures and its completed config."""
    candidate = ModelSource(
        source.name,
        source.path,
        source.layout,
        pinned_config(source.config, settings),
        dict(source.versions),
    )
    loaded = load_version(candidate, version, trust_pickle, None, goal)
    served = ServedModel(loaded.name, loaded.version, loaded.config, loaded.runtime)
    inputs = sample_inputs(loaded.config)
    threads = max(4, 2 * loaded.config.instance_count)
    try:
        with ThreadPoolExecutor(threads, "modelyard-tune") as executor:
            figures = asyncio.run(_drive(served, executor, inputs, drive))
    finally:
        served.close()
    return figures, loaded.config


async def _drive(
    served: ServedModel,
    executor: ThreadPoolExecutor,
    inputs: dict[str, np.ndarray],
    drive: Drive,
) -> Figures:
    served.serve(executor)
    batcher = served.batcher
    assert batcher is not None, "a tensor model has a batcher once it serves"

    async def client(until: float, latencies: list[float]) -> None:
        while time.perf_counter() < until:
            started = time.perf_counter()
            await batcher.submit(inputs, 1, {})
            latencies.append(time.perf_counter() - started)

    await client(time.perf_counter() + drive.warmup_seconds, [])
    lone: list[float] = []
    started = time.perf_counter()
    await client(started + drive.c1_seconds, lone)
    c1_rps = len(lone) / (time.perf_counter() - started)
    loaded: list[float] = []
    started = time.perf_counter()
    until = started + drive.cn_seconds
    await asyncio.gather(*(client(until, loaded) for _ in range(drive.concurrency)))
    elapsed = time.perf_counter() - started
    batcher.close()
    return Figures(
        rps=len(loaded) / elapsed,
        p50_ms=float(np.percentile(lone, 50)) * 1000,
        p99_ms=float(np.percentile(loaded, 99)) * 1000,
        concurrency=drive.concurrency,
        c1_rps=c1_rps,
        where="in-process",
    )
