"""What a served model is, as every layer sees it: its configuration (`ModelConfig`) and its
tensors (`TensorSpec`). A leaf: it imports nothing of modelyard but errors and tensors, so the
core, the repository, the advisor and the runtimes can all depend on it.

Shapes follow Triton's convention: when `max_batch_size > 0` the first (batch) dimension is
left out of `dims`; -1 marks a dimension of any size. The readers of `config.pbtxt` and
`model.yaml` live in `modelyard.repository.config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from modelyard.spec.pipeline import PipelineSpec
from modelyard.tensors import DATATYPES

# Triton's TYPE_* enum names <-> v2 datatypes.
TRITON_TO_V2 = {"TYPE_STRING": "BYTES", **{f"TYPE_{t}": t for t in DATATYPES if t != "BYTES"}}
V2_TO_TRITON = {v: k for k, v in TRITON_TO_V2.items()}


@dataclass
class TensorSpec:
    name: str
    datatype: str
    dims: list[int]
    optional: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.dims}


@dataclass
class VersionPolicy:
    kind: str = "latest"  # latest | all | specific
    num_versions: int = 1
    versions: list[int] = field(default_factory=list)

    def select(self, available: list[int]) -> list[int]:
        ordered = sorted(available)
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[-self.num_versions :] if self.num_versions > 0 else []


@dataclass
class DynamicBatching:
    max_queue_delay_us: int = 0
    preferred_batch_sizes: list[int] = field(default_factory=list)
    max_queue_size: int = 0
    default_timeout_us: int = 0
    priority_levels: int = 0
    default_priority_level: int = 0


@dataclass
class ModelConfig:
    name: str
    runtime: str | None = None
    platform: str = ""
    max_batch_size: int = 0
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    instance_count: int = 1
    default_model_filename: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    dynamic_batching: DynamicBatching | None = None
    trust_pickle: bool | None = None
    #: The steps of a pipeline (Triton's ensemble_scheduling); None for a single model.
    pipeline: PipelineSpec | None = None
    # Where each setting came from ("config", "inferred from model.onnx", ...), shown to users.
    reasons: dict[str, str] = field(default_factory=dict)
    # The Triton JSON form of everything read, so fields modelyard does not use survive.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def decoupled(self) -> bool:
        """Whether the model may send any number of responses per request (Triton's
        `model_transaction_policy { decoupled: true }`)."""
        policy = self.extra.get("model_transaction_policy") or {}
        return bool(policy.get("decoupled", False))

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_triton_json(self) -> dict[str, Any]:
        """The config in Triton's JSON form (what `GET /v2/models/M/config` returns)."""
        out: dict[str, Any] = dict(self.extra)
        out.update(
            name=self.name,
            platform=self.platform,
            backend=self.runtime or "",
            max_batch_size=self.max_batch_size,
            input=[_tensor_to_triton(t) for t in self.inputs],
            output=[_tensor_to_triton(t) for t in self.outputs],
            version_policy=_policy_to_triton(self.version_policy),
            instance_group=[{"count": self.instance_count, "kind": "KIND_CPU"}],
            default_model_filename=self.default_model_filename,
            parameters={k: {"string_value": v} for k, v in self.parameters.items()},
        )
        if self.dynamic_batching is not None:
            out["dynamic_batching"] = _batching_to_triton(self.dynamic_batching)
        if self.pipeline is not None:
            out["ensemble_scheduling"] = self.pipeline.to_triton()
        return out


def _tensor_to_triton(spec: TensorSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "data_type": V2_TO_TRITON[spec.datatype],
        "dims": spec.dims,
        "optional": spec.optional,
    }


def _policy_to_triton(policy: VersionPolicy) -> dict[str, Any]:
    if policy.kind == "all":
        return {"all": {}}
    if policy.kind == "specific":
        return {"specific": {"versions": policy.versions}}
    return {"latest": {"num_versions": policy.num_versions}}


def _batching_to_triton(batching: DynamicBatching) -> dict[str, Any]:
    return {
        "preferred_batch_size": batching.preferred_batch_sizes,
        "max_queue_delay_microseconds": batching.max_queue_delay_us,
        "priority_levels": batching.priority_levels,
        "default_priority_level": batching.default_priority_level,
        "default_queue_policy": {
            "max_queue_size": batching.max_queue_size,
            "default_timeout_microseconds": batching.default_timeout_us,
        },
    }
