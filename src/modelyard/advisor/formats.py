"""Inspectors for ONNX graphs, GGUF files and Python models: each reads what it needs from
the artifact's header or signature and never runs or fully loads the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelyard.advisor.artifact import ArtifactInfo, LLMShape
from modelyard.advisor.gguf_header import ArrayLength, GGUFHeader, read_header
from modelyard.advisor.onnx_skim import OnnxSummary, OnnxTensor, skim
from modelyard.spec.config import TensorSpec

# ---- ONNX ----------------------------------------------------------------------------------

_QUANT_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeLinear",
    "MatMulNBits",
}
_CLASSIFIER_OPS = {
    "ZipMap",
    "LinearClassifier",
    "TreeEnsembleClassifier",
    "SVMClassifier",
    "Softmax",
    "ArgMax",
}
_REGRESSOR_OPS = {"LinearRegressor", "TreeEnsembleRegressor", "SVMRegressor"}
_EMBEDDING_OUTPUTS = ("embedding", "last_hidden_state", "pooler_output", "sentence_embedding")


def inspect_onnx(path: Path) -> ArtifactInfo:
    summary = skim(path)
    info = ArtifactInfo(
        path,
        "onnx",
        container="protobuf",
        size_bytes=path.stat().st_size,
        weight_bytes=int(summary.weight_bytes),
        parameters=summary.parameters,
        quantization=_onnx_quantization(summary),
        inputs=[_spec(t) for t in summary.inputs],
        outputs=[_spec(t) for t in summary.outputs],
        dynamic_batch=_dynamic_batch(summary.inputs + summary.outputs),
        details={"opset": summary.opset, "producer": summary.producer},
    )
    info.task = _onnx_task(summary)
    return info


def _spec(tensor: OnnxTensor) -> TensorSpec:
    return TensorSpec(
        tensor.name,
        tensor.datatype,
        [d if isinstance(d, int) and d > 0 else -1 for d in tensor.shape],
    )


def _dynamic_batch(tensors: list[OnnxTensor]) -> bool:
    return bool(tensors) and all(t.shape and not _fixed(t.shape[0]) for t in tensors)


def _fixed(dim: int | str) -> bool:
    return isinstance(dim, int) and dim > 0


def _onnx_quantization(summary: OnnxSummary) -> str:
    if summary.op_types & _QUANT_OPS:
        return "INT8" if "MatMulNBits" not in summary.op_types else "INT4"
    if not summary.weight_dtypes:
        return "FP32"
    return max(summary.weight_dtypes, key=lambda k: summary.weight_dtypes[k])


def _onnx_task(summary: OnnxSummary) -> str:
    names = [t.name.lower() for t in summary.inputs]
    outputs = [t.name.lower() for t in summary.outputs]
    if "input_ids" in names:
        if any("logits" in o for o in outputs) and any("past" in n for n in names):
            return "text-generation"
        return (
            "embedding"
            if any(e in o for o in outputs for e in _EMBEDDING_OUTPUTS)
            else "classifier"
            if any("logits" in o for o in outputs)
            else "unknown"
        )
    if any(len(t.shape) == 4 and t.shape[1] in (1, 3) for t in summary.inputs):
        return "vision"
    return _tabular_task(summary, outputs)


def _tabular_task(summary: OnnxSummary, outputs: list[str]) -> str:
    labelled = any(k in o for o in outputs for k in ("prob", "label"))
    if summary.op_types & _CLASSIFIER_OPS or labelled:
        return "classifier"
    if summary.op_types & _REGRESSOR_OPS:
        return "regressor"
    if any(e in o for o in outputs for e in _EMBEDDING_OUTPUTS):
        return "embedding"
    return "unknown"


# ---- GGUF ----------------------------------------------------------------------------------

#: Architectures that are encoders: they embed (or rerank), they do not generate.
ENCODER_ARCHITECTURES = {
    "bert",
    "nomic-bert",
    "nomic-bert-moe",
    "jina-bert-v2",
    "jina-bert-v3",
    "modern-bert",
    "neo-bert",
    "t5encoder",
    "roberta",
    "xlm-roberta",
}
_POOLING_RANK = 4  # llama.cpp's LLAMA_POOLING_TYPE_RANK: a reranker


def inspect_gguf(path: Path) -> ArtifactInfo:
    header = read_header(path)
    llm = _llm_shape(header)
    info = ArtifactInfo(
        path,
        "gguf",
        container="gguf",
        task=_gguf_task(header),
        size_bytes=path.stat().st_size,
        weight_bytes=header.weight_bytes,
        parameters=header.parameters,
        quantization=header.quantization,
        architecture=header.architecture or None,
        context_length=llm.trained_context or None,
        llm=llm,
        details={
            "name": str(header.metadata.get("general.name", "")),
            "chat_template": "tokenizer.chat_template" in header.metadata,
            "gguf_version": header.version,
            "layers": llm.layers,
            "vocab": llm.vocab,
        },
    )
    return info


def _gguf_task(header: GGUFHeader) -> str:
    pooling = header.arch_value("pooling_type")
    if pooling == _POOLING_RANK:
        return "rerank"
    if header.architecture in ENCODER_ARCHITECTURES or (isinstance(pooling, int) and pooling > 0):
        return "embedding"
    return "text-generation"


#: Sliding-window architectures: one layer in N attends to everything (llama.cpp's patterns;
#: the GGUF names the window but not the pattern). Unknown ones count as all-full: safe side.
SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "llama4": 4, "gpt-oss": 2}


def _swa_layers(header: GGUFHeader, layers: int) -> int:
    pattern = SWA_PATTERNS.get(header.architecture, 0)
    if not pattern or not _int(header.arch_value("attention.sliding_window")):
        return 0
    return layers - layers // pattern


def _llm_shape(header: GGUFHeader) -> LLMShape:
    layers = _int(header.arch_value("block_count"))
    heads = header.arch_value("attention.head_count")
    kv = header.arch_value("attention.head_count_kv")
    width = _int(header.arch_value("embedding_length"))
    head_dim = width // max(1, _first(heads)) if width else 0
    return LLMShape(
        layers=layers,
        kv_heads=_per_layer(kv if kv is not None else heads, layers),
        key_length=_int(header.arch_value("attention.key_length")) or head_dim,
        value_length=_int(header.arch_value("attention.value_length")) or head_dim,
        vocab=_vocab(header),
        trained_context=_int(header.arch_value("context_length")),
        embedding_length=width,
        sliding_window=_int(header.arch_value("attention.sliding_window")),
        swa_layers=_swa_layers(header, layers),
    )


def _per_layer(value: Any, layers: int) -> list[int]:
    if isinstance(value, list):
        return [int(v) for v in value][:layers] or [0] * layers
    return [_int(value)] * layers


def _first(value: Any) -> int:
    if isinstance(value, list):
        return max((int(v) for v in value), default=1)
    return _int(value) or 1


def _vocab(header: GGUFHeader) -> int:
    tokens = header.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, (ArrayLength, list)):
        return len(tokens) if isinstance(tokens, list) else int(tokens)
    return _int(header.arch_value("vocab_size"))


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) else 0


# ---- Python models -------------------------------------------------------------------------


def inspect_python(path: Path) -> ArtifactInfo:
    return ArtifactInfo(
        path,
        "python",
        container="source",
        size_bytes=path.stat().st_size,
        details={"note": "a Python model's behaviour is its code's"},
    )
