"""A pipeline of models as every layer sees it: steps that each call one model, wired by
tensor names into a DAG (Triton's ensemble, a `model.yaml` `pipeline:` section, an OVMS DAG).

A step maps the pipeline's tensors to its model's inputs (`inputs`: model input -> pipeline
tensor) and its model's outputs to new pipeline tensors (`outputs`: model output -> pipeline
tensor). The pipeline's own inputs are tensors no step produces; its outputs are tensors some
step produces. `check` finds what is wrong with the wiring alone (before any model loads):
a tensor read that nobody produces, one produced twice, a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidArgument

#: `version` of a step that means "the highest loaded version" (Triton's -1).
LATEST = -1


@dataclass
class Step:
    model: str
    version: int = LATEST
    #: model input name -> pipeline tensor it reads
    inputs: dict[str, str] = field(default_factory=dict)
    #: model output name -> pipeline tensor it writes
    outputs: dict[str, str] = field(default_factory=dict)

    def describe(self, index: int) -> str:
        """How errors name the step: its 1-based position and its model."""
        return f"step {index + 1} (model {self.model!r})"

    def to_triton(self) -> dict[str, Any]:
        return {
            "model_name": self.model,
            "model_version": self.version,
            "input_map": dict(self.inputs),
            "output_map": dict(self.outputs),
        }


@dataclass
class PipelineSpec:
    steps: list[Step] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        """The step models, each once, in step order."""
        return list(dict.fromkeys(s.model for s in self.steps))

    def produced(self) -> dict[str, int]:
        """Each tensor a step writes -> the index of that step."""
        return {t: i for i, s in enumerate(self.steps) for t in s.outputs.values()}

    def check(self, name: str, inputs: list[str], outputs: list[str]) -> None:
        """Refuse wiring that cannot run, naming the step; `inputs` and `outputs` are the
        pipeline's own tensor names."""
        if not self.steps:
            raise InvalidArgument(f"pipeline {name!r} has no steps")
        producer = self._producers(name, inputs)
        for i, step in enumerate(self.steps):
            for model_input, tensor in step.inputs.items():
                if tensor not in producer and tensor not in inputs:
                    raise InvalidArgument(
                        f"pipeline {name!r} {step.describe(i)} reads tensor {tensor!r} "
                        f"(for its input {model_input!r}), which no step produces and the "
                        f"pipeline does not take as an input (inputs: {sorted(inputs)})"
                    )
        for tensor in outputs:
            if tensor not in producer:
                raise InvalidArgument(f"pipeline {name!r} output {tensor!r} is produced by no step")
        self._check_acyclic(name, producer)

    def _producers(self, name: str, inputs: list[str]) -> dict[str, int]:
        """Each tensor a step writes -> that step; refuses a tensor written twice."""
        producer: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            if not step.model:
                raise InvalidArgument(f"pipeline {name!r} step {i + 1} names no model")
            for tensor in step.outputs.values():
                if tensor in producer or tensor in inputs:
                    raise InvalidArgument(
                        f"pipeline {name!r} {step.describe(i)} writes tensor {tensor!r}, "
                        "which another step or the request already provides"
                    )
                producer[tensor] = i
        return producer

    def _check_acyclic(self, name: str, producer: dict[str, int]) -> None:
        """Kahn's order over steps; whatever cannot be ordered is on a cycle."""
        needs = {
            i: {producer[t] for t in s.inputs.values() if t in producer}
            for i, s in enumerate(self.steps)
        }
        done: set[int] = set()
        while True:
            ready = [i for i, deps in needs.items() if i not in done and deps <= done]
            if not ready:
                break
            done.update(ready)
        stuck = [i for i in needs if i not in done]
        if stuck:
            named = ", ".join(self.steps[i].describe(i) for i in stuck)
            raise InvalidArgument(f"pipeline {name!r} has a cycle through {named}")

    def to_triton(self) -> dict[str, Any]:
        """Triton's `ensemble_scheduling` (JSON form)."""
        return {"step": [s.to_triton() for s in self.steps]}
