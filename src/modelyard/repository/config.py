"""A model's configuration: one protocol-neutral dataclass, read from Triton's `config.pbtxt`
(protobuf text format into `model_config_pb2.ModelConfig`) or from modelyard's `model.yaml`.

Shapes follow Triton's convention: when `max_batch_size > 0` the first (batch) dimension is
left out of `dims`; -1 marks a dimension of any size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.tensors import DATATYPES

# Triton's TYPE_* enum names <-> v2 datatypes.
_TRITON_TO_V2 = {"TYPE_STRING": "BYTES", **{f"TYPE_{t}": t for t in DATATYPES if t != "BYTES"}}
_V2_TO_TRITON = {v: k for k, v in _TRITON_TO_V2.items()}


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
    # Where each setting came from ("config", "inferred from model.onnx", ...), shown to users.
    reasons: dict[str, str] = field(default_factory=dict)
    # The Triton JSON form of everything read, so fields modelyard does not use survive.
    extra: dict[str, Any] = field(default_factory=dict)

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
        return out


def _tensor_to_triton(spec: TensorSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "data_type": _V2_TO_TRITON[spec.datatype],
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


# ---- Triton config.pbtxt -------------------------------------------------------------------


def parse_pbtxt(text: str, name: str) -> ModelConfig:
    """Read a Triton `config.pbtxt` through protobuf's text format."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    message = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise InvalidArgument(f"config.pbtxt of model {name!r} does not parse: {exc}") from exc
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return from_triton_json(data, name)


def from_triton_json(data: dict[str, Any], name: str) -> ModelConfig:
    """Build a config from Triton's JSON form (config.pbtxt, or a repository `load` request)."""
    if data.get("name") and data["name"] != name:
        raise InvalidArgument(f"config names model {data['name']!r} but its folder is {name!r}")
    config = ModelConfig(
        name=name,
        runtime=_runtime_of(data.get("backend", ""), data.get("platform", "")),
        platform=data.get("platform", ""),
        max_batch_size=int(data.get("max_batch_size", 0)),
        inputs=[_tensor_from_triton(t, "input") for t in data.get("input", [])],
        outputs=[_tensor_from_triton(t, "output") for t in data.get("output", [])],
        version_policy=_policy_from_triton(data.get("version_policy", {})),
        instance_count=sum(int(g.get("count", 1)) for g in data.get("instance_group", [])) or 1,
        default_model_filename=data.get("default_model_filename", ""),
        parameters={
            k: str(v.get("string_value", "")) for k, v in data.get("parameters", {}).items()
        },
        extra={k: v for k, v in data.items() if k not in _KNOWN_TRITON_KEYS},
    )
    if "dynamic_batching" in data:
        config.dynamic_batching = _batching_from_triton(data["dynamic_batching"])
    config.trust_pickle = _bool_param(config.parameters.get("trust_pickle"))
    config.reasons = {k: "config.pbtxt" for k in data}
    for key in ("platform", "backend"):
        if data.get(key):
            config.reasons["runtime"] = f"{key} {data[key]!r} in config.pbtxt"
    return config


_KNOWN_TRITON_KEYS = {
    "name",
    "platform",
    "backend",
    "max_batch_size",
    "input",
    "output",
    "version_policy",
    "instance_group",
    "default_model_filename",
    "parameters",
    "dynamic_batching",
}

# Triton platform/backend names -> modelyard runtimes.
_PLATFORMS = {
    "onnxruntime_onnx": "onnx",
    "onnxruntime": "onnx",
    "python": "python",
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "fil": None,
}


def _runtime_of(backend: str, platform: str) -> str | None:
    for key in (backend, platform):
        if key:
            return _PLATFORMS.get(key, key)
    return None


def _tensor_from_triton(data: dict[str, Any], kind: str) -> TensorSpec:
    name = data.get("name", "")
    triton_type = data.get("data_type", "TYPE_INVALID")
    if not name or triton_type not in _TRITON_TO_V2:
        raise InvalidArgument(f"{kind} {name!r} needs a name and a data_type (got {triton_type})")
    dims = [int(d) for d in data.get("dims", [])]
    reshape = data.get("reshape")
    if reshape is not None:
        raise InvalidArgument(f"{kind} {name!r}: 'reshape' is not supported yet; remove it")
    return TensorSpec(name, _TRITON_TO_V2[triton_type], dims, bool(data.get("optional", False)))


