"""What PromQL expressions read, and what a real server's /metrics exports: the judges of every
query the deploy/ files hold (Grafana dashboards, KEDA's triggers)."""

from __future__ import annotations

import re

import httpx
from prometheus_client.parser import text_string_to_metric_families

PROMQL_CALLS = {
    "sum",
    "max",
    "min",
    "count",
    "rate",
    "histogram_quantile",
    "label_values",
    "vector",
}
NAME = r"[A-Za-z_:][A-Za-z0-9_:]*"


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, labels it matches on) for each metric the expression reads."""
    bare = re.sub(r'"[^"]*"', '""', expr)
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # range durations
    bare = re.sub(r"\b(by|without)\s*\([^)]*\)", "", bare)  # grouping labels
    bare = re.sub(r"\bor\b", "", bare)  # the binary operator, not a metric
    calls = set(re.findall(rf"({NAME})\s*\(", bare))
    assert calls <= PROMQL_CALLS, f"unexpected PromQL functions {calls - PROMQL_CALLS} in {expr}"
    if bare.startswith("label_values("):  # label_values(metric{...}, label)
        series, _, label = bare[13:-1].rpartition(",")
        [(metric, labels)] = _series(series, calls)
        return [(metric, labels | {label.strip()})]
    return _series(bare, calls)


def _series(bare: str, calls: set[str]) -> list[tuple[str, set[str]]]:
    found = []
    for match in re.finditer(rf"({NAME})\s*(\{{[^}}]*\}})?", bare):
        name, matchers = match.group(1), match.group(2) or ""
        if name in calls:
            continue
        found.append((name, set(re.findall(rf"({NAME})\s*=~?", matchers))))
    return found


def exported(url: str, api_key: str | None = None) -> dict[str, set[str]]:
    """Every sample name on /metrics, with the labels it carries."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names
