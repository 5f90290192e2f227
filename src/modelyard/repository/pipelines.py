"""Read a pipeline's steps from the ways people write one: Triton's `ensemble_scheduling`
(config.pbtxt or its JSON form), a `model.yaml` `pipeline:` section, and an OVMS
`pipeline_config_list` entry. Each gives the same `PipelineSpec`; the wiring is checked by
`PipelineSpec.check`, the types and shapes when the step models load (`core/pipeline.py`).

A pipeline tensor written without a datatype (OVMS never writes one, model.yaml may leave it
out) has datatype "" here: the core takes it from the step that reads or writes it.
"""

from __future__ import annotations

from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.spec.config import ModelConfig, TensorSpec
from modelyard.spec.pipeline import LATEST, PipelineSpec, Step
from modelyard.tensors import DATATYPES

# ---- Triton ensemble_scheduling -----------------------------------------------------------


def pipeline_from_triton(data: dict[str, Any], config: ModelConfig) -> PipelineSpec:
    """`ensemble_scheduling { step [ { model_name model_version input_map output_map } ] }`
    (protobuf's JSON form writes the int64 version as a string)."""
    scheduling = data.get("ensemble_scheduling")
    if not isinstance(scheduling, dict) or not scheduling.get("step"):
        raise InvalidArgument(
            f"ensemble {config.name!r} needs ensemble_scheduling {{ step [ ... ] }} "
            "naming the models it runs"
        )
    return PipelineSpec([_triton_step(s, config.name) for s in scheduling["step"]])


def _triton_step(data: dict[str, Any], name: str) -> Step:
    try:
        version = int(data.get("model_version", LATEST))
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"ensemble {name!r} step {data.get('model_name')!r}: model_version must be a "
            f"number (-1 for the latest), got {data.get('model_version')!r}"
        ) from None
    return Step(
        model=str(data.get("model_name", "")),
        version=version,
        inputs=_mapping(data.get("input_map", {}), name, "input_map"),
        outputs=_mapping(data.get("output_map", {}), name, "output_map"),
    )


