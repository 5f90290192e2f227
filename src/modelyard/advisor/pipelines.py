"""The advisor on pipelines (ensembles, `model.yaml` pipelines, OVMS DAGs): what loading one
costs in memory (its step models that are not loaded yet), and where its steps would batch
better merged or split. It reads facts about each step (its completed config, its folder, its
memory estimate, whether it is loaded), never loads anything.

The rules, each with its id (docs/advisor.md, "Pipelines"):

- `pipeline-merge`: two steps in a chain (the second reads only what the first writes, and
  nothing else reads that) that run on the same Python runtime, or are both ONNX graphs. Each
  step is a queue entry, a batching wait and statistics per request, and for a Python step in a
  worker process a round trip between processes per batch: 60-110 us per request per step,
  measured here (docs/benchmarks.md, "Pipelines"). One step instead of two pays that once.
- `pipeline-split`: a Python step whose folder holds a model file it runs itself (an ONNX graph
  opened with onnxruntime inside `execute`, say): as a step of its own, that model would batch
  across requests in its runtime, and the Python step keep only the code around it.
- `pipeline-unbatched`: a step without a batch dimension in a pipeline whose other steps batch:
  it runs one request at a time and sets the pipeline's pace under load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.advisor.artifact import human_bytes
from modelyard.errors import ModelyardError
from modelyard.runtimes import isolation
from modelyard.spec.config import ModelConfig
from modelyard.spec.pipeline import PipelineSpec

#: Runtimes whose steps are the user's Python code.
PYTHON_RUNTIMES = ("python", "triton_python")
#: Model files a Python step may open itself (config files such as .json/.txt are left out:
#: they are as often settings as XGBoost or LightGBM models).
MODEL_FILES = {
    ".onnx": "onnx",
    ".gguf": "llamacpp",
    ".skops": "sklearn",
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".ubj": "xgboost",
    ".xgb": "xgboost",
    ".lgb": "lightgbm",
    ".safetensors": "transformers",
    ".pt": "pytorch",
    ".pt2": "pytorch",
    ".plan": "tensorrt",
}
#: Extra time a step adds per request, measured on this machine (docs/benchmarks.md).
STEP_COST = "60-110 us per request per step, measured here"


@dataclass
class StepFacts:
    """What the advisor knows of one step model."""

    model: str
    runtime: str
    isolation: str  # "process" | "thread"
    max_batch_size: int
    memory_bytes: int
    loaded: bool  # already loaded (alone or for another pipeline): loading adds nothing
    model_files: list[str] = field(default_factory=list)  # files a Python step opens itself

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "runtime": self.runtime,
            "isolation": self.isolation,
            "max_batch_size": self.max_batch_size,
            "memory_bytes": self.memory_bytes,
            "loaded": self.loaded,
            "model_files": list(self.model_files),
        }


def step_facts(
    config: ModelConfig, folder: Path | None, memory_bytes: int, loaded: bool
) -> StepFacts:
    """The facts of a step from its config (completed by the advisor, or loaded) and folder."""
    runtime = config.runtime or ""
    try:
        mode = isolation(runtime, config)
    except ModelyardError:  # a bad isolation parameter is the load's error to report
        mode = "thread"
    files: list[str] = []
    if runtime in PYTHON_RUNTIMES and folder is not None and folder.is_dir():
        files = sorted(
            str(p.relative_to(folder))
            for p in folder.rglob("*")
            if p.suffix.lower() in MODEL_FILES and p.is_file()
        )
    return StepFacts(config.name, runtime, mode, config.max_batch_size, memory_bytes, loaded, files)


@dataclass
class PipelineNote:
    rule: str
    steps: list[str]
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "steps": list(self.steps), "text": self.text}


@dataclass
class PipelineAdvice:
    name: str
    max_batch_size: int
    steps: list[StepFacts]  # each step model once, in step order
    notes: list[PipelineNote] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # step models not found

    @property
    def memory_bytes(self) -> int:
        """Every step model's estimate (each counted once)."""
        return sum(s.memory_bytes for s in self.steps)

    @property
    def memory_to_load_bytes(self) -> int:
        """What loading the pipeline adds: its step models that are not loaded yet."""
        return sum(s.memory_bytes for s in self.steps if not s.loaded)

    def describe_memory(self) -> str:
        loaded = [s.model for s in self.steps if s.loaded]
        counted = [s for s in self.steps if s.runtime not in PYTHON_RUNTIMES]
        python = [s.model for s in self.steps if s.runtime in PYTHON_RUNTIMES]
        text = f"{human_bytes(self.memory_bytes)}, the sum of its step models' estimates"
        if python:
            text += (
                f" ({', '.join(python)} not counted: a Python model's memory is its code's)"
                if counted
                else " (its steps are Python models, whose memory is their code's)"
            )
        if loaded:
            text += (
                f"; {', '.join(loaded)} already loaded, so loading it adds "
                f"{human_bytes(self.memory_to_load_bytes)}"
            )
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_batch_size": self.max_batch_size,
            "steps": [s.to_json() for s in self.steps],
            "memory_bytes": self.memory_bytes,
            "memory_to_load_bytes": self.memory_to_load_bytes,
            "notes": [n.to_json() for n in self.notes],
            "missing": list(self.missing),
        }


