"""The PyTorch runtime through the real server and tritonclient (HTTP and gRPC): TorchScript in
Triton's layout (INPUT__0 naming and forward-argument naming), torch.export programs in
Triton's layout and as a bare file; metadata, inference against torch itself, batching,
statistics and bad input."""

from __future__ import annotations

import shutil
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch
from tritonclient.utils import InferenceServerException

from modelyard.errors import InvalidArgument, ModelLoadError
from modelyard.repository.loader import Loaded, load_version
from modelyard.repository.scan import scan
from tests.runtimes.clients import (
    PROTOCOLS,
    Client,
    bad_request_status,
    connect,
    infer_input,
    infer_together,
    metadata,
    model_config,
    outcome_count,
    statistics,
    tensors,
)
from tests.server_process import ServerProcess
from tests.torch_models import (
    IMAGE,
    build_torch_repository,
    export,
    models,
    script,
)

RNG = np.random.default_rng(0)
IMAGES = RNG.random((3, *IMAGE), dtype=np.float32)
A = RNG.random((2, 4), dtype=np.float32)
B = RNG.random((2, 4), dtype=np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = build_torch_repository(tmp_path_factory.mktemp("torch_repo"))
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with ServerProcess(
        str(repo), "--model-control-mode", "explicit", "--load-model", "*", log_path=log
    ) as process:
        yield process


@pytest.fixture(params=PROTOCOLS)
def client(request: pytest.FixtureRequest, server: ServerProcess) -> Iterator[Client]:
    with connect(request.param, server) as client:
        yield client


def _reference() -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    cnn, mlp = models()
    with torch.inference_mode():
        classes = cnn(torch.from_numpy(IMAGES)).numpy()
        total, diff = mlp(torch.from_numpy(A), torch.from_numpy(B))
    return classes, (total.numpy(), diff.numpy())


def test_metadata_from_the_config_and_from_the_exported_program(client: Client) -> None:
    scripted = metadata(client, "cnn_script")
    assert tensors(scripted, "inputs") == [("INPUT__0", "FP32", [-1, 1, 8, 8])]
    assert tensors(scripted, "outputs") == [("OUTPUT__0", "FP32", [-1, 3])]
    exported = metadata(client, "cnn_export")
    assert tensors(exported, "inputs") == [("image", "FP32", [-1, 1, 8, 8])]
    assert tensors(exported, "outputs") == [("OUTPUT__0", "FP32", [-1, 3])]
    assert int(model_config(client, "cnn_export")["max_batch_size"]) == 256
    bare = metadata(client, "addsub")
    assert [t[0] for t in tensors(bare, "inputs")] == ["a", "b"]
    assert tensors(bare, "outputs") == [
        ("OUTPUT__0", "FP32", [-1, 4]),
        ("OUTPUT__1", "FP32", [-1, 4]),
    ]
    assert model_config(client, "cnn_script")["platform"] == "pytorch_libtorch"


def test_infer_matches_torch(client: Client) -> None:
    classes, (total, diff) = _reference()
    for model, name in (("cnn_script", "INPUT__0"), ("cnn_export", "image")):
        result = client.infer(model, [infer_input(client, name, IMAGES)])
        np.testing.assert_allclose(result.as_numpy("OUTPUT__0"), classes, rtol=1e-5)
    # forward's arguments by name, whatever order the config lists them in
    traced = client.infer(
        "addsub_traced", [infer_input(client, "a", A), infer_input(client, "b", B)]
    )
    np.testing.assert_allclose(traced.as_numpy("SUM__0"), total, rtol=1e-5)
    np.testing.assert_allclose(traced.as_numpy("DIFF__1"), diff, rtol=1e-5)
    bare = client.infer("addsub", [infer_input(client, "b", B), infer_input(client, "a", A)])
    np.testing.assert_allclose(bare.as_numpy("OUTPUT__0"), total, rtol=1e-5)
    np.testing.assert_allclose(bare.as_numpy("OUTPUT__1"), diff, rtol=1e-5)


def test_bad_input_is_a_clear_client_error(client: Client) -> None:
    wrong_shape = np.zeros((1, 1, 8, 7), dtype=np.float32)
    wrong_type = IMAGES.astype(np.float64)
    for model, name in (("cnn_script", "INPUT__0"), ("cnn_export", "image")):
        with pytest.raises(InferenceServerException) as shape:
            client.infer(model, [infer_input(client, name, wrong_shape)])
        assert "expected [-1, 1, 8, 8]" in shape.value.message()
        with pytest.raises(InferenceServerException) as dtype:
            client.infer(model, [infer_input(client, name, wrong_type, "FP64")])
        assert "FP32" in dtype.value.message()
        for err in (shape.value, dtype.value):
            assert err.status() == bad_request_status(client)


def test_concurrent_requests_are_batched(server: ServerProcess) -> None:
    classes, _ = _reference()

    before = statistics(server, "cnn_script")
    rows = [IMAGES[k % 3 : k % 3 + 1] for k in range(12)]
    outputs = infer_together(server, "cnn_script", "INPUT__0", rows, "OUTPUT__0")
    for k, out in enumerate(outputs):
        np.testing.assert_allclose(out[0], classes[k % 3], rtol=1e-5)
    after = statistics(server, "cnn_script")
    assert after["inference_count"] - before["inference_count"] == 12
    assert after["execution_count"] - before["execution_count"] < 12
    assert max(int(b["batch_size"]) for b in after["batch_stats"]) > 1


def test_statistics_count_inferences(client: Client, server: ServerProcess) -> None:
    before = statistics(server, "cnn_export")
    for _ in range(2):
        client.infer("cnn_export", [infer_input(client, "image", IMAGES)])
    with pytest.raises(InferenceServerException):
        client.infer("cnn_export", [infer_input(client, "image", IMAGES[:, :, :4])])
    after = statistics(server, "cnn_export")
    assert after["execution_count"] - before["execution_count"] == 2
    assert after["inference_count"] - before["inference_count"] == 6
    assert outcome_count(after, "success") - outcome_count(before, "success") == 2
    assert outcome_count(after, "fail") - outcome_count(before, "fail") == 1
    assert any(int(b["batch_size"]) == 3 for b in after["batch_stats"])


# ---- in process: what the loader says, AOTInductor, threads -----------------------------------


def _load(root: Path, name: str) -> Loaded:
    source = scan([root])[name]
    return load_version(source, max(source.versions), trust_pickle=False)


def test_torchscript_without_tensors_in_a_config_says_to_list_them(tmp_path: Path) -> None:
    cnn, _ = models()
    script(cnn, tmp_path / "cnn.pt")
    with pytest.raises(ModelLoadError, match="does not declare its inputs and outputs"):
        _load(tmp_path, "cnn")


def test_inputs_named_neither_way_are_refused(tmp_path: Path) -> None:
    cnn, _ = models()
    script(cnn, tmp_path / "cnn" / "1" / "model.pt")
    (tmp_path / "cnn" / "config.pbtxt").write_text(
        'platform: "pytorch_libtorch"\nmax_batch_size: 4\n'
        'input [{ name: "pixels", data_type: TYPE_FP32, dims: [1, 8, 8] }]\n'
        'output [{ name: "OUTPUT__0", data_type: TYPE_FP32, dims: [3] }]\n'
    )
    with pytest.raises(ModelLoadError, match=r"forward arguments \['image'\].*INPUT__0"):
        _load(tmp_path, "cnn")


def test_threads_per_instance_from_the_parameters(tmp_path: Path) -> None:
    cnn, _ = models()
    script(cnn, tmp_path / "cnn" / "1" / "model.pt")
    (tmp_path / "cnn" / "config.pbtxt").write_text(
        'platform: "pytorch_libtorch"\nmax_batch_size: 4\n'
        'input [{ name: "INPUT__0", data_type: TYPE_FP32, dims: [1, 8, 8] }]\n'
        'output [{ name: "OUTPUT__0", data_type: TYPE_FP32, dims: [3] }]\n'
        'parameters { key: "INTRA_OP_THREAD_COUNT" value { string_value: "1" } }\n'
    )
    loaded = _load(tmp_path, "cnn")
    try:
        seen: list[int] = []

        def run() -> None:
            loaded.runtime.infer({"INPUT__0": IMAGES})
            seen.append(torch.get_num_threads())

        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
        assert seen == [1]
    finally:
        loaded.runtime.unload()


def test_an_aotinductor_package_serves_with_tensors_from_its_config(tmp_path: Path) -> None:
    cnn, _ = models()
    program = export(cnn, (torch.zeros(2, *IMAGE),))
    (tmp_path / "cnn" / "1").mkdir(parents=True)
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("AOTInductor needs a C++ compiler to build a package; this machine has none")
    with warnings.catch_warnings():  # inductor calls TorchScript APIs torch 2.13 deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(tmp_path / "cnn" / "1" / "model.pt2")
        )
    (tmp_path / "cnn" / "config.pbtxt").write_text(
        'backend: "pytorch"\ndefault_model_filename: "model.pt2"\nmax_batch_size: 4\n'
        'input [{ name: "INPUT__0", data_type: TYPE_FP32, dims: [1, 8, 8] }]\n'
        'output [{ name: "OUTPUT__0", data_type: TYPE_FP32, dims: [3] }]\n'
    )
    loaded = _load(tmp_path, "cnn")
    classes, _ = _reference()
    got = loaded.runtime.infer({"INPUT__0": IMAGES})
    np.testing.assert_allclose(got["OUTPUT__0"], classes, rtol=1e-5)
    one = loaded.runtime.infer({"INPUT__0": IMAGES[:1]})  # the batch dimension is dynamic
    np.testing.assert_allclose(one["OUTPUT__0"], classes[:1], rtol=1e-5)