def _policy_from_triton(data: dict[str, Any]) -> VersionPolicy:
    if "all" in data:
        return VersionPolicy("all")
    if "specific" in data:
        return VersionPolicy("specific", versions=[int(v) for v in data["specific"]["versions"]])
    latest = data.get("latest", {})
    return VersionPolicy("latest", num_versions=int(latest.get("num_versions", 1)))


def _batching_from_triton(data: dict[str, Any]) -> DynamicBatching:
    policy = data.get("default_queue_policy", {})
    return DynamicBatching(
        max_queue_delay_us=int(data.get("max_queue_delay_microseconds", 0)),
        preferred_batch_sizes=[int(b) for b in data.get("preferred_batch_size", [])],
        max_queue_size=int(policy.get("max_queue_size", 0)),
        default_timeout_us=int(policy.get("default_timeout_microseconds", 0)),
        priority_levels=int(data.get("priority_levels", 0)),
        default_priority_level=int(data.get("default_priority_level", 0)),
    )


def _bool_param(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")


# ---- modelyard model.yaml ------------------------------------------------------------------

_YAML_KEYS = {
    "runtime",
    "file",
    "max_batch_size",
    "inputs",
    "outputs",
    "versions",
    "instances",
    "parameters",
    "dynamic_batching",
    "trust_pickle",
    "platform",
}


def from_yaml(data: Any, name: str) -> ModelConfig:
    """Read modelyard's `model.yaml` (see docs/repository.md for its keys)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"model.yaml of {name!r} must be a mapping")
    unknown = set(data) - _YAML_KEYS
    if unknown:
        raise InvalidArgument(
            f"model.yaml of {name!r}: unknown keys {sorted(unknown)}; known: {sorted(_YAML_KEYS)}"
        )
    config = ModelConfig(
        name=name,
        runtime=data.get("runtime"),
        platform=str(data.get("platform", "")),
        max_batch_size=int(data.get("max_batch_size", 0)),
        inputs=[_tensor_from_yaml(t, name) for t in data.get("inputs", [])],
        outputs=[_tensor_from_yaml(t, name) for t in data.get("outputs", [])],
        version_policy=_policy_from_yaml(data.get("versions", "latest")),
        instance_count=int(data.get("instances", 1)),
        default_model_filename=str(data.get("file", "")),
        parameters={str(k): str(v) for k, v in (data.get("parameters") or {}).items()},
        trust_pickle=data.get("trust_pickle"),
    )
    if "dynamic_batching" in data:
        batching = data["dynamic_batching"] or {}
        config.dynamic_batching = DynamicBatching(
            max_queue_delay_us=int(batching.get("max_queue_delay_us", 0)),
            preferred_batch_sizes=[int(b) for b in batching.get("preferred_batch_sizes", [])],
            max_queue_size=int(batching.get("max_queue_size", 0)),
            default_timeout_us=int(batching.get("default_timeout_us", 0)),
            priority_levels=int(batching.get("priority_levels", 0)),
            default_priority_level=int(batching.get("default_priority_level", 0)),
        )
    config.reasons = {k: "model.yaml" for k in data}
    return config


def _tensor_from_yaml(data: Any, model: str) -> TensorSpec:
    if not isinstance(data, dict) or "name" not in data or "datatype" not in data:
        raise InvalidArgument(f"model.yaml of {model!r}: each tensor needs name and datatype")
    datatype = str(data["datatype"]).upper()
    if datatype not in DATATYPES:
        raise InvalidArgument(
            f"model.yaml of {model!r}: tensor {data['name']!r} has unknown datatype {datatype}"
        )
    raw_dims = data["shape"] if "shape" in data else data.get("dims", [-1])
    dims = [int(d) for d in raw_dims]
    return TensorSpec(str(data["name"]), datatype, dims, bool(data.get("optional", False)))


def _policy_from_yaml(value: Any) -> VersionPolicy:
    if value == "all":
        return VersionPolicy("all")
    if value == "latest":
        return VersionPolicy("latest", 1)
    if isinstance(value, dict) and "latest" in value:
        return VersionPolicy("latest", int(value["latest"]))
    if isinstance(value, list):
        return VersionPolicy("specific", versions=[int(v) for v in value])
    raise InvalidArgument(
        f"versions must be 'latest', 'all', {{latest: N}} or a list, got {value!r}"
    )
