"""How much memory a model will take to serve, before it is loaded, and the budget check that
refuses a model whose estimate does not fit.

estimate = runtime libraries (paid once per process)
         + per-model overhead (sessions, arenas, compute buffers)
         + weights x the runtime's factor (RSS bytes per weight byte, measured here)
         + KV cache for LLMs: 2 (K, V) x f16 x layers x KV heads x head width x context x sequences

The constants were measured as RSS growth in a fresh process loading real models
(`benchmarks/memory_estimates.py`; figures in docs/advisor.md).
"""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass
from typing import Any

from modelyard.advisor.artifact import ArtifactInfo, human_bytes
from modelyard.errors import InvalidArgument, ResourceExhausted

MIB = 2**20


@dataclass(frozen=True)
class MemoryCost:
    library_mib: float  # importing the runtime's libraries: once per process
    overhead_mib: float  # each loaded model
    weight_factor: float  # resident bytes per weight byte
    measured: bool  # False: an educated guess, not checked on this machine


# format or format/container -> cost. Measured with onnxruntime 1.32, scikit-learn 1.9,
# skops 0.16, xgboost 3.2, lightgbm 4.7, llama-cpp-python 0.3.36, torch 2.13, tensorflow-cpu
# 2.21, openvino 2026.4 on Python 3.11 (docs/advisor.md).
COSTS: dict[str, MemoryCost] = {
    "onnx": MemoryCost(29, 4, 1.05, True),
    "sklearn/skops": MemoryCost(108, 1, 3.0, True),
    "sklearn/pickle": MemoryCost(90, 1, 2.3, True),
    "xgboost": MemoryCost(89, 1, 5.3, True),
    "lightgbm": MemoryCost(88, 0.5, 0.9, True),
    # llama.cpp (llama-cpp-python 0.3.36) maps the weights; overhead grows with the vocabulary
    # (LLAMA_VOCAB_BYTES) and the sequences decoded together (LLAMA_SEQUENCE_VOCAB_BYTES).
    "gguf": MemoryCost(10, 4, 1.0, True),
    "hf": MemoryCost(600, 50, 1.0, False),
    # Hugging Face encoders on onnxruntime (the sentence runtime; onnxruntime 1.32, tokenizers
    # 0.23): a tiny BERT (0.1 MiB of weights) grew RSS by 36 MiB, all-MiniLM-L6-v2 (87 MiB) by
    # 158 MiB (onnxruntime's pre-packed weights beside the graph's). Classifiers on
    # transformers 5.24 / torch 2.13: importing both and a tiny BERT classifier, 362 MiB.
    "hf/embedding": MemoryCost(28, 8, 1.4, True),
    "hf/classifier": MemoryCost(350, 10, 1.0, True),
    "safetensors": MemoryCost(600, 50, 1.0, False),
    # torch 2.13 (CPU): importing torch 260 MiB, the first model's kernels and allocator ~17
    # more; torch.export.load imports torch.export/fx on top (~107 MiB with the first model);
    # each further model ~1 MiB plus its weights (a 24 MiB MLP: 24 MiB).
    "torchscript": MemoryCost(277, 1, 1.0, True),
    "torch-export": MemoryCost(367, 1, 1.0, True),
    "torch-export/aoti": MemoryCost(280, 5, 1.0, False),  # a compiled .so: not measured
    # a TorchServe archive's handler, in its own worker process: torch and the handler's code
    # (not measured; a default handler imports the torchserve package and captum too)
    "torchserve": MemoryCost(300, 20, 1.0, False),
    # tensorflow-cpu 2.21: importing TensorFlow 707 MiB; each model's session and graph ~8 MiB
    # more, plus its variables as the index lists them (Keras 3's export saves each twice and
    # both copies are restored: 192 MiB for a 96 MiB MLP, RSS +911 MiB, estimate 907).
    "tensorflow": MemoryCost(707, 8, 1.0, True),
    # openvino 2026.4 (CPU plugin): importing it and the plugin's first compile 53-76 MiB (runs
    # on this machine differed by 23 MiB), counted 60; each model ~10 MiB; FP32 weights twice
    # (the mapped .bin and the plugin's repacked copy), FP16 ones three times their file (the
    # mapped .bin and the FP32 copy the warm-up unpacks).
    "openvino": MemoryCost(60, 10, 2.0, True),
    "openvino/ir-fp16": MemoryCost(60, 10, 3.0, True),
    "tensorrt": MemoryCost(0, 100, 1.0, False),
    "unknown": MemoryCost(0, 0, 1.0, False),
}
#: Libraries a runtime's library imports when they are installed, and what importing them
#: costs (MiB, measured on Python 3.11 with pandas 2.3 and torch 2.13): scikit-learn, XGBoost and
#: LightGBM all import pandas if it is there, and skops (listing scikit-learn's estimators, which
#: walks every scikit-learn module) imports torch through scikit-learn's array-API shim.
OPTIONAL_IMPORTS: dict[str, tuple[tuple[str, float], ...]] = {
    "sklearn/skops": (("pandas", 83), ("torch", 237)),
    "sklearn": (("pandas", 83),),
    "xgboost": (("pandas", 83),),
    "lightgbm": (("pandas", 83),),
}
#: llama.cpp's vocabulary tables and output buffers, bytes per vocabulary entry ...
LLAMA_VOCAB_BYTES = 220
#: ... and per entry for each sequence decoded together (its logits).
LLAMA_SEQUENCE_VOCAB_BYTES = 4
_KNOWN_NOTHING = ("python",)
#: The transformers runtime's KV cache (runtimes/transformers_gen.py, transformers_backend.py):
#: n_seq_max slots (default 8) of n_ctx cells each (default min(2048, the trained context)),
#: keys and values in the model's dtype (float32 unless `dtype: bfloat16`), every position kept
#: in sliding-window layers too; allocated whole at the first request.
HF_SLOTS = 8
HF_MAX_CONTEXT = 2048
HF_KV_ELEMENT_BYTES = {"float32": 4, "bfloat16": 2}


