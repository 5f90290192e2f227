"""What inspecting an artifact tells: its format, task, size and signature."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.spec.config import TensorSpec

#: Tasks the advisor tells apart.
TASKS = (
    "classifier",
    "regressor",
    "ranking",
    "text-generation",
    "embedding",
    "rerank",
    "vision",
    "transform",
    "unknown",
)


@dataclass
class LLMShape:
    """What sizes a transformer's KV cache: per-layer KV heads and head widths."""

    layers: int
    kv_heads: list[int]  # one entry per layer
    key_length: int
    value_length: int
    vocab: int
    trained_context: int
    embedding_length: int = 0
    #: sliding-window attention: the window, and how many layers use it (their KV cache holds
    #: only the window's tokens per sequence, plus one batch)
    sliding_window: int = 0
    swa_layers: int = 0

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V in f16 for one token across every layer."""
        return sum(self.kv_heads) * (self.key_length + self.value_length) * 2

    def kv_cache_bytes(
        self,
        context: int,
        parallel: int,
        batch: int = 512,
        cells: int | None = None,
        swa_full: bool = False,
    ) -> int:
        """The KV cache for `parallel` sequences of `context` tokens, or for `cells` tokens
        shared by `parallel` sequences: full-attention layers hold every token, sliding-window
        layers the window per sequence plus one batch (every token too with `swa_full`)."""
        per_layer = self.kv_bytes_per_token // max(1, self.layers)
        tokens = cells or context * parallel
        window = min(tokens, -(-(self.sliding_window * parallel + batch) // 256) * 256)
        if swa_full:
            window = tokens
        full = self.layers - self.swa_layers
        return per_layer * (full * tokens + self.swa_layers * window)


@dataclass
class ArtifactInfo:
    path: Path
    format: str  # onnx | gguf | sklearn | xgboost | lightgbm | python | hf | torchscript | ...
    container: str = ""  # how the file stores it: skops, pickle, ubj, json, text, safetensors ...
    task: str = "unknown"
    size_bytes: int = 0
    weight_bytes: int | None = None
    parameters: int | None = None
    quantization: str | None = None
    architecture: str | None = None
    context_length: int | None = None
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    dynamic_batch: bool = False
    llm: LLMShape | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def generates_text(self) -> bool:
        return self.task == "text-generation"

    def summary(self) -> str:
        """One line for people: format, task, size."""
        parts = [self.format, self.task]
        if self.architecture:
            parts.append(self.architecture)
        if self.parameters:
            parts.append(f"{human_count(self.parameters)} parameters")
        if self.quantization:
            parts.append(self.quantization)
        parts.append(human_bytes(self.size_bytes) + " on disk")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "container": self.container,
            "task": self.task,
            "size_bytes": self.size_bytes,
            "weight_bytes": self.weight_bytes,
            "parameters": self.parameters,
            "quantization": self.quantization,
            "architecture": self.architecture,
            "context_length": self.context_length,
            "dynamic_batch": self.dynamic_batch,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "details": {k: v for k, v in self.details.items() if _plain(v)},
        }


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"
