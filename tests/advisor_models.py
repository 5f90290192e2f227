"""Artifacts and machines for the advisor's tests: GGUF files holding only a header (metadata
and tensor descriptions, no tensor data — a "70B" file is a few kilobytes), and hardware
profiles to inject instead of probing this machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelyard.advisor.hardware import GPU, Hardware

GiB = 2**30
ALL_RUNTIMES = {"onnx": True, "sklearn": True, "xgboost": True, "lightgbm": True, "llamacpp": True}


def gguf_header(
    path: Path,
    *,
    arch: str = "llama",
    layers: int,
    width: int,
    heads: int,
    kv_heads: int,
    ff: int,
    vocab: int,
    context: int,
    file_type: int,
    tensor_type: int,
    chat_template: str | None = "{{ messages }}",
    pooling: int | None = None,
    token_list: bool = True,
    sliding_window: int = 0,
) -> Path:
    """A GGUF with llama-shaped tensor descriptions and no tensor data."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(path.stem)
    writer.add_context_length(context)
    writer.add_embedding_length(width)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_file_type(file_type)
    if pooling is not None:
        writer.add_pooling_type(gguf.PoolingType(pooling))
    if sliding_window:
        writer.add_sliding_window(sliding_window)
    if token_list:
        writer.add_token_list([f"t{i}" for i in range(vocab)])
    else:
        writer.add_uint32(f"{arch}.vocab_size", vocab)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    kv_width = width // heads * kv_heads
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("token_embd.weight", (vocab, width)),
        ("output.weight", (vocab, width)),
    ]
    for i in range(layers):
        shapes += [
            (f"blk.{i}.attn_q.weight", (width, width)),
            (f"blk.{i}.attn_k.weight", (kv_width, width)),
            (f"blk.{i}.attn_v.weight", (kv_width, width)),
            (f"blk.{i}.attn_output.weight", (width, width)),
            (f"blk.{i}.ffn_gate.weight", (ff, width)),
            (f"blk.{i}.ffn_up.weight", (ff, width)),
            (f"blk.{i}.ffn_down.weight", (width, ff)),
            (f"blk.{i}.attn_norm.weight", (width,)),
        ]
    qtype = gguf.GGMLQuantizationType(tensor_type)
    for name, shape in shapes:
        one_d = len(shape) == 1
        kind = gguf.GGMLQuantizationType.F32 if one_d else qtype
        block, size = gguf.GGML_QUANT_SIZES[kind]
        elements = int(np.prod(shape))
        writer.add_tensor_info(
            name, shape, np.dtype(np.float32), elements // block * size, raw_dtype=kind
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return path


Q4_K, Q4_K_M, F16, MOSTLY_F16 = 12, 15, 1, 1


def llm_1b(path: Path, **changes: object) -> Path:
    """A 1.2B-parameter llama-style chat model, Q4_K_M, 8k context."""
    shape: dict[str, object] = dict(
        layers=16,
        width=2048,
        heads=32,
        kv_heads=8,
        ff=8192,
        vocab=32000,
        context=8192,
        file_type=Q4_K_M,
        tensor_type=Q4_K,
    )
    shape.update(changes)
    return gguf_header(path, **shape)  # type: ignore[arg-type]


def embedding_bert(path: Path) -> Path:
    """A MiniLM-sized BERT embedding model (pooling: mean), F16."""
    return gguf_header(
        path,
        arch="bert",
        layers=6,
        width=384,
        heads=12,
        kv_heads=12,
        ff=1536,
        vocab=30522,
        context=512,
        file_type=MOSTLY_F16,
        tensor_type=F16,
        chat_template=None,
        pooling=1,
    )


def llm_70b(path: Path) -> Path:
    """A 70B llama-3-shaped model, Q4_K_M (about 40 GiB of weights), 128k context; the
    vocabulary is given as a count, not a token list."""
    return gguf_header(
        path,
        layers=80,
        width=8192,
        heads=64,
        kv_heads=8,
        ff=28672,
        vocab=128256,
        context=131072,
        file_type=Q4_K_M,
        tensor_type=Q4_K,
        token_list=False,
    )


# ---- machines --------------------------------------------------------------------------

LAPTOP = Hardware(
    cores=8,
    physical_cores=4,
    memory_bytes=16 * GiB,
    memory_available_bytes=12 * GiB,
    isa={"avx2": True},
    runtimes=dict(ALL_RUNTIMES),
    onnx_providers=["CPUExecutionProvider"],
)
AMX_SERVER = Hardware(
    cores=2,
    physical_cores=2,
    memory_bytes=24 * GiB,
    isa={"avx2": True, "avx512": True, "amx": True},
    runtimes=dict(ALL_RUNTIMES),
    onnx_providers=["CPUExecutionProvider"],
)
AMX_SERVER_SAFE_BUILD = Hardware(
    cores=2,
    physical_cores=2,
    memory_bytes=24 * GiB,
    isa={"avx2": True, "avx512": True, "amx": True},
    runtimes=dict(ALL_RUNTIMES),
    llamacpp_features=frozenset({"AVX2", "FMA", "F16C"}),
)
OPENVINO_EDGE = Hardware(
    cores=4,
    physical_cores=4,
    memory_bytes=4 * GiB,
    isa={"avx2": True},
    runtimes=dict(ALL_RUNTIMES),
    onnx_providers=["OpenVINOExecutionProvider", "CPUExecutionProvider"],
)
GPU_BOX = Hardware(
    cores=32,
    physical_cores=16,
    memory_bytes=256 * GiB,
    isa={"avx2": True},
    gpus=[GPU("NVIDIA H100 80GB HBM3", "nvidia", 80 * GiB)],
    runtimes=dict(ALL_RUNTIMES),
    onnx_providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
)
FOUR_GPUS = Hardware(
    cores=64,
    physical_cores=32,
    memory_bytes=32 * GiB,
    isa={"avx2": True},
    gpus=[GPU("NVIDIA A100-SXM4-40GB", "nvidia", 40 * GiB)] * 4,
    runtimes=dict(ALL_RUNTIMES),
    onnx_providers=["CPUExecutionProvider"],
)
SMALL_GPU = Hardware(
    cores=8,
    physical_cores=8,
    memory_bytes=16 * GiB,
    isa={"avx2": True},
    gpus=[GPU("NVIDIA L4", "nvidia", 24 * GiB)],
    runtimes=dict(ALL_RUNTIMES),
)

PROFILES = {
    "laptop": LAPTOP,
    "amx_server": AMX_SERVER,
    "amx_safe_build": AMX_SERVER_SAFE_BUILD,
    "openvino_edge": OPENVINO_EDGE,
    "gpu_box": GPU_BOX,
    "four_gpus": FOUR_GPUS,
    "small_gpu": SMALL_GPU,
}


def gguf_with_data(path: Path) -> Path:
    """A small complete GGUF (tensor data included, F32), as libraries that read the data
    section expect."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(256)
    writer.add_embedding_length(16)
    writer.add_block_count(1)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_token_list([f"t{i}" for i in range(40)])
    rng = np.random.default_rng(0)
    for name, shape in (
        ("token_embd.weight", (40, 16)),
        ("blk.0.attn_q.weight", (16, 16)),
        ("blk.0.attn_k.weight", (8, 16)),
        ("output_norm.weight", (16,)),
    ):
        writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
