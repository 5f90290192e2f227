"""Artifact + hardware + goal -> a `Recommendation`: the runtime, its settings, why, what
else would serve it (and when that would be better), and what to watch out for.

The decisions live in `rules.py`; this module only computes the facts they read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelyard.advisor import rules
from modelyard.advisor.artifact import ArtifactInfo, human_bytes, human_count
from modelyard.advisor.hardware import Hardware, probe
from modelyard.advisor.memory import (
    HF_SLOTS,
    MemoryEstimate,
    default_context,
    estimate_memory,
)
from modelyard.errors import InvalidArgument
from modelyard.runtimes import RUNTIMES

GOALS = ("latency", "throughput")
#: Largest batch a batched model accepts (also the largest request batch).
MAX_BATCH = 256
#: Batching wait for the throughput goal when no latency target is given.
DEFAULT_BATCH_DELAY_US = 2000
#: An LLM's KV cache in whole contexts, before the memory budget trims it ...
LLM_PARALLEL = {"latency": 4, "throughput": 8}
#: ... and the sequences that share it: slots cost next to nothing in llama.cpp's unified
#: cache (sequences draw cells from one pool), so a client waits for cells, never for a slot
#: behind whole generations (for a latency goal, queueing is the latency).
LLM_SLOTS = {"latency": 16, "throughput": 32}
LLM_MIN_CONTEXT = 512
EMBEDDING_MAX_CONTEXT = 8192
#: Rough memory bandwidth for the per-token time of an LLM: CPU per core (capped), GPU.
CPU_BANDWIDTH_PER_CORE, CPU_BANDWIDTH_MAX, GPU_BANDWIDTH = 6e9, 60e9, 1e12
#: Share of a GPU's memory a model may take (the rest: CUDA context, activations).
GPU_USABLE = 0.9
GIB = 2**30
#: formats whose runtime library the hardware facts ask about (providers, compiled features)
LIBRARY_RUNTIMES = {"onnx": "onnx", "gguf": "llamacpp"}


@dataclass
class Alternative:
    system: str
    reason: str
    better: bool  # True: modelyard cannot meet the goal here and this system can
    rule: str

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "reason": self.reason,
            "better": self.better,
            "rule": self.rule,
        }


@dataclass
class Recommendation:
    artifact: ArtifactInfo
    hardware: Hardware
    goal: str
    latency_ms: float | None
    budget_bytes: int
    memory: MemoryEstimate
    runtime: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # "runtime" and each setting key
    rules: list[str] = field(default_factory=list)  # ids of the rules that matched
    alternatives: list[Alternative] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def served_elsewhere(self) -> bool:
        return any(a.better for a in self.alternatives)

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact.to_json(),
            "goal": self.goal,
            "latency_ms": self.latency_ms,
            "memory_budget_bytes": self.budget_bytes,
            "runtime": self.runtime,
            "settings": dict(self.settings),
            "reasons": dict(self.reasons),
            "rules": list(self.rules),
            "alternatives": [a.to_json() for a in self.alternatives],
            "warnings": list(self.warnings),
            "memory": self.memory.to_json(),
        }


def advise(
    info: ArtifactInfo,
    hardware: Hardware | None = None,
    *,
    goal: str = "latency",
    latency_ms: float | None = None,
    memory: int | None = None,
    runtime: str | None = None,
    instances: int | None = None,
) -> Recommendation:
    """The recommendation for serving `info` on `hardware` (this machine when None).
    `memory` is the budget in bytes (default: the memory available now); `runtime` and
    `instances`, when given, are what the model's config names: settings are chosen for them."""
    if goal not in GOALS:
        raise InvalidArgument(f"goal must be one of {', '.join(GOALS)}, not {goal!r}")
    hw = hardware or probe()
    hw.libraries_for(LIBRARY_RUNTIMES.get(info.format, ""))
    budget = memory or hw.memory_available_bytes
    context, parallel, estimate = size_for_budget(info, goal, budget, instances)
    swa_extra = _swa_full_cost(info, estimate, budget)
    if swa_extra:
        estimate = estimate_memory(info, context, estimate.parallel or 1, estimate.cells, True)
    facts = base_facts(info, hw, goal, latency_ms, budget, estimate)
    facts.update(
        llm_context=context,
        llm_parallel=parallel,
        llm_slots=estimate.parallel or parallel,
        llm_cells=estimate.cells,
        sequences=_plural(parallel, "sequence"),
        swa_full=bool(swa_extra),
        swa_extra_size=human_bytes(swa_extra),
        sliding_window=info.llm.sliding_window if info.llm is not None else 0,
        instances_pinned=instances is not None,
        instances=instances or 1,
        threads_per_instance=max(1, hw.physical_cores // (instances or 1)),
    )
    rec = Recommendation(info, hw, goal, latency_ms, budget, estimate)
    _pick_runtime(rec, facts, runtime)
    _apply_settings(rec, facts)
    _collect(rec, facts)
    return rec


#: The most the full sliding-window cache may add to an LLM's estimate, as a share of it, for
#: the advisor to keep it (prefix reuse past the window is worth that much memory, no more).
SWA_FULL_SHARE = 0.5


def _swa_full_cost(info: ArtifactInfo, estimate: MemoryEstimate, budget: int) -> int:
    """What keeping every token in the sliding-window layers adds (0: not worth it, no such
    layers, or over the budget): prompt prefixes longer than the window are reused only then."""
    if info.llm is None or not info.generates_text or not info.llm.swa_layers:
        return 0
    full = estimate_memory(info, estimate.context, estimate.parallel or 1, estimate.cells, True)
    extra = full.kv_cache - estimate.kv_cache
    if extra <= 0 or full.total > budget or extra > SWA_FULL_SHARE * estimate.total:
        return 0
    return extra


def size_for_budget(
    info: ArtifactInfo, goal: str, budget: int, instances: int | None = None
) -> tuple[int | None, int | None, MemoryEstimate]:
    """Context and KV cache (in whole contexts) for an LLM: the goal's defaults, halved (the
    cache first, then the context down to 512 tokens) until the estimate fits the budget; the
    goal's sequence slots share the cache. `instances` named by a config fix the slots (a
    generation's instance is a sequence slot) and the cache at a context each; then only the
    context shrinks."""
    if info.llm is None:
        return None, None, estimate_memory(info)
    if info.format == "hf" and info.generates_text:  # the transformers runtime's defaults
        estimate = estimate_memory(info, parallel=HF_SLOTS)
        return estimate.context, HF_SLOTS, estimate
    parallel = instances or LLM_PARALLEL[goal]
    if not info.generates_text:
        context = min(info.context_length or LLM_MIN_CONTEXT, EMBEDDING_MAX_CONTEXT)
        return context, parallel, estimate_memory(info)
    context = default_context(info)
    slots = instances or LLM_SLOTS[goal]
    estimate = estimate_memory(info, context, slots, context * parallel)
    shrink_parallel = instances is None
    while estimate.total > budget and (
        (shrink_parallel and parallel > 1) or context > LLM_MIN_CONTEXT
    ):
        if shrink_parallel and parallel > 1:
            parallel //= 2
        else:
            context = max(LLM_MIN_CONTEXT, context // 2)
        estimate = estimate_memory(info, context, slots, context * parallel)
    return context, parallel, estimate


def base_facts(
    info: ArtifactInfo,
    hw: Hardware,
    goal: str,
    latency_ms: float | None,
    budget: int,
    estimate: MemoryEstimate,
) -> dict[str, Any]:
    """Every fact the rules may read (docs/advisor.md lists them)."""
    facts: dict[str, Any] = {
        "format": info.format,
        "container": info.container,
        "task": info.task,
        "goal": goal,
        "llm": info.generates_text,
        "embedding": info.task in ("embedding", "rerank"),
        "dynamic_batch": info.dynamic_batch,
        "architecture": info.architecture or "",
        "trained_context": info.context_length,
        "chat_template": bool(info.details.get("chat_template", True)),
        "skops_untrusted": ", ".join(info.details.get("untrusted_types") or []),
        "params_b": _round((info.parameters or 0) / 1e9),
        "params_m": _round((info.parameters or 0) / 1e6),
        "params": human_count(info.parameters or 0),
        "vector_inputs": vector_inputs(info),
        "estimate_gib": _round(estimate.total / GIB),
        "budget_gib": _round(budget / GIB),
        "kv_gib": _round(estimate.kv_cache / GIB),
        "fits": not estimate.known or estimate.total <= budget,
        "latency_ms": latency_ms,
        "max_batch": MAX_BATCH,
        "batch_delay_us": batch_delay_us(goal, latency_ms),
    }
    facts.update(hardware_facts(hw))
    facts.update(gpu_fit_facts(hw, estimate))
    facts.update(
        {
            f"{k.removesuffix('_gib')}_size": human_bytes(v * GIB)
            for k, v in facts.items()
            if k.endswith("_gib")
        }
    )
    facts["token_ms"] = token_ms(info, hw, bool(facts["fits_gpu"]))
    return facts


def vector_inputs(info: ArtifactInfo) -> bool:
    """Every input is a batch of float feature vectors ([batch, n]): a model whose work per row
    follows its weights (an MLP, a linear or tree model), unlike images or token sequences."""
    return bool(info.inputs) and all(
        len(spec.dims) == 2 and spec.datatype in ("FP16", "FP32", "FP64", "BF16")
        for spec in info.inputs
    )


def hardware_facts(hw: Hardware) -> dict[str, Any]:
    features = hw.llamacpp_features
    amx = hw.isa.get("amx", False)
    return {
        "cores": hw.cores,
        "physical_cores": hw.physical_cores,
        "gpus": len(hw.gpus),
        "loop_free_cores": max(1, hw.physical_cores - 1),
        "gpu_gib": _round(max((g.memory_bytes or 0 for g in hw.gpus), default=0) / GIB),
        "gpus_gib": _round(sum(g.memory_bytes or 0 for g in hw.gpus) / GIB),
        "ep_openvino": "OpenVINOExecutionProvider" in hw.onnx_providers,
        "openvino_installed": hw.installed("openvino"),
        "ep_cuda": "CUDAExecutionProvider" in hw.onnx_providers,
        "amx": amx,
        # built by default (-march=native) llama.cpp uses AMX where the CPU has it
        "llamacpp_amx": amx and (features is None or any("AMX" in f for f in features)),
    }


def gpu_fit_facts(hw: Hardware, estimate: MemoryEstimate) -> dict[str, bool]:
    need = estimate.weights + estimate.kv_cache
    largest = max((g.memory_bytes or 0 for g in hw.gpus), default=0)
    together = sum(g.memory_bytes or 0 for g in hw.gpus)
    return {
        "fits_gpu": bool(hw.gpus) and need <= largest * GPU_USABLE,
        "fits_gpus": bool(hw.gpus) and need <= together * GPU_USABLE,
    }


def batch_delay_us(goal: str, latency_ms: float | None) -> int:
    """No wait for the latency goal; for throughput a quarter of the latency target
    (at most 5 ms), else 2 ms."""
    if goal == "latency":
        return 0
    if latency_ms:
        return int(min(latency_ms * 1000 / 4, 5000))
    return DEFAULT_BATCH_DELAY_US


def token_ms(info: ArtifactInfo, hw: Hardware, on_gpu: bool) -> float | None:
    """Rough time per generated token: every weight is read once per token."""
    if not info.generates_text or not info.weight_bytes:
        return None
    bandwidth = (
        GPU_BANDWIDTH
        if on_gpu
        else min(CPU_BANDWIDTH_PER_CORE * hw.physical_cores, CPU_BANDWIDTH_MAX)
    )
    return _round(info.weight_bytes / bandwidth * 1000)


def _plural(count: int | None, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _round(value: float) -> float:
    return float(f"{value:.3g}")


# ---- applying the tables -------------------------------------------------------------------


def _pick_runtime(rec: Recommendation, facts: dict[str, Any], named: str | None) -> None:
    if named:
        rec.runtime, rec.reasons["runtime"] = named, "named in the model's config"
    else:
        rule = next(r for r in rules.RUNTIME_RULES if rules.matches(r, facts))
        rec.runtime, rec.reasons["runtime"] = rule.runtime, rules.explain(rule.reason, facts)
        rec.rules.append(rule.id)
    known = rec.runtime in RUNTIMES
    facts.update(
        runtime=rec.runtime or "",
        runtime_planned=bool(rec.runtime) and not known,
        runtime_installed=rec.hardware.installed(rec.runtime or ""),
        runtime_extra=RUNTIMES[rec.runtime].extra if rec.runtime and known else "",
    )


def _apply_settings(rec: Recommendation, facts: dict[str, Any]) -> None:
    for rule in rules.SETTING_RULES:
        if not rules.matches(rule, facts):
            continue
        rec.rules.append(rule.id)
        reason = rules.explain(rule.reason, facts)
        for key, value in rule.settings.items():
            rec.settings[key] = rules.resolve(value, facts)
            rec.reasons[key] = reason


def _collect(rec: Recommendation, facts: dict[str, Any]) -> None:
    for rule in rules.ELSEWHERE_RULES:
        if rules.matches(rule, facts):
            rec.rules.append(rule.id)
            rec.alternatives.append(
                Alternative(rule.system, rules.explain(rule.reason, facts), rule.better, rule.id)
            )
    for rule in rules.WARNING_RULES:
        if rules.matches(rule, facts):
            rec.rules.append(rule.id)
            rec.warnings.append(rules.explain(rule.reason, facts))