def advise_pipeline(
    name: str, spec: PipelineSpec, max_batch_size: int, facts: dict[str, StepFacts]
) -> PipelineAdvice:
    """The advice for the pipeline `name` from the facts of its step models (by model name)."""
    steps = [facts[m] for m in spec.models if m in facts]
    advice = PipelineAdvice(name, max_batch_size, steps)
    advice.missing = [m for m in spec.models if m not in facts]
    advice.notes += _merges(spec, facts)
    advice.notes += _splits(spec, facts)
    advice.notes += _unbatched(spec, facts)
    return advice


def _merges(spec: PipelineSpec, facts: dict[str, StepFacts]) -> list[PipelineNote]:
    notes = []
    for first, second in _chained_pairs(spec):
        a, b = facts.get(spec.steps[first].model), facts.get(spec.steps[second].model)
        if a is None or b is None or a.model == b.model:
            continue
        if a.runtime in PYTHON_RUNTIMES and a.runtime == b.runtime:
            how = "one Python model (its execute doing both)"
            hops = (
                " and a round trip to a worker process per batch"
                if "process" in (a.isolation, b.isolation)
                else ""
            )
        elif a.runtime == b.runtime == "onnx":
            how = "one ONNX graph (onnx.compose.merge_models)"
            hops = ""
        else:
            continue
        notes.append(
            PipelineNote(
                "pipeline-merge",
                [a.model, b.model],
                f"steps {a.model!r} and {b.model!r} form a chain on {a.runtime}: merged into "
                f"{how} they would batch once instead of twice; each step costs a queue, a "
                f"batching wait{hops} ({STEP_COST})",
            )
        )
    return notes


def _chained_pairs(spec: PipelineSpec) -> list[tuple[int, int]]:
    """(i, j): step j reads only tensors step i writes, and nothing else reads them."""
    produced = spec.produced()
    readers: dict[str, set[int]] = {}
    for j, step in enumerate(spec.steps):
        for tensor in step.inputs.values():
            readers.setdefault(tensor, set()).add(j)
    pairs = []
    for j, step in enumerate(spec.steps):
        sources = {produced.get(t) for t in step.inputs.values()}
        if len(sources) != 1 or None in sources:
            continue
        (i,) = sources
        assert i is not None
        written = spec.steps[i].outputs.values()
        if all(readers.get(t, set()) == {j} for t in written):
            pairs.append((i, j))
    return pairs


def _splits(spec: PipelineSpec, facts: dict[str, StepFacts]) -> list[PipelineNote]:
    notes = []
    for model in spec.models:
        step = facts.get(model)
        if step is None or not step.model_files:
            continue
        files = ", ".join(step.model_files)
        runtimes = sorted({MODEL_FILES[Path(f).suffix.lower()] for f in step.model_files})
        notes.append(
            PipelineNote(
                "pipeline-split",
                [model],
                f"step {model!r} is Python code with a model file beside it ({files}): "
                f"served as a step of its own, that model would batch across requests on "
                f"{' or '.join(runtimes)}, and {model!r} keep only the code around it",
            )
        )
    return notes


def _unbatched(spec: PipelineSpec, facts: dict[str, StepFacts]) -> list[PipelineNote]:
    steps = [facts[m] for m in spec.models if m in facts]
    single = [s.model for s in steps if s.max_batch_size <= 0]
    if not single or len(single) == len(steps):
        return []
    return [
        PipelineNote(
            "pipeline-unbatched",
            single,
            f"step model {', '.join(map(repr, single))} has no batch dimension "
            "(max_batch_size 0) and runs one request at a time while the other steps batch; "
            "under load it sets the pipeline's pace: give it a batch dimension, or merge it "
            "into a batched neighbour",
        )
    ]
