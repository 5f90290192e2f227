"""An OpenVINO Model Server repository: a `config.json` at the repository's root whose
`model_config_list` names the models (`config: {name, base_path}`, base_path relative to the
config.json) and whose `pipeline_config_list` wires them into DAGs (`repository/pipelines.py`).

OVMS model folders hold numbered versions, each with an ONNX model (onnxruntime serves it), a
TensorFlow SavedModel (`saved_model.pb` + `variables/`, the tensorflow runtime) or an OpenVINO IR
(`model.xml` + `model.bin`, the openvino runtime), the latest version's file naming the runtime.
A model's `nireq` (infer requests) becomes its instance count and its `plugin_config`
(PERFORMANCE_HINT, INFERENCE_NUM_THREADS, NUM_STREAMS...) its parameters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidArgument, ModelLoadError, ModelyardError
from modelyard.repository.pipelines import pipeline_from_ovms
from modelyard.repository.scan import ModelSource
from modelyard.spec.config import ModelConfig


def is_ovms_config(path: Path) -> bool:
    """Whether `path` is an OVMS config.json (not, say, an XGBoost model called config)."""
    if not path.is_file():
        return False
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "model_config_list" in data


def read_ovms(path: Path) -> list[ModelSource]:
    """Every model and pipeline the config.json lists; one that does not read carries its
    error (and the others still serve)."""
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelLoadError(f"{path} is not JSON: {exc}") from exc
    sources = []
    for item in data.get("model_config_list") or []:
        config = item.get("config") if isinstance(item, dict) else None
        sources.append(_model(config, path))
    for item in data.get("pipeline_config_list") or []:
        sources.append(_pipeline(item, path))
    return sources


def _model(config: Any, listed_in: Path) -> ModelSource:
    if not isinstance(config, dict) or not config.get("name") or not config.get("base_path"):
        name = str(config.get("name", "?")) if isinstance(config, dict) else "?"
        return _broken(
            name, listed_in, "each model_config_list entry needs config.name and config.base_path"
        )
    name = str(config["name"])
    base = (listed_in.parent / str(config["base_path"])).resolve()
    model_config = ModelConfig(name)
    source = ModelSource(name, base, "ovms", model_config, listed_in=listed_in)
    try:
        source.versions = _versions(base, name)
        _settings(model_config, config)
    except ModelyardError as exc:
        source.error = str(exc)
        return source
    latest = source.versions[max(source.versions)]
    model_config.runtime = {".xml": "openvino", ".pb": "tensorflow"}.get(
        latest.suffix.lower(), "onnx"
    )
    model_config.reasons["runtime"] = f"OVMS model_config_list (file {latest.name})"
    return source


def _settings(model_config: ModelConfig, config: dict[str, Any]) -> None:
    """OVMS's `nireq` as the instance count, its `plugin_config` as parameters."""
    plugin = config.get("plugin_config") or {}
    if not isinstance(plugin, dict):
        raise ModelyardError(f"OVMS model {model_config.name!r}: plugin_config must be an object")
    for key, value in plugin.items():
        model_config.parameters[str(key)] = str(value)
        model_config.reasons[f"parameters.{key}"] = "OVMS plugin_config"
    if "nireq" in config:
        try:
            model_config.instance_count = max(1, int(config["nireq"]))
        except (TypeError, ValueError):
            raise ModelyardError(
                f"OVMS model {model_config.name!r}: nireq must be a whole number"
            ) from None
        model_config.reasons["instances"] = "OVMS nireq"


def _versions(base: Path, name: str) -> dict[int, Path]:
    if not base.is_dir():
        raise ModelyardError(f"OVMS model {name!r}: base_path {base} is not a folder")
    versions = {}
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and p.name.isdigit()):
        files = sorted(folder.glob("*.onnx")) or sorted(folder.glob("*.xml"))
        if not files and (folder / "saved_model.pb").is_file():
            files = [folder / "saved_model.pb"]
        if len(files) == 1:
            versions[int(folder.name)] = files[0]
        elif files:
            raise ModelyardError(
                f"OVMS model {name!r}: several {files[0].suffix} files in {folder}"
            )
    if not versions:
        raise ModelyardError(f"OVMS model {name!r}: no numbered version folder in {base}")
    return versions


def _pipeline(item: Any, listed_in: Path) -> ModelSource:
    name = str(item.get("name", "?")) if isinstance(item, dict) else "?"
    try:
        if not isinstance(item, dict):
            raise InvalidArgument("each pipeline_config_list entry must be an object")
        config = pipeline_from_ovms(item)
    except ModelyardError as exc:
        return _broken(name, listed_in, str(exc), pipeline=True)
    return ModelSource(name, listed_in, "ovms", config, {1: listed_in}, listed_in=listed_in)


def _broken(name: str, listed_in: Path, error: str, pipeline: bool = False) -> ModelSource:
    kind = "pipeline_config_list" if pipeline else "model_config_list"
    return ModelSource(
        name,
        listed_in,
        "ovms",
        ModelConfig(name),
        error=f"{kind} in {listed_in}: {error}",
        listed_in=listed_in,
    )
