"""The bounded configuration search behind `modelyard tune` and `tune: auto`.

1. Start from the rules' pick (what an untuned start would serve with) and measure it
   in-process (inprocess.py).
2. Step: measure every configuration one step away along one knob (space.py); move to the best
   if it beats the current one by at least 3% on the goal's figure, else stop. Stop too when the
   in-process share of the budget is spent.
3. Through the front (front.py, optional): measure the rules' pick and the winner through a
   real server; keep the winner only if the front agrees it is at least 3% better.
4. Cache the pick (advisor/tuned.py): the next start applies it without measuring again.

Goals: `throughput` scores requests/s at N clients; `latency` scores the median at one
client; with `latency_ms`, the highest throughput whose p99 at N clients is within the bound
(Model Analyzer's constraint).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from modelyard.advisor.apply import advise_config, latency_bound, model_goal
from modelyard.advisor.hardware import Hardware, probe
from modelyard.advisor.tuned import Figures, TunedPick, save_tuned
from modelyard.errors import Internal, InvalidArgument, Unavailable
from modelyard.repository.scan import ModelSource, read_entry, scan
from modelyard.spec.config import ModelConfig
from modelyard.tuning import inprocess, llm
from modelyard.tuning.convert import Conversion, compare, conversion_for
from modelyard.tuning.front import FrontServer
from modelyard.tuning.llm import LLM_CONCURRENCY, LLM_TUNABLE, llm_knobs
from modelyard.tuning.space import (
    DELAY,
    TUNABLE,
    Knob,
    Settings,
    key_of,
    knobs,
    neighbours,
    pinned_config,
    sample_inputs,
    start_from,
)

log = logging.getLogger("modelyard.tune")

#: A step must gain at least this much on the goal's figure to be taken.
MIN_GAIN = 0.03
#: Share of the budget the in-process search may use when the front is measured afterwards.
IN_PROCESS_SHARE = 0.5
#: The least time left for which the finalists are measured through the front at all.
MIN_FRONT_S = 4.0


@dataclass
class Trial:
    settings: Settings
    figures: Figures


@dataclass
class TuneResult:
    name: str
    pick: TunedPick
    trials: list[Trial] = field(default_factory=list)
    cache: Path | None = None
    seconds: float = 0.0
    layout: str = "file"  # the model's layout on disk: triton (config.pbtxt), simple, file
    #: An ONNX model measured against its OpenVINO IR (tuning/convert.py), when OpenVINO is
    #: installed.
    conversion: Conversion | None = None


@dataclass(frozen=True)
class TuneOptions:
    goal: str = "latency"
    latency_ms: float | None = None
    budget_s: float = 60.0
    front: bool = True  # measure the finalists through a real server
    concurrency: int = 64
    llm_concurrency: int = LLM_CONCURRENCY  # streams, for a text generator
    trust_pickle: bool = False


def score(figures: Figures, goal: str, latency_ms: float | None) -> float:
    """Higher is better: req/s for throughput (0 over a latency bound), 1/p50 for latency;
    for a text generator tokens/s, and for latency 1/(p99 time to first token at N streams):
    queueing is the latency."""
    if latency_ms:
        return figures.rps if figures.p99_ms <= latency_ms else 0.0
    if goal == "throughput":
        return figures.rps
    if figures.unit == "tok/s":
        return 1.0 / max(figures.p99_ms, 1e-6)
    return 1.0 / max(figures.p50_ms, 1e-6)


def tune(
    source: ModelSource,
    options: TuneOptions,
    hardware: Hardware | None = None,
    progress: Callable[[str], None] = log.info,
    stop: threading.Event | None = None,
) -> TuneResult:
    """Search the knobs of one model within `options.budget_s`; cache and return the pick.
    `stop` set (the server shutting down) ends the search after the trial running, with
    Unavailable and nothing cached."""
    began = time.monotonic()
    hw = hardware or probe()
    if source.error or not source.versions:
        raise InvalidArgument(f"model {source.name!r}: {source.error or 'no version found'}")
    version = max(source.versions)
    artifact = source.versions[version]
    goal = model_goal(source.config, options.goal)
    if options.latency_ms is None and latency_bound(source.config) is not None:
        options = replace(options, latency_ms=latency_bound(source.config))
    rules = advise_config(pinned_config(source.config, {}), artifact, goal=goal, hardware=hw)
    runtime = rules.runtime or ""
    if runtime not in TUNABLE:
        raise InvalidArgument(
            f"model {source.name!r} runs on {runtime or 'no runtime'}; modelyard tune searches "
            f"the knobs of {', '.join(TUNABLE)} models"
        )
    search = _Search(source, version, [], goal, options, began, stop)
    search.progress = progress
    progress(f"{source.name}: {runtime}, goal {goal}; the rules' pick first")
    if runtime in LLM_TUNABLE:
        if rules.parameters.get("embedding") == "true" or "kv_size" not in rules.parameters:
            raise InvalidArgument(
                f"model {source.name!r} is an embedding model: only text generators' slots "
                "are searched"
            )
        if not options.front:
            raise InvalidArgument(
                f"model {source.name!r} generates text: it is measured through a server "
                "(modelyard tune without --in-process)"
            )
        default, winner = _tune_llm(search, rules, began + options.budget_s)
    else:
        search.space = knobs(runtime, hw, rules.max_batch_size > 0)
        best = search.climb(
            search.run(start_from(settings_of(rules), search.space)),
            deadline=(began + options.budget_s * (IN_PROCESS_SHARE if options.front else 1.0)),
        )
        default, winner = search.trials[0], best
        if options.front and began + options.budget_s - time.monotonic() >= MIN_FRONT_S:
            try:
                default, winner = search.through_front(default, winner, began + options.budget_s)
            except Internal as exc:  # the figures stay the in-process ones
                progress(f"{source.name}: not measured through the front: {exc.message}")
    if stop is not None and stop.is_set():
        raise Unavailable(f"tuning {source.name!r} was stopped")
    chosen = winner if search.gain(winner, default) >= MIN_GAIN else default
    pick = TunedPick(
        runtime=runtime,
        goal=goal,
        settings=dict(chosen.settings),
        figures=chosen.figures,
        default_settings=dict(default.settings),
        default_figures=default.figures,
        latency_ms=options.latency_ms,
        date=date.today().isoformat(),
        steps=len(search.trials),
    )
    progress(f"{source.name}: picked {show(pick.settings)}: {pick.reason}")
    cache = save_tuned(artifact, pick, hw)
    seconds = time.monotonic() - began
    return TuneResult(source.name, pick, search.trials, cache, seconds, source.layout)


class _Search:
    def __init__(
        self,
        source: ModelSource,
        version: int,
        space: list[Knob],
        goal: str,
        options: TuneOptions,
        began: float,
        stop: threading.Event | None = None,
    ) -> None:
        self.source, self.version, self.space = source, version, space
        self.goal, self.options, self.began = goal, options, began
        self.stop = stop
        self.trials: list[Trial] = []
        self.seen: set[tuple[tuple[str, str], ...]] = set()
        self.completed: ModelConfig | None = None  # the model's config as it loaded
        self.progress: Callable[[str], None] = log.info
        self.trial_s = 0.0  # how long the last trial took
        #: How a trial is measured: in-process, or through a front (text generators).
        self.measure: Callable[[Settings], Figures] = self.in_process

    def has_time(self, deadline: float) -> bool:
        """Whether one more trial fits before `deadline` (and no stop was asked)."""
        if self.stop is not None and self.stop.is_set():
            return False
        return time.monotonic() + self.trial_s <= deadline

    def climb(self, best: Trial, deadline: float) -> Trial:
        """From `best`, step to the best neighbour while one gains MIN_GAIN and time is left."""
        while self.has_time(deadline):
            step = self.best_step(best, deadline)
            if step is None:
                break
            best = step
        return best

    def in_process(self, settings: Settings) -> Figures:
        figures, self.completed = inprocess.measure(
            self.source,
            self.version,
            settings,
            inprocess.Drive(concurrency=self.options.concurrency),
            trust_pickle=self.options.trust_pickle,
            goal=self.goal,
        )
        return figures

    def run(self, settings: Settings) -> Trial:
        began = time.monotonic()
        self.seen.add(key_of(settings))
        figures = self.measure(settings)
        trial = Trial(settings, figures)
        self.trials.append(trial)
        self.trial_s = time.monotonic() - began
        self.progress(f"  {show(settings)}: {figures.describe()}")
        return trial

    def best_step(self, current: Trial, deadline: float) -> Trial | None:
        """Measure the unseen neighbours of `current`; the best, if it gains MIN_GAIN."""
        best: Trial | None = None
        for settings in neighbours(current.settings, self.space):
            if key_of(settings) in self.seen or not self.has_time(deadline):
                continue
            trial = self.run(settings)
            if best is None or self.gain(trial, best) > 0:
                best = trial
        if best is None or self.gain(best, current) < MIN_GAIN:
            return None
        return best

    def gain(self, a: Trial, b: Trial) -> float:
        """How much better `a` scores than `b` (0.05: 5%)."""
        sa = score(a.figures, self.goal, self.options.latency_ms)
        sb = score(b.figures, self.goal, self.options.latency_ms)
        if sb <= 0:
            return 1.0 if sa > 0 else 0.0
        return sa / sb - 1.0

    def through_front(self, default: Trial, winner: Trial, deadline: float) -> tuple[Trial, Trial]:
        """The rules' pick and the winner measured again through a real server, in the time
        left before `deadline`."""
        assert self.completed is not None, "measured in-process first"
        inputs = sample_inputs(self.completed)
        root = self.source.path.parent
        self.progress(f"{self.source.name}: through the HTTP front")
        same = key_of(default.settings) == key_of(winner.settings)
        finalists = [default] if same else [default, winner]
        measured = []
        with FrontServer(root, self.source.name, self.options.trust_pickle) as server:
            for at, trial in enumerate(finalists):
                server.configure(self.source.config, trial.settings, self.completed.max_batch_size)
                share = (deadline - time.monotonic()) / (len(finalists) - at)
                seconds = min(1.0, max(0.25, (share - 0.5) / 2.5))
                figures = server.measure(inputs, self.options.concurrency, seconds)
                self.progress(f"  {show(trial.settings)}: {figures.describe()}")
                measured.append(Trial(trial.settings, figures))
        return measured[0], measured[-1]


def _tune_llm(search: _Search, rules: ModelConfig, deadline: float) -> tuple[Trial, Trial]:
    """A text generator's slots, every trial through a real server (tuning/llm.py); the
    rules' context and KV cells stay as they are. The rules' pick and the winner."""
    search.space = llm_knobs(rules)
    streams = search.options.llm_concurrency
    kept = {f"parameters.{k}": rules.parameters[k] for k in ("n_ctx", "kv_size")}
    source = search.source
    with FrontServer(source.path.parent, source.name, search.options.trust_pickle) as server:

        def through_server(settings: Settings) -> Figures:
            server.configure(source.config, {**kept, **settings}, rules.max_batch_size)
            return llm.measure(server.url, source.name, streams)

        search.measure = through_server
        first = search.run(start_from(settings_of(rules), search.space))
        return first, search.climb(first, deadline)


def settings_of(config: ModelConfig) -> Settings:
    """A completed config's values of the searched keys."""
    out: Settings = {"instance_count": config.instance_count}
    out.update({f"parameters.{k}": v for k, v in config.parameters.items()})
    if config.dynamic_batching is not None:
        out[DELAY] = config.dynamic_batching.max_queue_delay_us
    return out