def test_what_torch_refuses_is_invalid_argument(tmp_path: Path) -> None:
    _, mlp = models()
    torch.export.save(export(mlp, (torch.zeros(2, 4), torch.zeros(2, 4))), tmp_path / "m.pt2")
    loaded = _load(tmp_path, "m")
    wide = np.zeros((2, 5), dtype=np.float32)
    with pytest.raises(InvalidArgument, match=r"rejected the inputs: .*size\(\)\[1\] == 4"):
        loaded.runtime.infer({"a": wide, "b": wide})


def test_torchscript_in_the_simple_layout(tmp_path: Path) -> None:
    _, mlp = models()
    script(mlp, tmp_path / "addsub" / "model.pt")
    (tmp_path / "addsub" / "model.yaml").write_text(
        "max_batch_size: 4\n"
        "inputs:\n"
        "  - {name: INPUT__1, datatype: FP32, shape: [4]}\n"
        "  - {name: INPUT__0, datatype: FP32, shape: [4]}\n"
        "outputs:\n"
        "  - {name: OUTPUT__1, datatype: FP32, shape: [4]}\n"
    )
    loaded = _load(tmp_path, "addsub")
    assert loaded.config.runtime == "pytorch"
    _, (_, diff) = _reference()
    got = loaded.runtime.infer({"INPUT__0": A, "INPUT__1": B})  # by position: a, b
    assert list(got) == ["OUTPUT__1"]
    np.testing.assert_allclose(got["OUTPUT__1"], diff, rtol=1e-5)
