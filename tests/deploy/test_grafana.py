"""deploy/grafana's dashboards chart only what the server exports: every metric its PromQL
(panels and variables) names, and every label it matches on, is read from a real server's
/metrics after traffic on a tensor model and a text generator (driven by `modelyard bench`)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelyard.bench import Plan, run_bench
from modelyard.bench.options import Step
from tests.deploy.promql import exported, selectors
from tests.server_process import ServerProcess

pytestmark = pytest.mark.slow

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
#: the one server's dashboard, the cluster's (every replica scraped through the chart's
#: ServiceMonitor, summed by pod) and Ray's (every replica's series on the ingress's /metrics)
DASHBOARDS = ("modelyard.json", "modelyard-cluster.json", "modelyard-ray.json")
#: labels Prometheus adds to each series it scrapes from a Kubernetes target (the chart's
#: ServiceMonitor adds `node`); only the cluster dashboard matches on them
TARGET_LABELS = {"namespace", "service", "pod", "node", "container", "endpoint", "job", "instance"}
#: labels each series has on Ray (each replica adds the first three; Prometheus the others)
RAY_LABELS = {"deployment", "replica", "node", "job", "instance"}
ADDED = {"modelyard-cluster.json": TARGET_LABELS, "modelyard-ray.json": RAY_LABELS}


def dashboard(name: str = "modelyard.json") -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((GRAFANA / name).read_bytes())
    return loaded


def expressions(board: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    found += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    return found


def test_selectors_are_read_from_the_expressions() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, model) (rate(a_bucket{model=~"$m"}[$__rate_'
        'interval]))) / sum(rate(vllm:b_total{model_name=~"x", finished_reason="stop"}[5m]))'
    )
    assert selectors(expr) == [
        ("a_bucket", {"model"}),
        ("vllm:b_total", {"model_name", "finished_reason"}),
    ]
    assert selectors("label_values(vllm:c, model_name)") == [("vllm:c", {"model_name"})]
    assert selectors('label_values(m{namespace=~"$n",service=~"a,b"}, pod)') == [
        ("m", {"namespace", "service", "pod"})
    ]
    assert selectors("sum(a) or vector(0)") == [("a", set())]


def test_every_metric_the_dashboard_charts_is_exported(
    server: ServerProcess, llm_server: ServerProcess
) -> None:
    quick = Plan("addsub", server.url, steps=(Step("concurrency", 2),), requests=6, warmup_s=0)
    run_bench(quick, out=io.StringIO())
    llm = dataclasses.replace(quick, model="tiny", url=llm_server.url, output_tokens=4)
    run_bench(llm, out=io.StringIO())
    names = exported(server.url)
    for name, labels in exported(llm_server.url).items():
        names.setdefault(name, set()).update(labels)
    for file in DASHBOARDS:
        board = dashboard(file)
        added = ADDED.get(file, set())
        used = [s for expr in expressions(board) for s in selectors(expr)]
        assert len({name for name, _ in used}) >= 12
        missing = sorted({name for name, _ in used if name not in names})
        assert not missing, f"{file} charts metrics the server does not export: {missing}"
        wrong = sorted(
            {f"{n}{{{label}}}" for n, labels in used for label in labels - names[n] - added}
        )
        assert not wrong, f"{file} matches on labels these metrics lack: {wrong}"
    (kv,) = _values(llm_server.url, "vllm:kv_cache_usage_perc", "tiny")
    assert 0 < kv < 1  # the prompts' prefixes stay cached


@pytest.mark.parametrize("file", DASHBOARDS)
def test_every_panel_has_a_query_and_a_place(file: str) -> None:
    board = dashboard(file)
    charts = [p for p in board["panels"] if p["type"] != "row"]
    assert len(charts) >= 15
    for panel in charts:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_the_cluster_dashboard_shows_each_replica() -> None:
    """Per-replica panels group by pod (or node), and every query narrows to the chosen
    namespace and Service, so two releases in one Prometheus stay apart."""
    board = dashboard("modelyard-cluster.json")
    charts = [p for p in board["panels"] if p["type"] == "timeseries"]
    by_pod = [p for p in charts if any("by (pod)" in t["expr"] for t in p["targets"])]
    assert len(by_pod) >= 8
    assert any("by (node)" in t["expr"] for p in charts for t in p["targets"])
    for expr in expressions(board):
        for _, labels in selectors(expr):
            assert "namespace" in labels, expr


def test_the_ray_dashboard_shows_each_replica() -> None:
    """The cluster dashboard's panels, grouped by Ray's replica instead of the pod, each query
    narrowed to the chosen Prometheus job (tests/ray checks it against a real Ray ingress)."""
    board = dashboard("modelyard-ray.json")
    cluster = dashboard("modelyard-cluster.json")
    assert [p["type"] for p in board["panels"]] == [p["type"] for p in cluster["panels"]]
    charts = [p for p in board["panels"] if p["type"] == "timeseries"]
    by_replica = [p for p in charts if any("by (replica)" in t["expr"] for t in p["targets"])]
    assert len(by_replica) >= 8
    assert any("by (node)" in t["expr"] for p in charts for t in p["targets"])
    for expr in expressions(board):
        assert "pod" not in expr and "namespace" not in expr, expr
        for _, labels in selectors(expr):
            assert "job" in labels, expr


def _values(url: str, name: str, model: str) -> list[float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return [
        float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels.get("model_name") == model
    ]
