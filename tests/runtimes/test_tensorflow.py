"""The TensorFlow runtime through the real server and tritonclient (HTTP and gRPC): a Keras
SavedModel in Triton's layout and OVMS's, `tf.Module` SavedModels as bare folders, a second
signature picked by TF_SIGNATURE_DEF; metadata, inference against Keras itself, batching,
statistics, bad input and what TensorFlow itself refuses."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from modelyard.errors import InvalidArgument, ModelLoadError
from modelyard.repository.loader import Loaded, load_version
from modelyard.repository.scan import scan
from tests.runtimes.kserve import (
    PROTOCOLS,
    Client,
    assert_bad_input,
    assert_batched,
    assert_counted,
    assert_refused,
    infer_input,
    metadata,
    model_config,
    open_client,
    tensors,
)
from tests.server_process import ServerProcess
from tests.tf_models import (
    AnyWidth,
    build_tf_repository,
    classifier,
    export_classifier,
    save_addsub,
    save_module,
)

RNG = np.random.default_rng(0)
ROWS = RNG.random((3, 4), dtype=np.float32)
A = RNG.random((2, 4), dtype=np.float32)
B = RNG.random((2, 4), dtype=np.float32)
CLASSIFIERS = ("classifier", "classifier_ovms")
#: Importing TensorFlow takes seconds on a quiet machine and most of a minute on a busy one.
START_TIMEOUT_S = 300
pytestmark = pytest.mark.timeout(START_TIMEOUT_S + 60)  # the first test waits for the start


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = build_tf_repository(tmp_path_factory.mktemp("tf_repo"))
    log = tmp_path_factory.mktemp("logs") / "server.log"
    process = ServerProcess(
        str(repo), "--model-control-mode", "explicit", "--load-model", "*", log_path=log
    )
    process.start(timeout=START_TIMEOUT_S)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(params=PROTOCOLS)
def client(request: pytest.FixtureRequest, server: ServerProcess) -> Iterator[Client]:
    with open_client(request.param, server) as opened:
        yield opened


def _probabilities(rows: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.asarray(classifier()(rows))
    return out


def test_metadata_from_the_signature_in_every_layout(client: Client) -> None:
    for model in CLASSIFIERS:
        meta = metadata(client, model)
        assert tensors(meta, "inputs") == [("x", "FP32", [-1, 4])]
        assert tensors(meta, "outputs") == [("output_0", "FP32", [-1, 3])]
        assert int(model_config(client, model)["max_batch_size"]) == 256
    assert model_config(client, "classifier")["platform"] == "tensorflow_savedmodel"
    bare = metadata(client, "addsub")
    assert tensors(bare, "inputs") == [("a", "FP32", [-1, 4]), ("b", "FP32", [-1, 4])]
    assert tensors(bare, "outputs") == [("diff", "FP32", [-1, 4]), ("sum", "FP32", [-1, 4])]
    scaled = metadata(client, "addsub_scaled")
    assert tensors(scaled, "inputs") == [("a", "FP32", [-1, 4])]
    assert tensors(scaled, "outputs") == [("scaled", "FP32", [-1, 4])]
    words = metadata(client, "words")
    assert tensors(words, "inputs") == [("text", "BYTES", [-1])]
    assert tensors(words, "outputs") == [("length", "INT32", [-1]), ("upper", "BYTES", [-1])]


def test_infer_matches_keras(client: Client) -> None:
    want = _probabilities(ROWS)
    for model in CLASSIFIERS:
        result = client.infer(model, [infer_input(client, "x", ROWS)])
        np.testing.assert_allclose(result.as_numpy("output_0"), want, rtol=1e-5, atol=1e-6)


def test_infer_by_signature(client: Client) -> None:
    both = client.infer("addsub", [infer_input(client, "b", B), infer_input(client, "a", A)])
    np.testing.assert_allclose(both.as_numpy("sum"), A + B, rtol=1e-6)
    np.testing.assert_allclose(both.as_numpy("diff"), A - B, rtol=1e-6)
    scaled = client.infer("addsub_scaled", [infer_input(client, "a", A)])
    np.testing.assert_allclose(scaled.as_numpy("scaled"), A * 2, rtol=1e-6)


def test_text_in_and_out(client: Client) -> None:
    text = np.array([b"hello", b"model yard"], dtype=object)
    result = client.infer("words", [infer_input(client, "text", text, "BYTES")])
    assert result.as_numpy("length").tolist() == [5, 10]
    assert result.as_numpy("upper").tolist() == [b"HELLO", b"MODEL YARD"]


def test_bad_input_is_a_clear_client_error(client: Client) -> None:
    for model in CLASSIFIERS:
        wrong_shape = np.zeros((1, 5), dtype=np.float32)
        assert_bad_input(client, model, "x", wrong_shape, ROWS.astype(np.float64), "[-1, 4]")


def test_what_tensorflow_refuses_is_a_client_error(client: Client) -> None:
    wide = np.ones((2, 5), dtype=np.float32)
    refused = [infer_input(client, "x", wide)]
    assert_refused(client, "anywidth", refused, "TensorFlow rejected the inputs")
    fine = client.infer("anywidth", [infer_input(client, "x", wide[:, :4])])
    np.testing.assert_allclose(fine.as_numpy("y"), np.full((2, 2), 4.0))


def test_concurrent_requests_are_batched(server: ServerProcess) -> None:
    assert_batched(server, "classifier", "x", ROWS, "output_0", _probabilities(ROWS))


def test_statistics_count_inferences(client: Client, server: ServerProcess) -> None:
    assert_counted(client, server, "classifier_ovms", "x", ROWS, ROWS[:, :3])


# ---- in process: what the loader says, signatures, threads ------------------------------------


def _load(root: Path, name: str) -> Loaded:
    source = scan([root])[name]
    return load_version(source, max(source.versions), trust_pickle=False)


def test_an_unknown_signature_is_refused_naming_those_there(tmp_path: Path) -> None:
    save_addsub(tmp_path / "addsub" / "1" / "model.savedmodel")
    (tmp_path / "addsub" / "config.pbtxt").write_text(
        'platform: "tensorflow_savedmodel"\n'
        'parameters { key: "TF_SIGNATURE_DEF" value { string_value: "predict" } }\n'
    )
    with pytest.raises(ModelLoadError, match=r"no signature 'predict'.*scaled, serving_default"):
        _load(tmp_path, "addsub")


def test_a_listed_output_is_the_only_one_fetched(tmp_path: Path) -> None:
    save_addsub(tmp_path / "addsub" / "model.savedmodel")
    (tmp_path / "addsub" / "model.yaml").write_text(
        "max_batch_size: 8\n"
        "file: model.savedmodel\n"
        "outputs:\n"
        "  - {name: diff, datatype: FP32, shape: [4]}\n"
    )
    loaded = _load(tmp_path, "addsub")
    try:
        assert loaded.config.runtime == "tensorflow"
        got = loaded.runtime.infer({"a": A, "b": B})
        assert list(got) == ["diff"]
        np.testing.assert_allclose(got["diff"], A - B, rtol=1e-6)
    finally:
        loaded.runtime.unload()


def test_what_tensorflow_refuses_is_invalid_argument(tmp_path: Path) -> None:
    save_module(AnyWidth(), tmp_path / "anywidth.savedmodel")
    loaded = _load(tmp_path, "anywidth")
    try:
        with pytest.raises(InvalidArgument, match=r"TensorFlow rejected the inputs: .*5"):
            loaded.runtime.infer({"x": np.ones((2, 5), np.float32)})
    finally:
        loaded.runtime.unload()


_THREADS = """
import collections, os, sys
from pathlib import Path
import numpy as np
import modelyard.runtimes.tensorflow  # first, as in the server: before TensorFlow starts
from modelyard.repository.loader import load_version
from modelyard.repository.scan import read_entry

