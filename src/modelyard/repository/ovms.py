"""An OpenVINO Model Server repository: a `config.json` at the repository's root whose
`model_config_list` names the models (`config: {name, base_path}`, base_path relative to the
config.json) and whose `pipeline_config_list` wires them into DAGs (`repository/pipelines.py`).

OVMS model folders hold numbered versions, each with an ONNX model, a TensorFlow SavedModel
(`saved_model.pb` + `variables/`) or an OpenVINO IR (`model.xml` + `model.bin`). modelyard
serves the ONNX and SavedModel ones; a version with only IR files is reported with an error
that says so (convert it to ONNX, or export the ONNX it came from).
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
    model_config = ModelConfig(name, runtime="onnx")
    model_config.reasons["runtime"] = "OVMS model_config_list (ONNX versions)"
    source = ModelSource(name, base, "ovms", model_config, listed_in=listed_in)
    try:
        source.versions = _versions(base, name)
    except ModelyardError as exc:
        source.error = str(exc)
    if any(p.name == "saved_model.pb" for p in source.versions.values()):
        model_config.runtime = "tensorflow"
        model_config.reasons["runtime"] = "OVMS model_config_list (SavedModel versions)"
    return source


def _versions(base: Path, name: str) -> dict[int, Path]:
    if not base.is_dir():
        raise ModelyardError(f"OVMS model {name!r}: base_path {base} is not a folder")
    versions = {}
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and p.name.isdigit()):
        onnx = sorted(folder.glob("*.onnx"))
        if len(onnx) == 1:
            versions[int(folder.name)] = onnx[0]
        elif onnx:
            raise ModelyardError(f"OVMS model {name!r}: several .onnx files in {folder}")
        elif (folder / "saved_model.pb").is_file():
            versions[int(folder.name)] = folder / "saved_model.pb"
        elif any(folder.glob("*.xml")):
            raise ModelyardError(
                f"OVMS model {name!r}: version {folder.name} is an OpenVINO IR (.xml/.bin); "
                "modelyard serves ONNX: put the ONNX model it was converted from in the folder"
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
