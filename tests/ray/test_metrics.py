"""Every replica's metrics as one exposition (no Ray needed): real modelyard registries,
labelled as their replicas report them, merged by the board, read back by Prometheus's own
text parser."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from modelyard.ray.metrics import MetricsBoard, exposition, labelled


def _replica(requests: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    count = Counter("requests", "Requests answered.", ["model"], registry=registry)
    count.labels("mlp").inc(requests)
    latency = Histogram("latency_seconds", "Latency.", ["model"], registry=registry)
    latency.labels("mlp").observe(0.1)
    return registry


def _report(registry: CollectorRegistry, replica: str, node: str) -> list[Metric]:
    labels = {"deployment": "model-mlp", "replica": replica, "node": node}
    return labelled(registry.collect(), labels)


def test_each_family_once_with_every_replicas_samples_labelled() -> None:
    board = MetricsBoard()
    board.put("b", _report(_replica(3), "b", "10.0.0.2"))
    board.put("a", _report(_replica(2), "a", "10.0.0.1"))
    text = exposition(board.families()).decode()
    assert text.count("# TYPE requests_total counter") == 1
    assert text.count("# HELP latency_seconds Latency.") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    totals = {
        s.labels["replica"]: (s.value, s.labels)
        for s in families["requests"].samples
        if s.name == "requests_total"
    }
    labels = {"model": "mlp", "deployment": "model-mlp", "replica": "a", "node": "10.0.0.1"}
    assert totals["a"] == (2.0, labels)
    assert totals["b"][0] == 3.0
    buckets = [s for s in families["latency_seconds"].samples if s.name.endswith("_bucket")]
    assert {s.labels["replica"] for s in buckets} == {"a", "b"}


def test_a_replica_that_stops_or_goes_silent_leaves() -> None:
    board = MetricsBoard(stale_s=0.0)
    board.put("a", _report(_replica(1), "a", "n"))
    assert board.families() == []  # its report is already stale
    board = MetricsBoard()
    board.put("a", _report(_replica(1), "a", "n"))
    board.drop("a")
    board.drop("never-reported")
    assert exposition(board.families()) == b""


def test_a_name_reported_with_two_types_keeps_the_first() -> None:
    gauge = CollectorRegistry()
    Gauge("requests_total_like", "A gauge.", registry=gauge).set(1)
    counter = CollectorRegistry()
    Counter("requests_total_like", "A counter.", registry=counter).inc()
    text = exposition([*gauge.collect(), *counter.collect()]).decode()
    (family,) = text_string_to_metric_families(text)
    assert family.type == "gauge"
