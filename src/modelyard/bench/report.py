"""What a run found: one summary per step (docs/bench.md lists the fields), the table printed
as steps finish, the JSON and CSV files, and two runs side by side (`--compare`)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from modelyard.bench.load import StepResult
from modelyard.bench.options import BenchError

FORMAT = "modelyard-bench/1"
QUANTILES = (50, 90, 99)


def _ms(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ms = np.asarray(values) * 1e3
    p50, p90, p99 = np.percentile(ms, QUANTILES)
    return {
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(ms.mean()), 3),
        "max": round(float(ms.max()), 3),
    }


def summarize(result: StepResult, llm: bool) -> dict[str, Any]:
    ok = [s for s in result.samples if not s.error]
    seconds = result.seconds
    summary: dict[str, Any] = {
        "label": result.step.label,
        "mode": result.step.mode,
        "load": result.step.load,
        "seconds": round(seconds, 3),
        "requests": len(result.samples),
        "ok": len(ok),
        "errors": dict(Counter(s.error for s in result.samples if s.error)),
        "req_s": round(len(ok) / seconds, 3) if seconds else 0.0,
        "latency_ms": _ms([s.latency for s in ok]),
        "latencies_ms": [round(s.latency * 1e3, 3) for s in ok],
    }
    if llm:
        ttfts = [s.ttft for s in ok if s.ttft is not None]
        itls = [gap for s in ok for gap in s.itls]
        tokens = sum(s.output_tokens for s in ok)
        summary |= {
            "ttft_ms": _ms(ttfts),
            "itl_ms": _ms(itls),
            "output_tokens": tokens,
            "output_tokens_s": round(tokens / seconds, 3) if seconds else 0.0,
            "prompt_tokens_mean": round(float(np.mean([s.prompt_tokens for s in ok])), 1)
            if ok
            else 0.0,
            "ttfts_ms": [round(t * 1e3, 3) for t in ttfts],
            "itls_ms": [round(t * 1e3, 3) for t in itls],
        }
    return summary


# ---- the table ---------------------------------------------------------------------------------

_LLM = ("TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "tok/s")


def header(llm: bool) -> str:
    cells = [f"{'step':<12}", f"{'req/s':>10}", *(f"{q + ' ms':>9}" for q in ("p50", "p90", "p99"))]
    cells.append("  errors")
    if llm:
        cells[-1:-1] = [f"{h:>9}" for h in _LLM]
    return " ".join(cells)


def row(summary: dict[str, Any], llm: bool) -> str:
    lat = summary["latency_ms"] or {}
    cells = [
        f"{summary['label']:<12}",
        f"{summary['req_s']:>10.1f}",
        *(f"{_num(lat.get(q)):>9}" for q in ("p50", "p90", "p99")),
    ]
    if llm:
        ttft, itl = summary["ttft_ms"] or {}, summary["itl_ms"] or {}
        cells += [
            f"{_num(ttft.get('p50')):>9}",
            f"{_num(ttft.get('p99')):>9}",
            f"{_num(itl.get('p50')):>9}",
            f"{_num(itl.get('p99')):>9}",
            f"{summary['output_tokens_s']:>9.1f}",
        ]
    cells.append("  " + (_errors(summary["errors"]) or "0"))
    return " ".join(cells)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(errors.items(), key=lambda e: -e[1]))


# ---- files -------------------------------------------------------------------------------------

CSV_FIELDS = (
    "label",
    "mode",
    "load",
    "seconds",
    "requests",
    "ok",
    "errors",
    "req_s",
    *(f"latency_{q}_ms" for q in ("p50", "p90", "p99", "mean", "max")),
    *(f"ttft_{q}_ms" for q in ("p50", "p90", "p99")),
    *(f"itl_{q}_ms" for q in ("p50", "p90", "p99")),
    "output_tokens_s",
)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


def write_csv(result: dict[str, Any], path: Path) -> None:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, CSV_FIELDS)
        writer.writeheader()
        for step in result["steps"]:
            writer.writerow(_csv_row(step))


def _csv_row(step: dict[str, Any]) -> dict[str, Any]:
    flat = {k: step.get(k, "") for k in CSV_FIELDS}
    flat["errors"] = sum(step["errors"].values())
    for name in ("latency", "ttft", "itl"):
        for q, value in (step.get(f"{name}_ms") or {}).items():
            if f"{name}_{q}_ms" in flat:
                flat[f"{name}_{q}_ms"] = value
    return flat


def load(path: Path) -> dict[str, Any]:
    try:
        result: Any = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise BenchError(f"--compare {path}: {exc}") from None
    if not isinstance(result, dict) or result.get("format") != FORMAT:
        raise BenchError(f"--compare {path} is not a result of `modelyard bench` (its JSON file)")
    return result


# ---- two runs side by side ---------------------------------------------------------------------


def compare_table(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Each step both runs have, with B's value over A's."""
    llm = a.get("llm") and b.get("llm")
    metrics = [("req/s", "req_s", None), ("p50 ms", "latency_ms", "p50")]
    metrics += [("p99 ms", "latency_ms", "p99")]
    if llm:
        metrics += [("TTFT p50", "ttft_ms", "p50"), ("ITL p50", "itl_ms", "p50")]
        metrics += [("tok/s", "output_tokens_s", None)]
    steps_b = {s["label"]: s for s in b["steps"]}
    lines = [
        f"A: {a['model']} over {a['protocol']} at {a['started']}",
        f"B: {b['model']} over {b['protocol']} at {b['started']}",
        "",
        f"{'step':<12} {'metric':<9} {'A':>10} {'B':>10} {'B/A':>7}",
    ]
    for step_a in a["steps"]:
        step_b = steps_b.get(step_a["label"])
        if step_b is None:
            continue
        for name, key, q in metrics:
            va, vb = _value(step_a, key, q), _value(step_b, key, q)
            ratio = f"{vb / va:.2f}x" if va and vb is not None else "-"
            lines.append(
                f"{step_a['label']:<12} {name:<9} {_num(va):>10} {_num(vb):>10} {ratio:>7}"
            )
    if len(lines) == 4:
        lines.append("(no step in common: compare runs with the same --concurrency or --rate)")
    return "\n".join(lines)


def _value(step: dict[str, Any], key: str, q: str | None) -> float | None:
    value = step.get(key)
    if q is not None:
        value = (value or {}).get(q)
    return None if value is None else float(value)
