"""PyTorch archives inspected without loading them, and the advisor's picks for them."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch

from modelyard.advisor.advise import advise
from modelyard.advisor.hardware import Hardware
from modelyard.advisor.inspect import inspect_artifact
from modelyard.advisor.memory import estimate_memory
from modelyard.spec.config import TensorSpec
from tests.torch_models import IMAGE, export, models, script

GiB = 2**30
FOUR_CORES = Hardware(cores=4, physical_cores=4, memory_bytes=16 * GiB, runtimes={"pytorch": True})


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_an_exported_program_gives_parameters_dtype_and_dynamic_dims(tmp_path: Path) -> None:
    cnn, mlp = models()
    torch.export.save(export(cnn, (torch.zeros(2, *IMAGE),)), tmp_path / "cnn.pt2")
    info = inspect_artifact(tmp_path / "cnn.pt2")
    assert (info.format, info.quantization) == ("torch-export", "FP32")
    assert info.parameters == _parameters(cnn)
    assert info.inputs == [TensorSpec("image", "FP32", [-1, 1, 8, 8])]
    assert info.outputs == [TensorSpec("OUTPUT__0", "FP32", [-1, 3])]
    assert info.dynamic_batch
    torch.export.save(export(mlp.half(), (torch.zeros(2, 4).half(),) * 2), tmp_path / "mlp.pt2")
    half = inspect_artifact(tmp_path / "mlp.pt2")
    assert (half.quantization, half.parameters) == ("FP16", _parameters(mlp))
    assert [t.name for t in half.outputs] == ["OUTPUT__0", "OUTPUT__1"]


def test_torchscript_parameters_from_its_storages(tmp_path: Path) -> None:
    cnn, _ = models()
    script(cnn, tmp_path / "cnn.pt")
    info = inspect_artifact(tmp_path / "cnn.pt")
    assert (info.format, info.quantization) == ("torchscript", "FP32")
    assert info.parameters == _parameters(cnn)
    assert not info.inputs  # TorchScript declares no shapes: the config lists them


def test_the_advisor_picks_pytorch_with_threads_and_batching(tmp_path: Path) -> None:
    cnn, _ = models()
    torch.export.save(export(cnn, (torch.zeros(2, *IMAGE),)), tmp_path / "cnn.pt2")
    info = inspect_artifact(tmp_path / "cnn.pt2")
    rec = advise(info, FOUR_CORES, goal="throughput")
    assert rec.runtime == "pytorch"
    assert rec.settings["parameters.intra_op_thread_count"] == 4
    assert rec.settings["instance_count"] == 1
    assert rec.settings["max_batch_size"] > 1
    pinned = advise(info, FOUR_CORES, goal="latency", instances=2)
    assert pinned.settings["parameters.intra_op_thread_count"] == 2
    assert not any(a.better for a in rec.alternatives)  # served here, not elsewhere
    memory = estimate_memory(info)
    assert memory.library > 250 * 2**20  # torch itself, measured (advisor/memory.py)
