"""Inspection without loading: each format's facts, the GGUF and ONNX readers against the
libraries that write those formats, memory estimates' arithmetic, sizes, the hardware probe."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.advisor.advise import advise
from modelyard.advisor.artifact import human_bytes, human_count
from modelyard.advisor.gguf_header import FILE_TYPES, GGML_TYPES, read_header
from modelyard.advisor.hardware import probe_at
from modelyard.advisor.inspect import inspect_artifact
from modelyard.advisor.memory import (
    MIB,
    check_budget,
    estimate_for_parameters,
    estimate_memory,
    parse_size,
)
from modelyard.errors import InvalidArgument, ResourceExhausted
from tests import advisor_models as am
from tests import models

GiB = 2**30


def test_ggml_tables_match_the_gguf_package() -> None:
    import gguf

    for type_id, (name, block, size) in GGML_TYPES.items():
        kind = gguf.GGMLQuantizationType(type_id)
        assert kind.name == name
        assert gguf.GGML_QUANT_SIZES[kind] == (block, size)
    for file_type, name in FILE_TYPES.items():
        assert (
            gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_") == name
        )


def test_gguf_llm_header(tmp_path: Path) -> None:
    info = inspect_artifact(am.llm_1b(tmp_path / "chat.gguf"))
    assert (info.format, info.task, info.architecture) == ("gguf", "text-generation", "llama")
    assert info.quantization == "Q4_K_M"
    assert info.context_length == 8192
    assert info.parameters is not None and 1.1e9 < info.parameters < 1.3e9
    assert info.llm is not None and info.llm.vocab == 32000 and info.llm.layers == 16
    # K and V, f16: 16 layers x 8 KV heads x 64 wide x 2 x 2 bytes
    assert info.llm.kv_bytes_per_token == 16 * 8 * (64 + 64) * 2
    assert info.details["chat_template"] is True
    assert info.size_bytes < 1_000_000  # the header only: no tensor data was written


def test_gguf_reader_agrees_with_the_gguf_package(tmp_path: Path) -> None:
    import gguf

    path = am.gguf_with_data(tmp_path / "tiny.gguf")  # GGUFReader needs the tensor data
    ours = read_header(path)
    theirs = gguf.GGUFReader(path)
    assert ours.architecture == "llama"
    assert {t.name for t in ours.tensors} == {t.name for t in theirs.tensors}
    assert ours.parameters == sum(int(t.n_elements) for t in theirs.tensors)
    assert ours.weight_bytes == sum(int(t.n_bytes) for t in theirs.tensors)


def test_gguf_embedding_and_70b_headers(tmp_path: Path) -> None:
    embed = inspect_artifact(am.embedding_bert(tmp_path / "embed.gguf"))
    assert (embed.task, embed.quantization, embed.context_length) == ("embedding", "F16", 512)
    big = inspect_artifact(am.llm_70b(tmp_path / "big.gguf"))
    assert big.parameters is not None and 69e9 < big.parameters < 72e9
    assert big.weight_bytes is not None and 36 * GiB < big.weight_bytes < 42 * GiB
    assert big.llm is not None and big.llm.vocab == 128256  # from llama.vocab_size


def test_gguf_with_tensor_data(tmp_path: Path) -> None:
    info = inspect_artifact(am.gguf_with_data(tmp_path / "tiny.gguf"))
    assert info.task == "text-generation" and info.quantization == "F32"
    assert info.weight_bytes is not None and info.weight_bytes <= info.size_bytes


def test_not_a_gguf(tmp_path: Path) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00\x05")
    with pytest.raises(InvalidArgument, match="not a readable GGUF"):
        inspect_artifact(path)


def test_onnx_skim_matches_onnx(tmp_path: Path) -> None:
    import onnx

    path = tmp_path / "addsub.onnx"
    models.addsub_onnx(path)
    info = inspect_artifact(path)
    model = onnx.load(path)
    assert [t.name for t in info.inputs] == [i.name for i in model.graph.input]
    assert [t.datatype for t in info.inputs] == ["FP32", "INT32"]
    assert info.inputs[0].dims == [-1, 4]
    assert info.dynamic_batch and info.parameters == 1
    assert info.details["opset"] == 17


def test_onnx_fixed_batch_and_tasks(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    models._save(graph, tmp_path / "fixed.onnx")
    info = inspect_artifact(tmp_path / "fixed.onnx")
    assert not info.dynamic_batch and info.task == "vision"


def test_demo_and_tabular_formats(tmp_path: Path) -> None:
    from modelyard.demo import build_demo

    build_demo(tmp_path)
    onnx_info = inspect_artifact(tmp_path / "iris_onnx" / "1" / "model.onnx")
    assert (onnx_info.task, onnx_info.parameters, onnx_info.dynamic_batch) == (
        "classifier",
        15,
        True,
    )
    skops = inspect_artifact(tmp_path / "iris_sklearn.skops")
    assert (skops.format, skops.task, skops.architecture) == (
        "sklearn",
        "classifier",
        "LogisticRegression",
    )
    models.sklearn_joblib(tmp_path / "tree.joblib")
    pickled = inspect_artifact(tmp_path / "tree.joblib")
    assert (pickled.container, pickled.architecture, pickled.task) == (
        "pickle",
        "DecisionTreeClassifier",
        "classifier",
    )
    models.xgboost_ubj(tmp_path / "xgb.ubj")
    xgb = inspect_artifact(tmp_path / "xgb.ubj")
    assert (xgb.task, xgb.details["objective"], xgb.details["features"]) == (
        "classifier",
        "multi:softprob",
        4,
    )
    models.lightgbm_txt(tmp_path / "lgb.txt")
    lgb = inspect_artifact(tmp_path / "lgb.txt")
    assert (lgb.task, lgb.details["trees"], lgb.details["features"]) == ("regressor", 10, 10)
    py = inspect_artifact(tmp_path / "wordcount" / "model.py")
    assert py.format == "python" and not estimate_memory(py).known


def test_hf_folder(tmp_path: Path) -> None:
    import json
    import struct

    header = {"w": {"dtype": "BF16", "shape": [1000, 64], "data_offsets": [0, 128000]}}
    raw = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "num_hidden_layers": 2,
                "hidden_size": 64,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "vocab_size": 1000,
                "max_position_embeddings": 2048,
            }
        )
    )
    info = inspect_artifact(tmp_path)
    assert (info.format, info.task, info.parameters, info.weight_bytes) == (
        "hf",
        "text-generation",
        64000,
        128000,
    )
    assert info.llm is not None and info.llm.kv_bytes_per_token == 2 * 2 * (16 + 16) * 2


def test_memory_estimate_arithmetic(tmp_path: Path) -> None:
    info = inspect_artifact(am.llm_1b(tmp_path / "m.gguf"))
    assert info.llm is not None and info.weight_bytes is not None
    one = estimate_memory(info, 4096, 1)
    four = estimate_memory(info, 4096, 4)
    assert four.kv_cache == 4 * one.kv_cache == 4 * 4096 * info.llm.kv_bytes_per_token
    assert one.weights == info.weight_bytes
    assert one.total == one.library + one.overhead + one.weights + one.kv_cache
    configured = estimate_for_parameters(info, {"n_ctx": "2048", "n_seq_max": "2"})
    assert (configured.context, configured.parallel) == (2048, 2)


def test_sliding_window_layers_hold_only_the_window(tmp_path: Path) -> None:
    path = am.gguf_header(
        tmp_path / "g.gguf",
        arch="gemma3",
        layers=18,
        width=640,
        heads=4,
        kv_heads=1,
        ff=2048,
        vocab=1000,
        context=32768,
        file_type=15,
        tensor_type=12,
        sliding_window=512,
    )
    info = inspect_artifact(path)
    assert info.llm is not None and (info.llm.swa_layers, info.llm.sliding_window) == (15, 512)
    per_layer = info.llm.kv_bytes_per_token // 18
    # 3 full layers hold 8192 tokens; 15 windowed layers hold 512 + one 512-token batch
    assert info.llm.kv_cache_bytes(8192, 1) == per_layer * (3 * 8192 + 15 * 1024)
    assert info.llm.kv_cache_bytes(512, 1) == per_layer * 18 * 512
    assert info.llm.kv_cache_bytes(8192, 1, swa_full=True) == per_layer * 18 * 8192
    # the advisor keeps the full window when it adds at most half the estimate and fits
    roomy = advise(info, am.LAPTOP)
    assert roomy.settings["parameters.swa_full"] == "true"
    assert "longer than the 512-token window" in roomy.reasons["parameters.swa_full"]
    full = estimate_for_parameters(
        info, {k.split(".")[1]: str(v) for k, v in roomy.settings.items()}
    )
    assert full.kv_cache == roomy.memory.kv_cache  # the estimate counts the full window
    tight = advise(info, am.LAPTOP, memory=roomy.memory.total - 1)
    assert "parameters.swa_full" not in tight.settings


def test_budget_refusal_carries_the_estimate(tmp_path: Path) -> None:
    info = inspect_artifact(am.llm_70b(tmp_path / "big.gguf"))
    estimate = estimate_memory(info)
    with pytest.raises(ResourceExhausted, match=r"needs about 3\d\.\d GiB.*budget of 16 GiB"):
        check_budget("big", estimate, 16 * GiB)
    check_budget("big", estimate, 64 * GiB)  # fits: no error


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("8GiB", 8 * GiB),
        ("8G", 8 * GiB),
        ("8GB", 8 * 10**9),
        ("512 MiB", 512 * MIB),
        ("1.5GiB", int(1.5 * GiB)),
        ("2k", 2048),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(InvalidArgument, match="8GiB"):
        parse_size("lots")


def test_humans() -> None:
    assert human_count(70_553_706_496) == "70.6B"
    assert human_bytes(1536) == "1.5 KiB"


_CPUINFO = """processor\t: 0
physical id\t: 0
core id\t: 0
flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni amx_tile amx_int8 amx_bf16
processor\t: 1
physical id\t: 0
core id\t: 0
flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni amx_tile amx_int8 amx_bf16
"""


def test_probe_reads_a_machine_tree(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(_CPUINFO)
    (tmp_path / "proc/meminfo").write_text("MemTotal: 16384000 kB\nMemAvailable: 8192000 kB\n")
    cgroup = tmp_path / "sys/fs/cgroup"
    cgroup.mkdir(parents=True)
    (cgroup / "memory.max").write_text(f"{4 * GiB}\n")
    amd = tmp_path / "sys/class/drm/card1/device"
    amd.mkdir(parents=True)
    (amd / "vendor").write_text("0x1002\n")
    (amd / "device").write_text("0x74a1\n")
    (amd / "mem_info_vram_total").write_text(f"{192 * GiB}\n")
    intel = tmp_path / "sys/class/drm/card0/device"
    intel.mkdir(parents=True)
    (intel / "vendor").write_text("0x8086\n")
    hw = probe_at(tmp_path, run=lambda command: "", import_libraries=False)
    assert (hw.cores, hw.physical_cores) == (2, 1)
    assert hw.memory_bytes == 4 * GiB and hw.memory_available_bytes == 4 * GiB
    assert hw.isa == {"avx2": True, "avx512": True, "avx512_vnni": True, "amx": True}
    assert [(g.vendor, g.memory_bytes) for g in hw.gpus] == [("amd", 192 * GiB)]


def test_probe_prefers_nvidia_smi(tmp_path: Path) -> None:
    def smi(command: list[str]) -> str:
        assert command[0] == "nvidia-smi"
        return "NVIDIA H100 80GB HBM3, 81559\nNVIDIA H100 80GB HBM3, 81559\n"

    hw = probe_at(tmp_path, run=smi, import_libraries=False)
    assert [g.name for g in hw.gpus] == ["NVIDIA H100 80GB HBM3"] * 2
    assert hw.gpus[0].memory_bytes == 81559 * MIB


def test_probe_of_this_machine_is_sane() -> None:
    from modelyard.advisor.hardware import probe

    hw = probe()
    assert hw.cores >= 1 and hw.memory_bytes > 0
    assert hw.runtimes["onnx"] and hw.installed("python")
    hw.libraries_for("onnx")
    assert "CPUExecutionProvider" in hw.onnx_providers


def test_llama_cpp_is_asked_about_itself_once_and_never_while_a_model_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Models are advised on several threads while others load; llama.cpp writes its system info
    into one static buffer, so the probe takes the lock its loads hold and asks only once."""
    import threading
    import time

    from modelyard.advisor import hardware
    from modelyard.threads import LLAMA_CPP_LOCK

    calls: list[float] = []

    def features() -> frozenset[str]:
        calls.append(time.monotonic())
        time.sleep(0.05)  # long enough for the other threads to arrive
        return frozenset({"AVX2"})

    monkeypatch.setattr(hardware, "_llamacpp_features", features)
    hw = hardware.Hardware(
        cores=2, memory_bytes=GiB, runtimes={"llamacpp": True}, lazy_libraries=True
    )
    released_at: list[float] = []
    with LLAMA_CPP_LOCK:  # a model loading
        threads = [threading.Thread(target=hw.libraries_for, args=("llamacpp",)) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.1)
        assert calls == []  # none asked while the load held the lock
        released_at.append(time.monotonic())
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and calls[0] >= released_at[0]
    assert hw.llamacpp_features == frozenset({"AVX2"})


def test_the_llama_cpp_runtime_loads_under_the_process_lock() -> None:
    pytest.importorskip("llama_cpp")
    from modelyard.runtimes import llamacpp
    from modelyard.threads import LLAMA_CPP_LOCK

    assert llamacpp._LOADING is LLAMA_CPP_LOCK
