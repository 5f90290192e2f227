"""deploy/grafana/modelyard.json charts only what the server exports: every metric its PromQL
(panels and variables) names, and every label it matches on, is read from a real server's
/metrics after traffic on a tensor model and a text generator (driven by `modelyard bench`)."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelyard.bench import Plan, run_bench
from modelyard.bench.options import Step
from tests.server_process import ServerProcess

pytestmark = pytest.mark.slow

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "modelyard.json"
PROMQL_CALLS = {"sum", "max", "rate", "histogram_quantile", "label_values"}
NAME = r"[A-Za-z_:][A-Za-z0-9_:]*"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(DASHBOARD.read_bytes())
    return loaded


def expressions(board: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    found += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    return found


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, labels it matches on) for each metric the expression reads."""
    bare = re.sub(r'"[^"]*"', '""', expr)
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # range durations
    bare = re.sub(r"\b(by|without)\s*\([^)]*\)", "", bare)  # grouping labels
    calls = set(re.findall(rf"({NAME})\s*\(", bare))
    assert calls <= PROMQL_CALLS, f"unexpected PromQL functions {calls - PROMQL_CALLS} in {expr}"
    if bare.startswith("label_values("):  # label_values(metric, label)
        metric, label = (part.strip() for part in bare[13:-1].split(","))
        return [(metric, {label})]
    found = []
    for match in re.finditer(rf"({NAME})\s*(\{{[^}}]*\}})?", bare):
        name, matchers = match.group(1), match.group(2) or ""
        if name in calls:
            continue
        found.append((name, set(re.findall(rf"({NAME})\s*=~?", matchers))))
    return found


def exported(url: str) -> dict[str, set[str]]:
    """Every sample name on /metrics, with the labels it carries."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


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
    board = dashboard()
    used = [s for expr in expressions(board) for s in selectors(expr)]
    assert len({name for name, _ in used}) >= 20
    missing = sorted({name for name, _ in used if name not in names})
    assert not missing, f"the dashboard charts metrics the server does not export: {missing}"
    wrong = sorted({f"{n}{{{label}}}" for n, labels in used for label in labels - names[n]})
    assert not wrong, f"the dashboard matches on labels these metrics lack: {wrong}"
    (kv,) = _values(llm_server.url, "vllm:kv_cache_usage_perc", "tiny")
    assert 0 < kv < 1  # the prompts' prefixes stay cached


def test_every_panel_has_a_query_and_a_place() -> None:
    board = dashboard()
    charts = [p for p in board["panels"] if p["type"] != "row"]
    assert len(charts) >= 15
    for panel in charts:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def _values(url: str, name: str, model: str) -> list[float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return [
        float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels.get("model_name") == model
    ]
