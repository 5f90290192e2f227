"""What `modelyard advise PATH` looks at: a model file, a Hugging Face folder, one model of a
repository (its folder), or a whole repository (every model in it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.advisor.advise import advise
from modelyard.advisor.apply import pinned, runtime_pinned, tuned_pick, with_config
from modelyard.advisor.hardware import Hardware
from modelyard.advisor.inspect import inspect_artifact
from modelyard.advisor.memory import estimate_for_parameters
from modelyard.advisor.render import Advice
from modelyard.errors import InvalidArgument
from modelyard.repository.scan import ModelSource, read_entry, scan
from modelyard.spec.config import ModelConfig


@dataclass
class Target:
    name: str
    artifact: Path
    config: ModelConfig | None = None


def find_targets(path: Path) -> list[Target]:
    if not path.exists():
        raise InvalidArgument(f"{path} does not exist")
    if path.is_file() or (path / "config.json").exists():
        return [Target(path.stem if path.is_file() else path.name, path)]
    source = read_entry(path)
    if source is not None:
        return [_target(source)]
    found = [_target(s) for s in scan([path]).values() if s.versions and not s.error]
    if not found:
        raise InvalidArgument(f"no model in {path}")
    return found


def _target(source: ModelSource) -> Target:
    if source.error or not source.versions:
        raise InvalidArgument(f"model {source.name!r}: {source.error or 'no version found'}")
    return Target(source.name, source.versions[max(source.versions)], source.config)


def advise_target(target: Target, hardware: Hardware, **options: Any) -> Advice:
    """The advice for one target; settings its config already decides are marked."""
    info = with_config(inspect_artifact(target.artifact), target.config)
    config = target.config
    named = config.runtime if config is not None and runtime_pinned(config) else None
    instances = config.instance_count if config and pinned(config, "instance_count") else None
    rec = advise(info, hardware, runtime=named, instances=instances, **options)
    overrides = {
        k: _config_value(config, k)
        for k in rec.settings
        if config is not None and pinned(config, k)
    }
    if config is not None and info.llm is not None:
        # the memory it will take is at the context and sequences it will load with
        parameters = {
            k.removeprefix("parameters."): str(v)
            for k, v in rec.settings.items()
            if k.startswith("parameters.")
        }
        rec.memory = estimate_for_parameters(info, {**parameters, **config.parameters})
    config = config or ModelConfig(target.name)
    tuned = tuned_pick(config, target.artifact, rec.runtime, rec.goal, hardware)
    return Advice(target.name, rec, overrides, tuned)


def _config_value(config: ModelConfig | None, key: str) -> Any:
    if config is None:
        return None
    if key.startswith("parameters."):
        return config.parameters.get(key.removeprefix("parameters."))
    if key.startswith("dynamic_batching."):
        batching = config.dynamic_batching
        return getattr(batching, key.removeprefix("dynamic_batching."), None) if batching else 0
    return getattr(config, key, None)


def advise_path(path: Path, hardware: Hardware, **options: Any) -> list[Advice]:
    """Advice for every model at `path` (a file, a model folder or a repository)."""
    return [advise_target(target, hardware, **options) for target in find_targets(path)]
