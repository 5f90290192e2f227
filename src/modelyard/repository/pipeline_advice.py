"""The advisor's pipeline advice (advisor/pipelines.py) for a pipeline the server loads: from
its loaded step models, with what loading it added to memory."""

from __future__ import annotations

from modelyard.advisor.apply import PREFIX
from modelyard.advisor.pipelines import PipelineAdvice, advise_pipeline, step_facts
from modelyard.repository.residency import served_estimate
from modelyard.repository.scan import ModelSource
from modelyard.spec.config import ModelConfig


def served_advice(
    config: ModelConfig, steps: dict[str, tuple[ModelConfig, ModelSource]], loaded: set[str]
) -> PipelineAdvice:
    """The advice for a pipeline being served: `steps` maps each step model to its loaded
    config and its source; `loaded` names those that were loaded before the pipeline (so
    loading the pipeline added nothing for them). Reads the step files: call on a thread."""
    assert config.pipeline is not None
    facts = {
        name: step_facts(
            step,
            source.path if source.path.is_dir() else None,
            served_estimate(source.config, source.versions),
            name in loaded,
        )
        for name, (step, source) in steps.items()
    }
    return advise_pipeline(config.name, config.pipeline, config.max_batch_size, facts)


def advised_reasons(advice: PipelineAdvice) -> dict[str, str]:
    """The advice as a pipeline's reasons (shown in its metadata, `modelyard list`, the log)."""
    reasons = {"memory": PREFIX + advice.describe_memory()}
    for note in advice.notes:
        text = reasons.get(note.rule)
        reasons[note.rule] = f"{text}; {note.text}" if text else PREFIX + note.text
    return reasons
