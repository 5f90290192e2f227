"""Read a model's configuration: Triton's `config.pbtxt` (protobuf text format into
`model_config_pb2.ModelConfig`), its JSON form (a repository `load` request), or modelyard's
`model.yaml`, into the protocol-neutral `modelyard.spec.config.ModelConfig`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.repository.pipelines import pipeline_from_triton, pipeline_from_yaml
from modelyard.spec.config import (
    TRITON_TO_V2,
    DynamicBatching,
    ModelConfig,
    TensorSpec,
    VersionPolicy,
)
from modelyard.spec.pipeline import PipelineSpec
from modelyard.tensors import DATATYPES

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
    if data.get("platform") == "ensemble" or "ensemble_scheduling" in data:
        config.pipeline = _pipeline_of(pipeline_from_triton, data, config)
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
    "ensemble_scheduling",
}

# Triton platform/backend names -> modelyard runtimes.
_PLATFORMS = {
    "onnxruntime_onnx": "onnx",
    "onnxruntime": "onnx",
    "pytorch_libtorch": "pytorch",
    "pytorch": "pytorch",
    "tensorflow_savedmodel": "tensorflow",
    "tensorflow": "tensorflow",
    "python": "python",
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "fil": None,
    "ensemble": None,  # a pipeline: no runtime of its own (config.pipeline)
}


def _runtime_of(backend: str, platform: str) -> str | None:
    for key in (backend, platform):
        if key:
            return _PLATFORMS.get(key, key)
    return None


def _tensor_from_triton(data: dict[str, Any], kind: str) -> TensorSpec:
    name = data.get("name", "")
    triton_type = data.get("data_type", "TYPE_INVALID")
    if not name or triton_type not in TRITON_TO_V2:
        raise InvalidArgument(f"{kind} {name!r} needs a name and a data_type (got {triton_type})")
    dims = [int(d) for d in data.get("dims", [])]
    reshape = data.get("reshape")
    if reshape is not None:
        raise InvalidArgument(f"{kind} {name!r}: 'reshape' is not supported yet; remove it")
    return TensorSpec(name, TRITON_TO_V2[triton_type], dims, bool(data.get("optional", False)))


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
    "pipeline",
    "goal",
    "tune",
    "autoscaling",
}
#: model.yaml keys that are model parameters by another name (config.pbtxt: parameters).
_YAML_PARAMETERS = ("goal", "tune")


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
    for key in _YAML_PARAMETERS:
        if key in data:
            value = data[key]  # YAML reads a bare off as false
            config.parameters[key] = "off" if value is False else str(value).lower()
    if "pipeline" in data:
        config.pipeline = _pipeline_of(pipeline_from_yaml, data, config)
    if "autoscaling" in data:  # read where the model is deployed (modelyard on Ray)
        config.extra["autoscaling"] = data["autoscaling"]
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


def _pipeline_of(
    reader: Callable[[Any, ModelConfig], PipelineSpec], data: dict[str, Any], config: ModelConfig
) -> PipelineSpec:
    """Read a pipeline section with `reader` and check its wiring against the config's own
    inputs and outputs."""
    pipeline = reader(data, config)
    inputs = [t.name for t in config.inputs]
    pipeline.check(config.name, inputs, [t.name for t in config.outputs])
    config.reasons["pipeline"] = "ensemble_scheduling" if "pipeline" not in data else "pipeline"
    return pipeline


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
