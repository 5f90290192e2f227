"""TensorFlow SavedModels inspected without importing TensorFlow, and the advisor's picks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

from modelyard.advisor.advise import advise
from modelyard.advisor.hardware import Hardware
from modelyard.advisor.inspect import inspect_artifact
from modelyard.advisor.memory import estimate_memory
from modelyard.spec.config import TensorSpec
from tests.tf_models import FEATURES, HIDDEN, Words, classifier, export_classifier, save_module

GiB = 2**30
FOUR_CORES = Hardware(
    cores=4, physical_cores=4, memory_bytes=16 * GiB, runtimes={"tensorflow": True}
)
#: The classifier's weights: Dense 4 -> 16 and 16 -> 3, kernels and biases.
PARAMETERS = FEATURES * HIDDEN + HIDDEN + HIDDEN * 3 + 3


def test_signature_parameters_and_dynamic_dims_from_the_files(tmp_path: Path) -> None:
    folder = export_classifier(classifier(), tmp_path / "classifier.savedmodel")
    for path in (folder, folder / "saved_model.pb"):
        info = inspect_artifact(path)
        assert (info.format, info.container, info.quantization) == (
            "tensorflow",
            "savedmodel",
            "FP32",
        )
        assert info.inputs == [TensorSpec("x", "FP32", [-1, FEATURES])]
        assert info.outputs == [TensorSpec("output_0", "FP32", [-1, 3])]
        assert info.dynamic_batch
        assert info.parameters == PARAMETERS
        assert info.weight_bytes == 2 * PARAMETERS * 4  # Keras saves each variable twice
        assert info.details["signature"] == "serving_default"


def test_text_tensors_read_as_bytes(tmp_path: Path) -> None:
    info = inspect_artifact(save_module(Words(), tmp_path / "words.savedmodel"))
    assert info.inputs == [TensorSpec("text", "BYTES", [-1])]
    assert info.outputs == [TensorSpec("length", "INT32", [-1]), TensorSpec("upper", "BYTES", [-1])]
    assert info.parameters == 0


def test_inspecting_imports_no_tensorflow(tmp_path: Path) -> None:
    folder = export_classifier(classifier(), tmp_path / "classifier.savedmodel")
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from modelyard.advisor.inspect import inspect_artifact\n"
        f"info = inspect_artifact(Path({str(folder)!r}))\n"
        "print(json.dumps([info.parameters, 'tensorflow' in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == [PARAMETERS, False]


def test_the_advisor_picks_tensorflow_with_threads_and_batching(tmp_path: Path) -> None:
    info = inspect_artifact(export_classifier(classifier(), tmp_path / "c.savedmodel"))
    rec = advise(info, FOUR_CORES, goal="throughput")
    assert rec.runtime == "tensorflow"
    assert rec.settings["parameters.intra_op_thread_count"] == 4
    assert rec.settings["parameters.inter_op_thread_count"] == 1
    assert rec.settings["instance_count"] == 1
    assert rec.settings["max_batch_size"] > 1
    pinned = advise(info, FOUR_CORES, goal="latency", instances=2)
    assert pinned.settings["parameters.intra_op_thread_count"] == 2
    assert not any(a.better for a in rec.alternatives)  # served here, not elsewhere
    assert estimate_memory(info).library > 200 * 2**20  # TensorFlow itself (advisor/memory.py)
