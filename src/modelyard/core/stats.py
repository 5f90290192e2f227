"""Per model-version inference statistics, in the shape of KServe's statistics extension."""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


#: Upper bounds (seconds) of the latency histograms; batch sizes use powers of two.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Histogram:
    """Bucket counts kept on the hot path for a few nanoseconds; exported when scraped."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs in Prometheus' cumulative form, +Inf last."""
        running, out = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


@dataclass
class ModelStats:
    """Counters one model version accumulates; updated on the event loop thread only."""

    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    inline_execution_count: int = 0  # executions run on the event loop thread (core/batcher.py)
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, BatchStats] = field(default_factory=dict)
    request_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    queue_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    compute_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    batch_rows: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))

    def record_success(
        self, total_ns: int, queue_ns: int, input_ns: int, infer_ns: int, output_ns: int
    ) -> None:
        """One request answered (its batch's compute times count for it)."""
        self.last_inference_ms = int(time.time() * 1000)
        self.success.add(total_ns)
        self.queue.add(queue_ns)
        self.compute_input.add(input_ns)
        self.compute_infer.add(infer_ns)
        self.compute_output.add(output_ns)
        self.request_seconds.observe(total_ns / 1e9)
        self.queue_seconds.observe(queue_ns / 1e9)

    def record_execution(self, rows: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        """One run of the model over a batch of `rows` rows (one or more requests)."""
        self.inference_count += rows
        self.execution_count += 1
        per_batch = self.batches.setdefault(rows, BatchStats())
        per_batch.compute_input.add(input_ns)
        per_batch.compute_infer.add(infer_ns)
        per_batch.compute_output.add(output_ns)
        self.compute_seconds.observe((input_ns + infer_ns + output_ns) / 1e9)
        self.batch_rows.observe(rows)

    def record_failure(self, total_ns: int) -> None:
        self.last_inference_ms = int(time.time() * 1000)
        self.fail.add(total_ns)
        self.request_seconds.observe(total_ns / 1e9)

    def to_json(self, name: str, version: str) -> dict[str, Any]:
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.to_json(),
                "fail": self.fail.to_json(),
                "queue": self.queue.to_json(),
                "compute_input": self.compute_input.to_json(),
                "compute_infer": self.compute_infer.to_json(),
                "compute_output": self.compute_output.to_json(),
                "cache_hit": {"count": 0, "ns": 0},
                "cache_miss": {"count": 0, "ns": 0},
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": b.compute_input.to_json(),
                    "compute_infer": b.compute_infer.to_json(),
                    "compute_output": b.compute_output.to_json(),
                }
                for size, b in sorted(self.batches.items())
            ],
        }
