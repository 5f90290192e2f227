"""Prometheus collectors for the tensor models, read from each model version's statistics at
scrape time (the hot path only bumps counters and bucket arrays). Names are modelyard's own
with the meaning of Triton's `nv_inference_*` metrics; docs/metrics.md lists them all."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from modelyard.core.models import ModelService
from modelyard.core.served import ServedModel
from modelyard.core.stats import Histogram, ModelStats

_LABELS = ["model", "version"]

_COUNTERS: list[tuple[str, str, Callable[[ModelStats], int]]] = [
    (
        "modelyard_inference_request_success",
        "Requests answered successfully (Triton: nv_inference_request_success).",
        lambda s: s.success.count,
    ),
    (
        "modelyard_inference_request_failure",
        "Requests that failed after reaching the model (nv_inference_request_failure).",
        lambda s: s.fail.count,
    ),
    (
        "modelyard_inference_count",
        "Rows inferred, a batch of n counting n (nv_inference_count).",
        lambda s: s.inference_count,
    ),
    (
        "modelyard_inference_exec_count",
        "Model executions, a batch counting once (nv_inference_exec_count).",
        lambda s: s.execution_count,
    ),
    (
        "modelyard_inference_exec_inline_count",
        "Executions that ran on the event loop thread: a lone request on an idle model whose "
        "runs are short (model parameter inline_max_us).",
        lambda s: s.inline_execution_count,
    ),
]

_HISTOGRAMS = [
    (
        "modelyard_inference_request_duration_seconds",
        "Request time from arrival at the model to "
        "answer, failures included (nv_inference_request_duration_us).",
        "request_seconds",
    ),
    (
        "modelyard_inference_queue_duration_seconds",
        "Time requests waited in the model's queue (nv_inference_queue_duration_us).",
        "queue_seconds",
    ),
    (
        "modelyard_inference_compute_duration_seconds",
        "Time of one model execution, batching included (nv_inference_compute_infer_duration_us).",
        "compute_seconds",
    ),
    ("modelyard_inference_batch_size", "Rows per model execution.", "batch_rows"),
]


class ModelCollector(Collector):
    def __init__(self, models: ModelService) -> None:
        self.models = models

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        versions = self.models.loaded()
        yield from _counters(versions)
        yield from _histograms(versions)
        yield from _gauges(versions)


def _labels(version: ServedModel) -> list[str]:
    return [version.name, str(version.version)]


def _counters(versions: list[ServedModel]) -> Iterator[CounterMetricFamily]:
    for name, doc, read in _COUNTERS:
        family = CounterMetricFamily(name, doc, labels=_LABELS)
        for version in versions:
            family.add_metric(_labels(version), read(version.stats))
        yield family


def _histograms(versions: list[ServedModel]) -> Iterator[HistogramMetricFamily]:
    for name, doc, attribute in _HISTOGRAMS:
        family = HistogramMetricFamily(name, doc, labels=_LABELS)
        for version in versions:
            histogram: Histogram = getattr(version.stats, attribute)
            family.add_metric(_labels(version), histogram.cumulative(), histogram.total)
        yield family


def _gauges(versions: list[ServedModel]) -> Iterator[GaugeMetricFamily]:
    depth = GaugeMetricFamily(
        "modelyard_inference_queue_depth",
        "Requests waiting in the model's queue now.",
        labels=_LABELS,
    )
    inflight = GaugeMetricFamily(
        "modelyard_inference_inflight_requests",
        "Requests inside the model now (queued or running).",
        labels=_LABELS,
    )
    for version in versions:
        depth.add_metric(_labels(version), version.queue_depth)
        inflight.add_metric(_labels(version), version.leases)
    yield depth
    yield inflight


__all__ = ["ModelCollector", "ModelStats"]
