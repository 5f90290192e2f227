"""`modelyard advise` output: a short table for people, JSON (advisor/schema.json) for programs."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from modelyard.advisor.advise import Recommendation
from modelyard.advisor.artifact import human_bytes
from modelyard.advisor.decode import Comparison, DecodeFigures, Measured, compare, describe_pair
from modelyard.advisor.hardware import Hardware
from modelyard.advisor.pipelines import PipelineAdvice
from modelyard.advisor.tuned import TunedPick

SCHEMA_ID = "modelyard-advice/1"
_WIDTH = 100
_LABEL = 11


@dataclass
class Advice:
    """One model's recommendation, with what its config already decides."""

    name: str
    recommendation: Recommendation
    config_overrides: dict[str, Any] = field(default_factory=dict)
    #: What `modelyard tune` measured best here, if it ran (applied at load over the rules').
    tuned: TunedPick | None = None
    #: A text generator's decode speed, if `modelyard tune` measured it here.
    decode: DecodeFigures | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.recommendation.to_json(),
            "config_overrides": dict(self.config_overrides),
            "tuned": self.tuned.to_json() if self.tuned is not None else None,
            "decode": self.decode.to_json() if self.decode is not None else None,
        }


def comparisons(advice: list[Advice]) -> list[Comparison]:
    """The models advised together that hold one model as GGUF and as a Hugging Face folder."""
    return compare([Measured(a.name, a.recommendation.artifact, a.decode) for a in advice])


def schema() -> dict[str, Any]:
    text = resources.files("modelyard.advisor").joinpath("schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def to_json(
    hardware: Hardware, advice: list[Advice], pipelines: list[PipelineAdvice] | None = None
) -> dict[str, Any]:
    return {
        "schema": SCHEMA_ID,
        "hardware": hardware.to_json(),
        "models": [a.to_json() for a in advice],
        "pipelines": [p.to_json() for p in pipelines or []],
        "comparisons": [c.to_json() for c in comparisons(advice)],
    }


def render(
    hardware: Hardware, advice: list[Advice], pipelines: list[PipelineAdvice] | None = None
) -> str:
    blocks = [describe_hardware(hardware)] + [render_one(a) for a in advice]
    blocks += [render_pipeline(p) for p in pipelines or []]
    blocks += [render_comparison(c) for c in comparisons(advice)]
    return "\n\n".join(blocks)


def render_comparison(pair: Comparison) -> str:
    """GGUF against Transformers for one model: the measured verdict per stream count, and
    what explains it."""
    lines = [f"{describe_pair(pair)} — one model, two runtimes"]
    for m in (pair.gguf, pair.hf):
        measured = m.figures.describe() if m.figures is not None else "not measured"
        lines += _row(m.name, measured)
    for i, verdict in enumerate(pair.verdicts()):
        lines += _row("faster" if i == 0 else "", verdict)
    lines += _row("why", pair.why())
    return "\n".join(lines)


def render_pipeline(advice: PipelineAdvice) -> str:
    batch = f"batches of up to {advice.max_batch_size}" if advice.max_batch_size else "no batching"
    count = len(advice.steps)
    lines = [f"{advice.name} — a pipeline of {count} step model{'s' * (count != 1)} ({batch})"]
    steps = "; ".join(
        f"{s.model} ({s.runtime or '?'}"
        + (", in a worker process" if s.isolation == "process" else "")
        + (f", batches of {s.max_batch_size})" if s.max_batch_size else ", no batching)")
        for s in advice.steps
    )
    lines += _row("steps", steps)
    lines += _row("memory", advice.describe_memory())
    for note in advice.notes:
        lines += _row(note.rule.removeprefix("pipeline-"), note.text)
    if advice.missing:
        missing = ", ".join(advice.missing)
        lines += _row("warning", f"no step model {missing} here: loading it will fail")
    if not advice.notes:
        lines += _row("advice", "nothing to merge or split")
    return "\n".join(lines)


def describe_hardware(hw: Hardware) -> str:
    gpus = (
        ", ".join(
            f"{g.name} ({human_bytes(g.memory_bytes) if g.memory_bytes else '?'})" for g in hw.gpus
        )
        or "no GPU"
    )
    isa = (
        " ".join(
            name.upper().replace("AVX512", "AVX-512") for name, ok in sorted(hw.isa.items()) if ok
        )
        or "baseline x86/ARM"
    )
    runtimes = ", ".join(sorted(name for name, ok in hw.runtimes.items() if ok)) or "none"
    head = (
        f"this machine: {hw.cores} cores ({hw.physical_cores} physical), "
        f"{human_bytes(hw.memory_available_bytes)} memory free of "
        f"{human_bytes(hw.memory_bytes)}, {gpus}"
    )
    tail = textwrap.wrap(f"instructions: {isa}; installed: {runtimes}", _WIDTH)
    return "\n".join([head, *tail])


def render_one(advice: Advice) -> str:
    rec = advice.recommendation
    lines = [f"{advice.name} — {rec.artifact.summary()}"]
    target = f" within {rec.latency_ms:g} ms" if rec.latency_ms else ""
    lines += _row("goal", f"{rec.goal}{target}; memory budget {human_bytes(rec.budget_bytes)}")
    pick = rec.runtime or "none in modelyard"
    lines += _row("pick", f"{pick} — {rec.reasons.get('runtime', '')}")
    for i, (keys, reason) in enumerate(_grouped(rec)):
        shown = ", ".join(_setting(k, rec.settings[k], advice.config_overrides) for k in keys)
        lines += _row("settings" if i == 0 else "", f"{shown} — {reason}")
    lines += _tuned_rows(advice.tuned)
    if advice.decode is not None:
        lines += _row("measured", advice.decode.describe())
    lines += _row("memory", rec.memory.describe())
    for alt in rec.alternatives:
        label = "instead" if alt.better else "also"
        lines += _row(label, f"{alt.system} — {alt.reason}")
    for warning in rec.warnings:
        lines += _row("warning", warning)
    return "\n".join(lines)


def _tuned_rows(pick: TunedPick | None) -> list[str]:
    """The tuned pick beside the rules' one, each with its measured figures."""
    if pick is None:
        return []
    rows = _row("tuned", f"{_settings(pick.settings)} — {pick.figures.describe()}, {pick.date}")
    if pick.default_figures is not None:
        rows += _row(
            "",
            f"rules' pick {_settings(pick.default_settings)} measured "
            f"{pick.default_figures.describe()}",
        )
    return rows


def _settings(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.', 1)[-1]}={v}" for k, v in settings.items())


def _grouped(rec: Recommendation) -> list[tuple[list[str], str]]:
    groups: dict[str, list[str]] = {}
    for key in rec.settings:
        groups.setdefault(rec.reasons[key], []).append(key)
    return [(keys, reason) for reason, keys in groups.items()]


def _setting(key: str, value: Any, overrides: dict[str, Any]) -> str:
    short = key.split(".", 1)[1] if "." in key else key
    if key not in overrides:
        return f"{short}={value}"
    if str(overrides[key]) == str(value):
        return f"{short}={value} (as its config says)"
    return f"{short}={overrides[key]} (its config's; advice: {value})"


def _row(label: str, text: str) -> list[str]:
    wrapped = textwrap.wrap(text, _WIDTH - _LABEL - 2) or [""]
    return [f"  {label:<{_LABEL - 2}}{wrapped[0]}", *(" " * _LABEL + w for w in wrapped[1:])]
