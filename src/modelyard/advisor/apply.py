"""The advisor wired into the repository: a model's config, completed with the advisor's
choices wherever the config leaves a setting out, each choice's reason in `config.reasons`
(shown in the startup log, `modelyard list` and the model's metadata). A config always wins.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from modelyard.advisor.advise import GOALS, Recommendation, advise
from modelyard.advisor.artifact import ArtifactInfo
from modelyard.advisor.hardware import Hardware, probe
from modelyard.advisor.inspect import inspect_artifact
from modelyard.advisor.memory import MemoryEstimate, check_budget, estimate_for_parameters
from modelyard.advisor.tuned import TUNED_RUNTIMES, TunedPick, load_tuned
from modelyard.errors import ModelLoadError, ModelyardError
from modelyard.runtimes import RUNTIMES
from modelyard.spec.config import DynamicBatching, ModelConfig

log = logging.getLogger("modelyard.advisor")

#: Reasons that say the user wrote a setting (rather than the scan inferring it).
CONFIG_SOURCES = ("config.pbtxt", "model.yaml", "load request")
#: setting -> the config keys (model.yaml, config.pbtxt) that pin it
_PINNED_BY = {
    "instance_count": ("instances", "instance_group"),
    "max_batch_size": ("max_batch_size",),
}
PREFIX = "advisor: "
TUNED_PREFIX = "tuned: "
#: Values of a model's `tune` parameter: `auto` tunes it in the background after it loads
#: (the server's part), `off` ignores any tuned config; absent: a tuned config is used if one
#: was measured for this artifact on this machine.
TUNE_MODES = ("auto", "off")


def advise_config(
    config: ModelConfig, artifact: Path, *, goal: str = "latency", hardware: Hardware | None = None
) -> ModelConfig:
    """`config` with the advisor's runtime and settings filled in where it is silent: a
    tuned pick measured for this artifact on this machine (advisor/tuned.py), else the rules'.
    The `goal` parameter of the config wins over `goal`."""
    goal = model_goal(config, goal)
    try:
        info = inspect_artifact(artifact)
    except ModelyardError as exc:
        log.warning("model %s: the advisor cannot inspect %s: %s", config.name, artifact, exc)
        return config
    rec, picked = _recommend(config, with_config(info, config), goal, hardware)
    out = config.replace(reasons=dict(config.reasons), parameters=dict(config.parameters))
    if picked:
        out.runtime = rec.runtime
        out.reasons["runtime"] = PREFIX + rec.reasons["runtime"]
    chosen = [key for key in rec.settings if not pinned(config, key)]
    if "parameters.kv_size" in chosen and pinned(config, "parameters.n_seq_max"):
        # sequences the config names keep a whole context each (the runtime's default)
        chosen.remove("parameters.kv_size")
    for key in chosen:
        _set(out, key, rec.settings[key], rec.reasons[key])
    tuned = tuned_pick(config, artifact, out.runtime, goal, hardware)
    if tuned is not None:
        for key, value in tuned.settings.items():
            if not pinned(config, key):
                _set(out, key, value, tuned.reason, TUNED_PREFIX)
        chosen += [k for k in tuned.settings if k not in chosen and not pinned(config, k)]
    if chosen:
        log.info(
            "model %s: the %s chose %s",
            config.name,
            "tuned config" if tuned is not None else "advisor",
            ", ".join(f"{k}={_value(out, k)}" for k in chosen if k in out.reasons),
        )
    return out


def model_goal(config: ModelConfig, default: str) -> str:
    """The goal a model is configured for: its `goal` parameter, else `default`."""
    goal = config.parameters.get("goal", default)
    if goal not in GOALS:
        raise ModelLoadError(
            f"model {config.name!r}: parameter goal must be one of {', '.join(GOALS)}, not {goal!r}"
        )
    return goal


def tuned_pick(
    config: ModelConfig,
    artifact: Path,
    runtime: str | None,
    goal: str,
    hardware: Hardware | None = None,
) -> TunedPick | None:
    """The tuned pick cached for this artifact, machine, goal and runtime (None: none, or
    the model's `tune` parameter is `off`)."""
    mode = config.parameters.get("tune", "")
    if mode and mode not in TUNE_MODES:
        raise ModelLoadError(
            f"model {config.name!r}: parameter tune must be auto or off, not {mode!r}"
        )
    if mode == "off" or runtime not in TUNED_RUNTIMES:
        return None
    try:
        pick = load_tuned(artifact, goal, hardware or probe(), latency_bound(config))
    except OSError as exc:
        log.warning("model %s: cannot read its tuned config: %s", config.name, exc)
        return None
    return pick if pick is not None and pick.runtime == runtime else None


def latency_bound(config: ModelConfig) -> float | None:
    """The model's `latency_ms` parameter: the bound its tuned pick was measured under."""
    value = config.parameters.get("latency_ms")
    if value is None:
        return None
    try:
        bound = float(value)
    except ValueError:
        bound = 0.0
    if bound <= 0:
        raise ModelLoadError(
            f"model {config.name!r}: parameter latency_ms must be a positive number of "
            f"milliseconds, not {value!r}"
        )
    return bound


def _value(config: ModelConfig, key: str) -> Any:
    return config.reasons[key].split(" — ", 1)[0].split(": ", 1)[1]


def with_config(info: ArtifactInfo, config: ModelConfig | None) -> ArtifactInfo:
    """What the config adds to the artifact: a Python model's signature, embedding mode."""
    if config is None:
        return info
    if not info.inputs and config.inputs:
        info.inputs, info.outputs = list(config.inputs), list(config.outputs)
    if config.parameters.get("embedding", "").lower() in ("1", "true", "yes", "on"):
        info.task = "embedding"
    return info


def _recommend(
    config: ModelConfig, info: ArtifactInfo, goal: str, hardware: Hardware | None
) -> tuple[Recommendation, bool]:
    """The recommendation, and whether the advisor picked the runtime."""
    named = config.runtime if runtime_pinned(config) else None
    instances = config.instance_count if pinned(config, "instance_count") else None
    rec = advise(info, hardware, goal=goal, runtime=named, instances=instances)
    if named is None and rec.runtime in RUNTIMES:
        return rec, True
    if named is None and config.runtime:
        # the advisor's pick is not in this build: choose settings for the one found on disk
        rec = advise(info, hardware, goal=goal, runtime=config.runtime, instances=instances)
    return rec, False


def runtime_pinned(config: ModelConfig) -> bool:
    """A runtime named by the config (backend/platform/runtime), not inferred by the scan."""
    if config.runtime is None:
        return False
    reason = config.reasons.get("runtime")
    return reason is None or any(source in reason for source in CONFIG_SOURCES)


def pinned(config: ModelConfig, key: str) -> bool:
    """Whether the config decides `key` (a setting name as the rules write it)."""
    if key.startswith("parameters."):
        return key.removeprefix("parameters.") in config.parameters
    if key.startswith("dynamic_batching."):
        return "dynamic_batching" in config.reasons or config.dynamic_batching is not None
    if key == "max_batch_size" and (config.inputs or config.outputs):
        return True  # the config's shapes were written for its own batching choice
    return any(source in config.reasons for source in _PINNED_BY.get(key, (key,)))


def _set(config: ModelConfig, key: str, value: Any, reason: str, prefix: str = PREFIX) -> None:
    if key.startswith("dynamic_batching.") and config.max_batch_size <= 0:
        return  # a model that takes no batch dimension is not batched
    if key.startswith("parameters."):
        config.parameters[key.removeprefix("parameters.")] = str(value)
    elif key.startswith("dynamic_batching."):
        config.dynamic_batching = config.dynamic_batching or DynamicBatching()
        setattr(config.dynamic_batching, key.removeprefix("dynamic_batching."), int(value))
    else:
        setattr(config, key, int(value))
    config.reasons[key] = f"{prefix}{value} — {reason}"


# ---- memory budget -------------------------------------------------------------------------


def estimate_for(config: ModelConfig, artifact: Path) -> MemoryEstimate:
    """What serving this model is estimated to take, with the settings it will be loaded with:
    its config's, and the advisor's where the config is silent (context and parallel sequences
    for LLMs). InvalidArgument when the artifact cannot be inspected."""
    info = with_config(inspect_artifact(artifact), config)
    return estimate_for_parameters(info, advise_config(config, artifact).parameters)


def refuse_over_budget(config: ModelConfig, artifact: Path, budget: int, used: int = 0) -> None:
    """Raise ResourceExhausted, before anything is loaded, when `used` bytes plus the model's
    estimate pass `budget`; the message carries the estimate."""
    check_budget(config.name, estimate_for(config, artifact), budget, used)