@dataclass
class MemoryEstimate:
    library: int = 0
    overhead: int = 0
    weights: int = 0
    kv_cache: int = 0
    context: int | None = None
    parallel: int | None = None
    #: tokens the KV cache holds for all sequences together (LLMs)
    cells: int | None = None
    known: bool = True
    measured: bool = False

    @property
    def model(self) -> int:
        """What one more model of an already-loaded runtime adds."""
        return self.overhead + self.weights + self.kv_cache

    @property
    def total(self) -> int:
        return self.library + self.model

    def describe(self) -> str:
        if not self.known:
            return "not estimated (a Python model's memory is its code's)"
        parts = [f"weights {human_bytes(self.weights)}"]
        if self.kv_cache:
            plural = "" if self.parallel == 1 else "s"
            parts.append(
                f"KV cache {human_bytes(self.kv_cache)} ({self.cells} tokens shared by up to "
                f"{self.parallel} sequence{plural} of up to {self.context})"
            )
        parts.append(f"runtime {human_bytes(self.library + self.overhead)}")
        return f"about {human_bytes(self.total)}: " + " + ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "known": self.known,
            "total_bytes": self.total,
            "library_bytes": self.library,
            "overhead_bytes": self.overhead,
            "weight_bytes": self.weights,
            "kv_cache_bytes": self.kv_cache,
            "context": self.context,
            "parallel": self.parallel,
            "cells": self.cells,
            "measured_basis": self.measured,
        }


def _optional_mib(fmt: str, container: str) -> float:
    found = OPTIONAL_IMPORTS.get(f"{fmt}/{container}") or OPTIONAL_IMPORTS.get(fmt, ())
    return sum(mib for module, mib in found if _installed(module))


