"""Inspect an artifact without loading it: which inspector reads which file."""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from xml.etree.ElementTree import ParseError

from modelyard.advisor import (
    formats,
    formats_openvino,
    formats_other,
    formats_tabular,
    formats_tf,
    formats_torch,
)
from modelyard.advisor.artifact import ArtifactInfo
from modelyard.advisor.gguf_header import is_gguf
from modelyard.errors import InvalidArgument

Inspector = Callable[[Path], ArtifactInfo]

# file suffix -> inspector
INSPECTORS: dict[str, Inspector] = {
    ".onnx": formats.inspect_onnx,
    ".gguf": formats.inspect_gguf,
    ".py": formats.inspect_python,
    ".skops": formats_tabular.inspect_skops,
    ".joblib": formats_tabular.inspect_pickle,
    ".pkl": formats_tabular.inspect_pickle,
    ".pickle": formats_tabular.inspect_pickle,
    ".ubj": formats_tabular.inspect_xgboost,
    ".xgb": formats_tabular.inspect_xgboost,
    ".json": formats_tabular.inspect_xgboost,
    ".txt": formats_tabular.inspect_lightgbm,
    ".lgb": formats_tabular.inspect_lightgbm,
    ".safetensors": formats_other.inspect_safetensors,
    ".pt": formats_torch.inspect_torch_archive,
    ".pth": formats_torch.inspect_torch_archive,
    ".pt2": formats_torch.inspect_torch_archive,
    ".mar": formats_torch.inspect_torchserve_archive,
    ".xml": formats_openvino.inspect_openvino,
    ".plan": formats_other.inspect_tensorrt,
    ".engine": formats_other.inspect_tensorrt,
}

_ERRORS = (
    OSError,
    ValueError,
    KeyError,
    struct.error,
    zipfile.BadZipFile,
    json.JSONDecodeError,
    ParseError,
)


def inspect_artifact(path: Path) -> ArtifactInfo:
    """What the file (or Hugging Face folder, or SavedModel folder) at `path` holds, read
    from its headers."""
    inspector = _inspector_for(path)
    try:
        return inspector(path)
    except InvalidArgument:
        raise
    except _ERRORS as exc:
        raise InvalidArgument(f"cannot inspect {path}: {exc}") from exc


def _inspector_for(path: Path) -> Inspector:
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return formats_tf.inspect_savedmodel
        if (path / "config.json").exists():
            return formats_other.inspect_hf_folder
        raise InvalidArgument(f"{path} is a folder without a model artifact the advisor knows")
    if not path.exists():
        raise InvalidArgument(f"{path} does not exist")
    if path.name == "saved_model.pb":
        return formats_tf.inspect_savedmodel  # a TensorFlow SavedModel's graph and signatures
    if path.name == "config.json" and any(path.parent.glob("*.safetensors")):
        return _hf_folder_of  # a Hugging Face folder's config (the transformers artifact)
    inspector = INSPECTORS.get(path.suffix.lower())
    if inspector is None and is_gguf(path):
        return formats.inspect_gguf
    return inspector or _unknown


def _hf_folder_of(path: Path) -> ArtifactInfo:
    return formats_other.inspect_hf_folder(path.parent)


def _unknown(path: Path) -> ArtifactInfo:
    return ArtifactInfo(path, "unknown", size_bytes=path.stat().st_size)
