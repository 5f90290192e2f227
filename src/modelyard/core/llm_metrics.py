"""Prometheus metrics of the LLM engines, under the names vLLM users already chart
(`vllm:time_to_first_token_seconds`, ...), labelled by `model_name`.

The core attaches an engine when it builds one (at load, whatever front the requests will come
through) and detaches it when the model unloads: a model's series exist exactly while one of
its versions is loaded. Running and waiting gauges are read from the engines when scraped, so
they are exact."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modelyard.core.engine import Engine
from modelyard.spec.generation import Finish

_LATENCY = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
_LONG = (
    0.01,
    0.1,
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
)
_STEP_TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_LABEL = ["model_name"]


class LLMMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time to first token.",
            _LABEL,
            registry=registry,
            buckets=_LATENCY,
        )
        self.itl = Histogram(
            "vllm:inter_token_latency_seconds",
            "Time between output tokens.",
            _LABEL,
            registry=registry,
            buckets=_LATENCY,
        )
        self.queue = Histogram(
            "vllm:request_queue_time_seconds",
            "Time a request waited for a sequence slot.",
            _LABEL,
            registry=registry,
            buckets=_LONG,
        )
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Request latency, end to end.",
            _LABEL,
            registry=registry,
            buckets=_LONG,
        )
        self.step_tokens = Histogram(
            "vllm:iteration_tokens_total",
            "Tokens carried by one engine step (one model call).",
            _LABEL,
            registry=registry,
            buckets=_STEP_TOKENS,
        )
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Prompt tokens read.", _LABEL, registry=registry
        )
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Tokens generated.", _LABEL, registry=registry
        )
        self.cache_queries = Counter(
            "vllm:prefix_cache_queries",
            "Prompt tokens looked up in the prefix cache.",
            _LABEL,
            registry=registry,
        )
        self.cache_hits = Counter(
            "vllm:prefix_cache_hits",
            "Prompt tokens found in the prefix cache.",
            _LABEL,
            registry=registry,
        )
        self.success = Counter(
            "vllm:request_success",
            "Requests finished, by reason.",
            [*_LABEL, "finished_reason"],
            registry=registry,
        )
        self._engines = _EngineGauges()
        registry.register(self._engines)

    def attach(self, model: str, engine: Engine) -> EngineMetrics:
        """Count `engine`'s work under `model` (its observer) and show its queue gauges."""
        self._engines.add(model, engine)
        return EngineMetrics(self, model)

    def detach(self, model: str, engine: Engine) -> None:
        """The engine is gone; the model's series go too when no engine of it is left."""
        if self._engines.remove(model, engine):
            return
        for metric in (
            self.ttft,
            self.itl,
            self.queue,
            self.e2e,
            self.step_tokens,
            self.prompt_tokens,
            self.generation_tokens,
            self.cache_queries,
            self.cache_hits,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(model)
        for finish in Finish:
            with contextlib.suppress(KeyError):
                self.success.remove(model, finish.value)


class EngineMetrics:
    """The engine `Observer` for one model."""

    def __init__(self, metrics: LLMMetrics, model: str) -> None:
        self._ttft = metrics.ttft.labels(model)
        self._itl = metrics.itl.labels(model)
        self._queue = metrics.queue.labels(model)
        self._e2e = metrics.e2e.labels(model)
        self._step = metrics.step_tokens.labels(model)
        self._prompt = metrics.prompt_tokens.labels(model)
        self._generated = metrics.generation_tokens.labels(model)
        self._queries = metrics.cache_queries.labels(model)
        self._hits = metrics.cache_hits.labels(model)
        self._success = metrics.success
        self._model = model

    def on_step(self, tokens: int) -> None:
        self._step.observe(tokens)

    def on_admit(self, queue_s: float, prompt_tokens: int, cached_tokens: int) -> None:
        self._queue.observe(queue_s)
        self._prompt.inc(prompt_tokens)
        self._queries.inc(prompt_tokens)
        self._hits.inc(cached_tokens)

    def on_token(self, first: bool, seconds: float) -> None:
        (self._ttft if first else self._itl).observe(seconds)
        self._generated.inc()

    def on_finish(self, finish: Finish, prompt_tokens: int, generated: int, e2e_s: float) -> None:
        self._e2e.observe(e2e_s)
        self._success.labels(self._model, finish.value).inc()


class _EngineGauges(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: list[tuple[str, Engine]] = []

    def add(self, model: str, engine: Engine) -> None:
        with self._lock:
            self._engines.append((model, engine))

    def remove(self, model: str, engine: Engine) -> bool:
        """Drop one engine; whether another engine of `model` is left."""
        with self._lock:
            self._engines = [(m, e) for m, e in self._engines if e is not engine]
            return any(m == model for m, _ in self._engines)

    def collect(self) -> Iterator[Any]:
        running = GaugeMetricFamily(
            "vllm:num_requests_running", "Requests in a sequence slot, generating.", labels=_LABEL
        )
        waiting = GaugeMetricFamily(
            "vllm:num_requests_waiting", "Requests waiting for a sequence slot.", labels=_LABEL
        )
        kv = GaugeMetricFamily(
            "vllm:kv_cache_usage_perc",
            "Share of the KV cache's cells holding tokens (0 to 1; kept prefixes included).",
            labels=_LABEL,
        )
        with self._lock:
            engines = list(self._engines)
        totals: dict[str, list[float]] = {}
        for model, engine in engines:
            counts = totals.setdefault(model, [0, 0, 0.0, 0])
            counts[0] += engine.running
            counts[1] += engine.waiting
            counts[2] += engine.kv_usage
            counts[3] += 1
        for model, (n_running, n_waiting, usage, n_engines) in totals.items():
            running.add_metric([model], n_running)
            waiting.add_metric([model], n_waiting)
            kv.add_metric([model], usage / n_engines)
        yield running
        yield waiting
        yield kv