@functools.lru_cache(maxsize=8)
def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def estimate_memory(
    info: ArtifactInfo,
    context: int | None = None,
    parallel: int = 1,
    cells: int | None = None,
    swa_full: bool = False,
    dtype: str = "float32",
) -> MemoryEstimate:
    """Memory to serve `info`; LLMs with `parallel` sequences of up to `context` tokens each
    sharing a KV cache of `cells` tokens (default: a whole context for each). A Hugging Face
    folder's cache is the transformers runtime's: `parallel` slots of `context` cells each in
    `dtype`."""
    if info.format in _KNOWN_NOTHING:
        return MemoryEstimate(known=False)
    cost = (
        COSTS.get(f"{info.format}/{info.container}")
        or COSTS.get(f"{info.format}/{info.task}")
        or COSTS.get(info.format)
        or COSTS["unknown"]
    )
    weights = info.weight_bytes if info.weight_bytes is not None else info.size_bytes
    estimate = MemoryEstimate(
        library=int((cost.library_mib + _optional_mib(info.format, info.container)) * MIB),
        overhead=int(cost.overhead_mib * MIB),
        weights=int(weights * cost.weight_factor),
        measured=cost.measured,
    )
    if info.llm is not None and info.format == "hf":
        if info.generates_text:
            _hf_kv_cache(estimate, info, context, parallel, dtype)
    elif info.llm is not None:
        estimate.overhead += info.llm.vocab * LLAMA_VOCAB_BYTES
        if info.generates_text:
            estimate.context = context or default_context(info)
            estimate.parallel = parallel
            estimate.cells = max(cells or estimate.context * parallel, estimate.context)
            estimate.kv_cache = info.llm.kv_cache_bytes(
                estimate.context, parallel, cells=estimate.cells, swa_full=swa_full
            )
            estimate.overhead += info.llm.vocab * LLAMA_SEQUENCE_VOCAB_BYTES * parallel
    return estimate


def _hf_kv_cache(
    estimate: MemoryEstimate,
    info: ArtifactInfo,
    context: int | None,
    parallel: int,
    dtype: str,
) -> None:
    """The transformers runtime's cache: every slot's whole context, every layer full."""
    assert info.llm is not None
    estimate.context = context or min(HF_MAX_CONTEXT, info.context_length or HF_MAX_CONTEXT)
    estimate.parallel = parallel
    estimate.cells = estimate.context * parallel
    # kv_bytes_per_token counts 2-byte (f16) elements
    per_token = info.llm.kv_bytes_per_token * HF_KV_ELEMENT_BYTES.get(dtype, 4) // 2
    estimate.kv_cache = per_token * estimate.cells


def default_context(info: ArtifactInfo, ceiling: int = 4096) -> int:
    trained = info.context_length or ceiling
    return min(trained, ceiling)


def estimate_for_parameters(info: ArtifactInfo, parameters: dict[str, str]) -> MemoryEstimate:
    """The estimate at the context, sequences and KV cells a model's config asks for (n_ctx,
    n_seq_max, kv_size, as the llamacpp runtime reads them; n_ctx, n_seq_max and dtype as the
    transformers runtime does), else the runtime's default sequences (llama.cpp: one)."""
    context = _int_param(parameters, "n_ctx")
    default = HF_SLOTS if info.format == "hf" else 1
    parallel = _int_param(parameters, "n_seq_max") or default
    swa_full = parameters.get("swa_full", "").strip().lower() in ("1", "true", "yes", "on")
    cells = _int_param(parameters, "kv_size")
    dtype = parameters.get("dtype", "float32").strip().lower()
    return estimate_memory(info, context, parallel, cells, swa_full, dtype)


def _int_param(parameters: dict[str, str], key: str) -> int | None:
    value = parameters.get(key, "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else None


def check_budget(name: str, estimate: MemoryEstimate, budget: int, used: int = 0) -> None:
    """Refuse a model before loading when `used` + its estimate passes `budget` bytes."""
    if not estimate.known or used + estimate.total <= budget:
        return
    held = f" with {human_bytes(used)} already in use" if used else ""
    raise ResourceExhausted(
        f"model {name!r} needs {estimate.describe()}; that does not fit the memory budget of "
        f"{human_bytes(budget)}{held}. Raise the budget, unload a model, or choose a smaller "
        "context, fewer parallel sequences or a smaller quantization"
    )


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str) -> int:
    """Bytes from '8GiB', '8G' (binary), '8GB' (decimal), '512MiB', '1.5 GiB' or '1024'."""
    match = _SIZE.match(text)
    if not match:
        raise InvalidArgument(f"cannot read {text!r} as a size; write e.g. 8GiB, 512MB or 2G")
    number, unit, suffix = float(match.group(1)), match.group(2).lower(), match.group(3).lower()
    base = 1000 if suffix == "b" and unit else 1024
    return int(number * base ** _POWERS[unit])