def _mapping(value: Any, name: str, key: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArgument(
            f"pipeline {name!r}: {key} must map the model's tensor names to pipeline tensor "
            f"names, got {value!r}"
        )
    return dict(value)


# ---- model.yaml pipeline: -------------------------------------------------------------------


def pipeline_from_yaml(data: dict[str, Any], config: ModelConfig) -> PipelineSpec:
    """A `pipeline:` section: `steps` (each `model`, optional `version`, `inputs` and
    `outputs` mappings), and optionally `inputs` / `outputs` of the pipeline (names, or
    tensors with name, datatype and shape), which replace the config's own."""
    section = data["pipeline"]
    if not isinstance(section, dict) or not isinstance(section.get("steps"), list):
        raise InvalidArgument(
            f"model.yaml of {config.name!r}: pipeline needs a list of steps, each with "
            "model, inputs and outputs"
        )
    unknown = set(section) - {"steps", "inputs", "outputs"}
    if unknown:
        raise InvalidArgument(
            f"model.yaml of {config.name!r}: unknown pipeline keys {sorted(unknown)}; "
            "known: inputs, outputs, steps"
        )
    for key, target in (("inputs", config.inputs), ("outputs", config.outputs)):
        if key in section:
            target[:] = [_tensor(t, config.name) for t in section[key] or []]
    return PipelineSpec([_yaml_step(s, config.name) for s in section["steps"]])


def _yaml_step(data: Any, name: str) -> Step:
    if not isinstance(data, dict) or "model" not in data:
        raise InvalidArgument(f"model.yaml of {name!r}: each pipeline step needs a model")
    unknown = set(data) - {"model", "version", "inputs", "outputs"}
    if unknown:
        raise InvalidArgument(
            f"model.yaml of {name!r}: step {data['model']!r} has unknown keys "
            f"{sorted(unknown)}; known: inputs, model, outputs, version"
        )
    return Step(
        model=str(data["model"]),
        version=int(data.get("version", LATEST)),
        inputs=_mapping(data.get("inputs") or {}, name, "inputs"),
        outputs=_mapping(data.get("outputs") or {}, name, "outputs"),
    )


def _tensor(data: Any, name: str) -> TensorSpec:
    """A pipeline tensor: a bare name (typed at load from its steps) or a full tensor."""
    if isinstance(data, str):
        return TensorSpec(data, "", [])
    if not isinstance(data, dict) or "name" not in data:
        raise InvalidArgument(
            f"pipeline {name!r}: a pipeline tensor is a name or {{name, datatype, shape}}"
        )
    datatype = str(data.get("datatype", "")).upper()
    if datatype and datatype not in DATATYPES:
        raise InvalidArgument(
            f"pipeline {name!r}: tensor {data['name']!r} has unknown datatype {datatype}"
        )
    dims = [int(d) for d in data.get("shape") or data.get("dims") or []]
    return TensorSpec(str(data["name"]), datatype, dims)


# ---- OVMS pipeline_config_list -------------------------------------------------------------


def pipeline_from_ovms(data: dict[str, Any]) -> ModelConfig:
    """One `pipeline_config_list` entry: `name`, `inputs` (names), `nodes` of type
    `DL model` (each `model_name`, optional `version`, `inputs` as `[{model input:
    {node_name, data_item}}]` and `outputs` as `[{data_item, alias}]`) and `outputs` as
    `[{name: {node_name, data_item}}]`. Node tensors become pipeline tensors `node/alias`;
    the `request` node's are the pipeline's inputs, the response's outputs are renamed to
    the names the pipeline answers with."""
    name = str(data.get("name", ""))
    if not name:
        raise InvalidArgument("an OVMS pipeline_config_list entry needs a name")
    inputs = [str(i) for i in data.get("inputs", [])]
    steps = [_ovms_node(n, name) for n in data.get("nodes", [])]
    config = ModelConfig(
        name=name, platform="ensemble", inputs=[TensorSpec(i, "", []) for i in inputs]
    )
    renames: dict[str, str] = {}
    for item in data.get("outputs", []):
        for out_name, source in _pairs(item, name, "outputs"):
            renames[_ovms_tensor(source, name)] = out_name
            config.outputs.append(TensorSpec(out_name, "", []))
    for step in steps:
        step.outputs = {k: renames.get(v, v) for k, v in step.outputs.items()}
    for step in steps:
        step.inputs = {k: renames.get(v, v) for k, v in step.inputs.items()}
    config.pipeline = PipelineSpec(steps)
    config.pipeline.check(name, inputs, [t.name for t in config.outputs])
    config.reasons = {"pipeline": "pipeline_config_list in config.json"}
    return config


def _ovms_node(data: Any, pipeline: str) -> Step:
    if not isinstance(data, dict) or not data.get("name") or not data.get("model_name"):
        raise InvalidArgument(f"OVMS pipeline {pipeline!r}: each node needs name and model_name")
    node = str(data["name"])
    kind = data.get("type", "DL model")
    if kind != "DL model":
        raise InvalidArgument(
            f"OVMS pipeline {pipeline!r} node {node!r} is of type {kind!r}; only 'DL model' "
            "nodes are supported (custom nodes are OpenVINO libraries modelyard cannot load)"
        )
    for key in ("demultiply_count", "gather_from_node"):
        if key in data:
            raise InvalidArgument(
                f"OVMS pipeline {pipeline!r} node {node!r}: {key} is not supported; "
                "send the rows as one batch instead"
            )
    inputs = {
        model_input: _ovms_tensor(source, pipeline)
        for item in data.get("inputs", [])
        for model_input, source in _pairs(item, pipeline, f"node {node!r} inputs")
    }
    outputs = {}
    for item in data.get("outputs", []):
        if not isinstance(item, dict) or "data_item" not in item:
            raise InvalidArgument(
                f"OVMS pipeline {pipeline!r} node {node!r}: each output needs data_item"
            )
        outputs[str(item["data_item"])] = f"{node}/{item.get('alias', item['data_item'])}"
    return Step(str(data["model_name"]), int(data.get("version", LATEST)), inputs, outputs)


def _pairs(item: Any, pipeline: str, where: str) -> list[tuple[str, Any]]:
    if not isinstance(item, dict):
        raise InvalidArgument(f"OVMS pipeline {pipeline!r} {where}: expected {{name: {{...}}}}")
    return [(str(k), v) for k, v in item.items()]


def _ovms_tensor(source: Any, pipeline: str) -> str:
    """The pipeline tensor a `{node_name, data_item}` reference names."""
    if not isinstance(source, dict) or "node_name" not in source or "data_item" not in source:
        raise InvalidArgument(
            f"OVMS pipeline {pipeline!r}: a tensor reference needs node_name and data_item, "
            f"got {source!r}"
        )
    if source["node_name"] == "request":
        return str(source["data_item"])
    return f"{source['node_name']}/{source['data_item']}"
