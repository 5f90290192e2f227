"""What `modelyard advise PATH` looks at: a model file, a Hugging Face folder, one model of a
repository (its folder), or a whole repository (every model in it, pipelines included: a
pipeline is advised from its step models' advice)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.advisor.advise import advise
from modelyard.advisor.apply import pinned, runtime_pinned, tuned_pick, with_config
from modelyard.advisor.decode import load_decode
from modelyard.advisor.hardware import Hardware
from modelyard.advisor.inspect import inspect_artifact
from modelyard.advisor.memory import estimate_for_parameters
from modelyard.advisor.pipelines import PipelineAdvice, advise_pipeline, step_facts
from modelyard.advisor.render import Advice
from modelyard.errors import InvalidArgument
from modelyard.repository.scan import ModelSource, read_entry, scan
from modelyard.spec.config import ModelConfig


@dataclass
class Target:
    name: str
    artifact: Path
    config: ModelConfig | None = None
    folder: Path | None = None  # the model's folder in a repository


def find_targets(path: Path) -> tuple[list[Target], list[ModelSource]]:
    """The models at `path` and its pipelines (whose steps are among the models)."""
    if not path.exists():
        raise InvalidArgument(f"{path} does not exist")
    if path.is_file() or (path / "config.json").exists():
        return [Target(path.stem if path.is_file() else path.name, path)], []
    source = read_entry(path)
    if source is not None and source.config.pipeline is not None and not source.error:
        # one pipeline's folder: its steps are its neighbours in the repository
        neighbours = scan([path.parent])
        steps = [neighbours[m] for m in source.config.pipeline.models if m in neighbours]
        return [_target(s) for s in steps if s.config.pipeline is None], [source]
    if source is not None:
        return [_target(source)], []
    found = [s for s in scan([path]).values() if s.versions and not s.error]
    targets = [_target(s) for s in found if s.config.pipeline is None]
    pipelines = [s for s in found if s.config.pipeline is not None]
    if not targets and not pipelines:
        raise InvalidArgument(f"no model in {path}")
    return targets, pipelines


def _target(source: ModelSource) -> Target:
    if source.error or not source.versions:
        raise InvalidArgument(f"model {source.name!r}: {source.error or 'no version found'}")
    if source.config.pipeline is not None:
        raise InvalidArgument(f"{source.name!r} is a pipeline; advise its repository")
    folder = source.path if source.path.is_dir() else None
    return Target(source.name, source.versions[max(source.versions)], source.config, folder)


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
    decode = load_decode(target.artifact, hardware) if info.generates_text else None
    return Advice(target.name, rec, overrides, tuned, decode)


def _config_value(config: ModelConfig | None, key: str) -> Any:
    if config is None:
        return None
    if key.startswith("parameters."):
        return config.parameters.get(key.removeprefix("parameters."))
    if key.startswith("dynamic_batching."):
        batching = config.dynamic_batching
        return getattr(batching, key.removeprefix("dynamic_batching."), None) if batching else 0
    return getattr(config, key, None)


def advise_path(
    path: Path, hardware: Hardware, **options: Any
) -> tuple[list[Advice], list[PipelineAdvice]]:
    """Advice for every model at `path` (a file, a model folder or a repository) and for each
    pipeline there."""
    targets, pipelines = find_targets(path)
    advice = [advise_target(target, hardware, **options) for target in targets]
    by_name = {a.name: (a, t) for a, t in zip(advice, targets, strict=True)}
    return advice, [pipeline_advice(p, by_name) for p in pipelines]


def pipeline_advice(source: ModelSource, steps: dict[str, tuple[Advice, Target]]) -> PipelineAdvice:
    """A pipeline's advice before anything loads, from its step models' advice: each step with
    the runtime and batch size it would be served with (its config's where it names them)."""
    config = source.config
    assert config.pipeline is not None
    facts = {}
    for name in config.pipeline.models:
        if name not in steps:
            continue  # not in the repository: loading the pipeline says so
        advice, target = steps[name]
        rec = advice.recommendation
        step = (target.config or ModelConfig(name)).replace(name=name)
        if not runtime_pinned(step):
            step.runtime = rec.runtime
        if not pinned(step, "max_batch_size"):
            step.max_batch_size = int(rec.settings.get("max_batch_size", step.max_batch_size))
        facts[name] = step_facts(step, target.folder, int(rec.memory.total), loaded=False)
    return advise_pipeline(config.name, config.pipeline, config.max_batch_size, facts)