def show(settings: Settings) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in settings.items())


def as_config(settings: Settings, layout: str) -> list[str]:
    """The pick as the lines a model's own config would hold to pin it: config.pbtxt for a
    Triton layout, model.yaml otherwise (a tuned pick needs neither: a start applies it)."""
    params = {k.removeprefix("parameters."): v for k, v in settings.items() if "parameters." in k}
    delay = settings.get(DELAY)
    instances = settings.get("instance_count")
    if layout == "triton":
        lines = [f"instance_group [{{ count: {instances}, kind: KIND_CPU }}]"] if instances else []
        lines += [
            f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}'
            for k, v in params.items()
        ]
        if delay is not None:
            lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {delay} }}")
        return lines
    lines = [f"instances: {instances}"] if instances else []
    if params:
        lines.append("parameters: {" + ", ".join(f"{k}: {v}" for k, v in params.items()) + "}")
    if delay is not None:
        lines.append(f"dynamic_batching: {{max_queue_delay_us: {delay}}}")
    return lines


def sources_at(path: Path) -> list[ModelSource]:
    """The models at `path`: a model file or folder, or every model of a repository."""
    source = read_entry(path)
    if source is not None and source.versions:
        return [source]
    return [s for s in scan([path]).values() if s.versions] if path.is_dir() else []


def tune_path(
    path: Path,
    options: TuneOptions,
    progress: Callable[[str], None] = log.info,
    skip: frozenset[str] = frozenset(),
) -> list[TuneResult]:
    """Tune every model at `path` whose runtime the search knows; others are named and
    skipped (those in `skip` silently: measured another way)."""
    results = []
    for source in sources_at(path):
        if source.name in skip:
            continue
        try:
            result = tune(source, options, progress=progress)
        except InvalidArgument as exc:
            progress(f"{source.name}: skipped — {exc.message}")
            continue
        if conversion_for(result.pick.runtime) is not None:
            result.conversion = _measure_conversion(source, result.pick.goal, progress)
        results.append(result)
    return results


def _measure_conversion(
    source: ModelSource, goal: str, progress: Callable[[str], None]
) -> Conversion | None:
    """The model against its conversion (None when it cannot be converted or loaded)."""
    progress(f"{source.name}: converting it and measuring both")
    try:
        conversion = compare(source, max(source.versions), goal)
    except Exception as exc:
        progress(f"{source.name}: not converted: {exc}")
        return None
    progress(f"  {conversion.describe()}")
    return conversion
