"""Inspectors for formats modelyard recognises but serves through runtimes still to come (or
not at all): Hugging Face folders and safetensors, and TensorRT engines. Sizes come from
headers and file sizes only (PyTorch archives: formats_torch.py; OpenVINO IR:
formats_openvino.py)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from modelyard.advisor.artifact import ArtifactInfo, LLMShape

_SAFETENSORS_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
# architectures[0] ending -> task
_HF_TASKS = (
    ("ForCausalLM", "text-generation"),
    ("ForConditionalGeneration", "text-generation"),
    ("ForSequenceClassification", "classifier"),
    ("ForImageClassification", "vision"),
    ("ForTokenClassification", "classifier"),
    ("Model", "embedding"),
)


def safetensors_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header: dict[str, Any] = json.loads(f.read(length))
    return header


def _safetensors_totals(files: list[Path]) -> tuple[int, int, str]:
    params = nbytes = 0
    dtypes: dict[str, int] = {}
    for file in files:
        for name, tensor in safetensors_header(file).items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in tensor["shape"]:
                count *= int(dim)
            params += count
            nbytes += count * _SAFETENSORS_BYTES.get(tensor["dtype"], 4)
            dtypes[tensor["dtype"]] = dtypes.get(tensor["dtype"], 0) + count
    dominant = max(dtypes, key=lambda k: dtypes[k]) if dtypes else "unknown"
    return params, nbytes, dominant


def inspect_safetensors(path: Path) -> ArtifactInfo:
    """A safetensors file; in a Hugging Face folder (config.json naming architectures, or a
    sentence-transformers folder with modules.json), that folder."""
    folder = path.parent
    if (folder / "config.json").is_file() and (
        (folder / "modules.json").is_file() or "architectures" in _json(folder / "config.json")
    ):
        return inspect_hf_folder(folder)
    params, nbytes, dtype = _safetensors_totals([path])
    info = ArtifactInfo(
        path,
        "safetensors",
        container="safetensors",
        size_bytes=path.stat().st_size,
        weight_bytes=nbytes,
        parameters=params,
        quantization=dtype,
    )
    if (folder / "config.json").is_file():
        info.architecture = _json(folder / "config.json").get("model_type") or None
    return info


def _json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def inspect_hf_folder(path: Path) -> ArtifactInfo:
    config = json.loads((path / "config.json").read_text())
    files = sorted(path.glob("*.safetensors"))
    params, nbytes, dtype = _safetensors_totals(files)
    arch = (config.get("architectures") or [config.get("model_type", "")])[0]
    task = next((t for end, t in _HF_TASKS if arch.endswith(end)), "unknown")
    if (path / "modules.json").exists():
        task = "embedding"  # a sentence-transformers folder
    llm = _hf_llm(config) if task == "text-generation" else None
    return ArtifactInfo(
        path,
        "hf",
        container="safetensors" if files else "other",
        task=task,
        size_bytes=sum(p.stat().st_size for p in path.rglob("*") if p.is_file()),
        weight_bytes=nbytes or None,
        parameters=params or None,
        quantization=dtype,
        architecture=arch or None,
        context_length=llm.trained_context if llm else None,
        llm=llm,
        details={
            "chat_template": (path / "tokenizer_config.json").exists()
            and "chat_template" in (path / "tokenizer_config.json").read_text()
        },
    )


def _hf_llm(config: dict[str, Any]) -> LLMShape:
    layers = int(config.get("num_hidden_layers", 0))
    heads = int(config.get("num_attention_heads", 1))
    width = int(config.get("hidden_size", 0))
    head_dim = int(config.get("head_dim") or width // max(1, heads))
    return LLMShape(
        layers,
        [int(config.get("num_key_value_heads", heads))] * layers,
        head_dim,
        head_dim,
        int(config.get("vocab_size", 0)),
        int(config.get("max_position_embeddings", 0)),
        width,
    )


def inspect_tensorrt(path: Path) -> ArtifactInfo:
    return ArtifactInfo(
        path,
        "tensorrt",
        container="engine",
        size_bytes=path.stat().st_size,
        weight_bytes=path.stat().st_size,
        details={
            "note": "a TensorRT engine runs only on the GPU model and "
            "TensorRT version it was built for"
        },
    )
