"""The PNGs of a run, drawn with matplotlib (the `bench` extra) without a display:

latency_throughput.png  p50/p90/p99 against the req/s each step reached (the sweep's curve)
latency_cdf.png         every step's latency distribution
ttft_itl.png            time to first token and inter-token latency histograms (text generators)
server_batches.png      rows per execution (tokens per engine step for text generators) and the
                        queue over time, from the server's /metrics during the run
compare.png             two runs' curves and distributions overlaid (`--compare`)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

INSTALL = "pip install 'modelyard[bench]'"


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_run(result: dict[str, Any], folder: Path) -> list[Path]:
    plt = _pyplot()
    title = f"{result['model']} over {result['protocol']}"
    paths = [
        _curve(plt, [result], title, folder / "latency_throughput.png"),
        _cdf(plt, [result], title, folder / "latency_cdf.png"),
    ]
    if result["llm"]:
        paths.append(_ttft_itl(plt, result, title, folder / "ttft_itl.png"))
    if result["server"]["timeline"]:
        paths.append(_timeline(plt, result, title, folder / "server_batches.png"))
    return paths


def draw_compare(a: dict[str, Any], b: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for run, name, style in ((a, "A", "-"), (b, "B", "--")):
        steps = run["steps"]
        x = [s["req_s"] for s in steps]
        for q, color in (("p50", "C0"), ("p99", "C3")):
            y = [_nan((s["latency_ms"] or {}).get(q)) for s in steps]
            left.plot(x, y, style, color=color, marker="o", label=f"{name} {q}")
        for i, s in enumerate(steps):  # a step's colour is the same in both runs
            if s["latencies_ms"]:
                values, fraction = _ecdf(s["latencies_ms"])
                right.plot(values, fraction, style, color=f"C{i}", label=f"{name} {s['label']}")
    left.set(xlabel="requests/s", ylabel="latency (ms)", title="latency against throughput")
    left.set_yscale("log")
    right.set(xlabel="latency (ms)", ylabel="fraction of requests", title="latency CDF")
    right.set_xscale("log")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        _legend(axes, fontsize=7)
    figure.suptitle(f"A: {_name(a)}   B: {_name(b)}", fontsize=9)
    return _save(plt, figure, path)


def _name(run: dict[str, Any]) -> str:
    return f"{run['model']} {run['protocol']} {run['started']}"


def _curve(plt: Any, runs: list[dict[str, Any]], title: str, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    steps = runs[0]["steps"]
    x = [s["req_s"] for s in steps]
    for q in ("p50", "p90", "p99"):
        axes.plot(x, [_nan((s["latency_ms"] or {}).get(q)) for s in steps], marker="o", label=q)
    for s in steps:
        top = (s["latency_ms"] or {}).get("p99")
        if top is not None:
            axes.annotate(
                s["label"], (s["req_s"], top), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    axes.set(xlabel="requests/s reached", ylabel="latency (ms)", title=f"{title}: latency")
    axes.set_yscale("log")
    axes.grid(alpha=0.3)
    _legend(axes)
    return _save(plt, figure, path)


def _ecdf(values: list[float]) -> tuple[list[float], list[float]]:
    ordered = sorted(values)
    n = len(ordered)
    return ordered, [(i + 1) / n for i in range(n)]


def _cdf(plt: Any, runs: list[dict[str, Any]], title: str, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for s in runs[0]["steps"]:
        if s["latencies_ms"]:
            values, fraction = _ecdf(s["latencies_ms"])
            axes.plot(values, fraction, label=s["label"])
    axes.set(xlabel="latency (ms)", ylabel="fraction of requests", title=f"{title}: latency CDF")
    axes.set_xscale("log")
    axes.grid(alpha=0.3)
    _legend(axes, fontsize=8)
    return _save(plt, figure, path)


def _ttft_itl(plt: Any, result: dict[str, Any], title: str, path: Path) -> Path:
    import numpy as np

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for axes, key, bins in ((left, "ttfts_ms", 30), (right, "itls_ms", 50)):
        every = [v for s in result["steps"] for v in s.get(key) or []]
        if not every:
            continue
        edges = np.histogram_bin_edges(every, bins=bins)  # one set of bins for every step
        for s in result["steps"]:
            if s.get(key):
                axes.hist(s[key], bins=edges, alpha=0.5, label=s["label"])
    left.set(xlabel="time to first token (ms)", ylabel="requests", title="TTFT")
    right.set(xlabel="inter-token latency (ms)", ylabel="tokens", title="ITL")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        _legend(axes, fontsize=8)
    figure.suptitle(title)
    return _save(plt, figure, path)


def _timeline(plt: Any, result: dict[str, Any], title: str, path: Path) -> Path:
    points = result["server"]["timeline"]
    llm = result["llm"]
    size_key, size_label = (
        ("step_tokens_mean", "tokens per engine step")
        if llm
        else ("batch_mean", "rows per execution")
    )
    queues = ("running", "waiting") if llm else ("queue_depth",)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for label in dict.fromkeys(p["step"] for p in points):
        mine = [p for p in points if p["step"] == label and p.get(size_key) is not None]
        top.plot([p["t"] for p in mine], [p[size_key] for p in mine], ".-", label=label)
    for key in queues:
        bottom.plot([p["t"] for p in points], [p.get(key, 0) for p in points], label=key)
    top.set(ylabel=size_label, title=f"{title}: the server's batches (/metrics)")
    bottom.set(xlabel="seconds into the run", ylabel="requests")
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
        _legend(axes, fontsize=8)
    return _save(plt, figure, path)


def _legend(axes: Any, fontsize: int = 9) -> None:
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=fontsize)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _save(plt: Any, figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
