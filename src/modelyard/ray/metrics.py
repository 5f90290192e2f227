"""Every replica's metrics on the ingress's `/metrics`, one exposition for the cluster.

A Ray handle reaches one replica of a deployment, never each, so the replicas report instead
(as Ray's own workers push theirs to the node's agent): every `PUSH_PERIOD_S` each replica
collects its modelyard registry, labels every sample with its `deployment`, `replica` (Ray's
replica id, the `x-modelyard-replica` header of its answers) and `node` (the node's IP), and
puts the families on the application's `MetricsBoard`, a small Ray actor the ingress starts
and owns. `GET /metrics` on the ingress renders what the board holds: each family once (one
HELP and TYPE), the samples of every replica under it. A replica that stops takes its series
off; one that dies is dropped when its last report is `STALE_S` old. Values are as old as the
replica's last report (`PUSH_PERIOD_S` at most, while it lives).

Pure (no Ray): `app.py` runs the board as an actor, `replica.py` reports to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

#: How often a replica reports.
PUSH_PERIOD_S = 5.0
#: A report this old is a dead replica's.
STALE_S = 3 * PUSH_PERIOD_S


def board_name(app: str) -> str:
    """The board's actor name (one board per Ray Serve application)."""
    return f"modelyard-metrics-{app}"


def labelled(families: Iterable[Metric], labels: Mapping[str, str]) -> list[Metric]:
    """Copies of `families` whose every sample also carries `labels`."""
    out = []
    for family in families:
        copy = Metric(family.name, family.documentation, family.type, family.unit)
        copy.samples = [s._replace(labels={**s.labels, **labels}) for s in family.samples]
        out.append(copy)
    return out


def exposition(families: Iterable[Metric]) -> bytes:
    """Prometheus's text format of `families` from many replicas: the samples of families of
    one name gathered under it (a name reported with another type is left out: one family
    cannot have two)."""
    merged: dict[str, Metric] = {}
    for family in families:
        into = merged.get(family.name)
        if into is None:
            into = merged[family.name] = Metric(
                family.name, family.documentation, family.type, family.unit
            )
        if into.type == family.type:
            into.samples.extend(family.samples)
    return generate_latest(_Families(list(merged.values())))


class MetricsBoard:
    """The latest report of each replica (run as a Ray actor by `app.py`)."""

    def __init__(self, stale_s: float = STALE_S) -> None:
        self.stale_s = stale_s
        self.reports: dict[str, tuple[float, list[Metric]]] = {}

    def put(self, replica: str, families: list[Metric]) -> None:
        self.reports[replica] = (time.monotonic(), families)

    def drop(self, replica: str) -> None:
        self.reports.pop(replica, None)

    def families(self) -> list[Metric]:
        """Every live replica's families, in replica order; stale reports dropped."""
        now = time.monotonic()
        for replica in [r for r, (at, _) in self.reports.items() if now - at > self.stale_s]:
            del self.reports[replica]
        return [family for _, (_, report) in sorted(self.reports.items()) for family in report]


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families
