"""The inline decision (core/inline.py) from many lone executions: the same at every start."""

from __future__ import annotations

import random

from modelyard.core.inline import InlineGate

LIMIT_NS = 250_000


def _start(seed: int, fast_ns: int, outlier_rate: float, runs: int = 64) -> bool:
    """One simulated start: `runs` lone executions of one size, a slow first one (warm-up)
    and random outliers of 2 ms; whether lone requests run inline at the end."""
    rng = random.Random(seed)
    gate = InlineGate(LIMIT_NS)
    gate.measured(16, 5_000_000)
    for _ in range(runs):
        slow = rng.random() < outlier_rate
        gate.measured(16, 2_000_000 if slow else int(fast_ns * rng.uniform(0.8, 1.5)))
    return gate.allows(16)


def test_a_fast_model_with_outliers_runs_inline_at_every_start() -> None:
    assert all(_start(seed, fast_ns=60_000, outlier_rate=0.05) for seed in range(200))


def test_a_model_over_the_limit_never_runs_inline() -> None:
    assert not any(_start(seed, fast_ns=400_000, outlier_rate=0.05) for seed in range(200))


def test_nothing_runs_inline_before_enough_samples() -> None:
    gate = InlineGate(LIMIT_NS, samples=16)
    for _ in range(15):
        gate.measured(16, 10_000)
    assert not gate.allows(16)
    gate.measured(16, 10_000)
    assert gate.allows(16)


def test_each_size_class_is_decided_apart_and_off_means_off() -> None:
    gate = InlineGate(LIMIT_NS, samples=2)
    for elements, ns in ((4, 10_000), (4, 10_000), (4000, 900_000), (4000, 900_000)):
        gate.measured(elements, ns)
    assert gate.allows(4) and gate.allows(7)  # 4..7 elements: one size class
    assert not gate.allows(8) and not gate.allows(4000)
    off = InlineGate(0, samples=1)
    off.measured(4, 1)
    assert not off.allows(4)


def test_a_model_slow_only_on_workers_ends_inline_at_every_start() -> None:
    """Runs on a worker at 300-450 µs (the thread handoff), 60 µs inline: decided from worker
    runs alone it would never run inline; probes find it out, at every start."""
    for seed in range(200):
        rng = random.Random(seed)
        gate = InlineGate(LIMIT_NS)
        for _ in range(160):
            inline = gate.allows(16)
            ns = 60_000 if inline else rng.randint(300_000, 450_000)
            gate.measured(16, ns, inline)
        assert gate.allows(16), seed