def threads():
    tasks = os.listdir("/proc/self/task")
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in tasks]
    return len(names), names.count("tf_Compute")

source = read_entry(Path(sys.argv[1]))
before = threads()
loaded = load_version(source, 1, trust_pickle=False)
loaded.runtime.infer({"x": np.ones((2, 4), np.float32)})
after = threads()
print(after[0] - before[0], after[1] - before[1])
"""


def test_each_instance_has_its_own_session_threads(tmp_path: Path) -> None:
    """A session per instance, each with its own pools: 2 instances of 3 intra-op threads
    start 4 more threads than 2 instances of 1, and 2 inter-op pools (TF's "Compute")."""
    export_classifier(classifier(), tmp_path / "one" / "1" / "model.savedmodel")
    grown = []
    for threads in (1, 3):
        (tmp_path / "one" / "config.pbtxt").write_text(
            'platform: "tensorflow_savedmodel"\ninstance_group [{ count: 2, kind: KIND_CPU }]\n'
            f'parameters {{ key: "TF_NUM_INTRA_THREADS" value {{ string_value: "{threads}" }} }}\n'
            'parameters { key: "TF_NUM_INTER_THREADS" value { string_value: "1" } }\n'
        )
        done = subprocess.run(
            [sys.executable, "-c", _THREADS, str(tmp_path / "one")],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        grown.append([int(n) for n in done.stdout.split()])
    assert [pools for _, pools in grown] == [2, 2]
    assert grown[1][0] - grown[0][0] == 2 * (3 - 1)


def test_a_folder_without_a_savedmodel_says_what_it_needs(tmp_path: Path) -> None:
    (tmp_path / "empty" / "1").mkdir(parents=True)
    (tmp_path / "empty" / "config.pbtxt").write_text('platform: "tensorflow_savedmodel"\n')
    source = scan([tmp_path])["empty"]
    assert source.error is not None and "no TensorFlow SavedModel" in source.error


def test_a_savedmodel_folder_served_alone_is_its_model(tmp_path: Path) -> None:
    folder = save_addsub(tmp_path / "addsub.savedmodel")
    found = scan([folder])  # `modelyard serve path/to/addsub.savedmodel`
    assert list(found) == ["addsub"]
    assert found["addsub"].versions == {1: folder / "saved_model.pb"}
    assert found["addsub"].config.runtime == "tensorflow"


def test_an_ovms_config_lists_savedmodel_versions(tmp_path: Path) -> None:
    save_addsub(tmp_path / "models" / "addsub" / "1")
    (tmp_path / "config.json").write_text(
        '{"model_config_list": [{"config": {"name": "addsub", "base_path": "models/addsub"}}]}'
    )
    loaded = _load(tmp_path, "addsub")
    try:
        assert loaded.config.runtime == "tensorflow"
        got = loaded.runtime.infer({"a": A, "b": B})
        np.testing.assert_allclose(got["sum"], A + B, rtol=1e-6)
    finally:
        loaded.runtime.unload()
