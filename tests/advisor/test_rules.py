"""The decision guide over a matrix of artifacts x goals x machines: the pick, settings,
alternatives and warnings are the ones the rules table says, with a reason for each."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from modelyard.advisor import rules
from modelyard.advisor.advise import Recommendation, advise
from modelyard.advisor.artifact import ArtifactInfo
from modelyard.advisor.hardware import Hardware
from modelyard.advisor.inspect import inspect_artifact
from modelyard.errors import InvalidArgument
from tests import advisor_models as am
from tests import models

GiB = 2**30
BIG_CPU = Hardware(
    cores=64,
    physical_cores=32,
    memory_bytes=256 * GiB,
    isa={"avx2": True},
    runtimes=dict(am.ALL_RUNTIMES),
)
PROFILES = {**am.PROFILES, "big_cpu": BIG_CPU}


def _fixed_batch_onnx(path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["probabilities"], axis=1)],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 4])],
    )
    models._save(graph, path)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ArtifactInfo]:
    root = tmp_path_factory.mktemp("artifacts")
    _fixed_batch_onnx(root / "onnx_classifier.onnx")
    models.addsub_onnx(root / "onnx_dynamic.onnx")
    models.mlp_onnx(root / "onnx_mlp_tiny.onnx")
    models.mlp_onnx(root / "onnx_mlp_light.onnx", widths=(64, 512, 256, 4))
    models.sklearn_skops(root / "sklearn.skops")
    models.xgboost_ubj(root / "xgboost.ubj")
    am.llm_1b(root / "llm.gguf")
    am.llm_1b(root / "base_llm.gguf", chat_template=None)
    am.embedding_bert(root / "embedding.gguf")
    am.llm_70b(root / "llm_70b.gguf")
    (root / "python.py").write_text(textwrap.dedent(models.TEXT_MODEL))
    (root / "engine.plan").write_bytes(b"\0" * 1024)
    return {p.stem: inspect_artifact(p) for p in sorted(root.iterdir())}


ARTIFACT_RUNTIMES = {
    "onnx_classifier": "onnx",
    "onnx_dynamic": "onnx",
    "onnx_mlp_tiny": "onnx",
    "onnx_mlp_light": "onnx",
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "llm": "llamacpp",
    "base_llm": "llamacpp",
    "embedding": "llamacpp",
    "llm_70b": "llamacpp",
    "python": "python",
    "engine": None,
}


@pytest.mark.parametrize("goal", ["latency", "throughput"])
@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("artifact", sorted(ARTIFACT_RUNTIMES))
def test_every_combination_is_explained(
    artifacts: dict[str, ArtifactInfo], artifact: str, profile: str, goal: str
) -> None:
    rec = advise(artifacts[artifact], PROFILES[profile], goal=goal)
    assert rec.runtime == ARTIFACT_RUNTIMES[artifact]
    assert rec.reasons["runtime"]
    for key in rec.settings:
        assert rec.reasons[key] and "{" not in rec.reasons[key], key
    for alternative in rec.alternatives:
        assert alternative.system and "{" not in alternative.reason
    assert all("{" not in w for w in rec.warnings)
    known = {r.id for table in rules.ALL_RULES.values() for r in table}
    assert set(rec.rules) <= known
    _check_schema(rec)


def _check_schema(rec: Recommendation) -> None:
    import jsonschema

    from modelyard.advisor.render import Advice, schema, to_json

    jsonschema.validate(to_json(rec.hardware, [Advice("m", rec)]), schema())


# artifact, profile, goal, options, rules that must match, rules that must not, settings
CASES: list[tuple[str, str, str, dict[str, Any], set[str], set[str], dict[str, Any]]] = [
    (
        "onnx_classifier",
        "laptop",
        "latency",
        {},
        {"onnx", "onnx-instance", "onnx-threads"},
        {"batch-latency", "onnx-fixed-batch", "onnx-threads-light"},
        {"parameters.intra_op_thread_count": 4, "instance_count": 1},
    ),
    # measured: below 0.1M parameters every core goes to onnxruntime; from 0.1M to 5M one is
    # left to the event loop
    (
        "onnx_mlp_tiny",
        "laptop",
        "latency",
        {},
        {"onnx-threads"},
        {"onnx-threads-light"},
        {"parameters.intra_op_thread_count": 4, "instance_count": 1},
    ),
    (
        "onnx_mlp_light",
        "laptop",
        "latency",
        {},
        {"onnx-threads", "onnx-threads-light"},
        set(),
        {"parameters.intra_op_thread_count": 3, "instance_count": 1},
    ),
    # INT32 inputs are not feature vectors of floats: every core goes to onnxruntime
    (
        "onnx_dynamic",
        "laptop",
        "latency",
        {},
        {"onnx-threads"},
        {"onnx-threads-light"},
        {"parameters.intra_op_thread_count": 4},
    ),
    (
        "onnx_dynamic",
        "laptop",
        "latency",
        {"instances": 2},
        {"onnx-threads-per-instance"},
        {"onnx-threads", "onnx-instance"},
        {"parameters.intra_op_thread_count": 2},
    ),
    (
        "onnx_classifier",
        "laptop",
        "throughput",
        {},
        {"onnx-fixed-batch"},
        {"batch-throughput"},
        {"parameters.intra_op_thread_count": 1, "instance_count": 8},
    ),
    (
        "onnx_dynamic",
        "laptop",
        "latency",
        {},
        {"batch-latency"},
        {"onnx-openvino"},
        {"max_batch_size": 256, "dynamic_batching.max_queue_delay_us": 0},
    ),
    (
        "onnx_dynamic",
        "laptop",
        "throughput",
        {},
        {"batch-throughput"},
        set(),
        {"dynamic_batching.max_queue_delay_us": 2000},
    ),
    (
        "onnx_dynamic",
        "laptop",
        "throughput",
        {"latency_ms": 4},
        {"batch-throughput"},
        set(),
        {"dynamic_batching.max_queue_delay_us": 1000},
    ),
    (
        "onnx_dynamic",
        "openvino_edge",
        "latency",
        {},
        {"onnx-openvino"},
        {"onnx-cuda"},
        {"parameters.execution_provider": "OpenVINOExecutionProvider"},
    ),
    (
        "onnx_dynamic",
        "gpu_box",
        "throughput",
        {},
        {"onnx-cuda", "onnx-gpu-tensorrt"},
        {"onnx-openvino"},
        {
            "parameters.execution_provider": "CUDAExecutionProvider",
            "parameters.intra_op_thread_count": 1,
        },
    ),
    (
        "sklearn",
        "laptop",
        "latency",
        {},
        {"sklearn", "sklearn-instances", "batch-latency"},
        set(),
        {"instance_count": 1, "max_batch_size": 256},
    ),
    (
        "xgboost",
        "laptop",
        "latency",
        {},
        {"xgboost-latency"},
        {"xgboost-throughput"},
        {"parameters.nthread": 1, "instance_count": 1},
    ),
    (
        "xgboost",
        "laptop",
        "throughput",
        {},
        {"xgboost-throughput", "batch-throughput"},
        set(),
        {"parameters.nthread": 4, "instance_count": 1},
    ),
    (
        "llm",
        "laptop",
        "latency",
        {},
        {"gguf", "llm-threads", "llm-context"},
        {"llamacpp-amx-sigill", "llm-embedding", "gguf-no-chat-template", "over-budget"},
        {
            "parameters.n_ctx": 4096,
            "parameters.n_seq_max": 16,
            "parameters.kv_size": 4 * 4096,
            "parameters.n_threads": 4,
        },
    ),
    (
        "llm",
        "laptop",
        "throughput",
        {},
        {"llm-context"},
        set(),
        {"parameters.n_seq_max": 32, "parameters.kv_size": 8 * 4096},
    ),
    (
        "llm",
        "laptop",
        "latency",
        {"memory": 1 * GiB},
        {"llm-context"},
        {"over-budget"},
        {"parameters.n_seq_max": 16, "parameters.kv_size": 2 * 4096, "parameters.n_ctx": 4096},
    ),
    ("llm", "laptop", "latency", {"latency_ms": 5}, {"slow-tokens"}, set(), {}),
    ("llm", "laptop", "latency", {"latency_ms": 500}, set(), {"slow-tokens"}, {}),
    (
        "llm",
        "amx_server",
        "latency",
        {},
        {"llamacpp-amx-sigill"},
        set(),
        {"parameters.n_threads": 2},
    ),
    ("llm", "amx_safe_build", "latency", {}, set(), {"llamacpp-amx-sigill"}, {}),
    ("llm", "small_gpu", "latency", {}, {"llm-small-on-gpu"}, {"llm-large-on-gpu"}, {}),
    ("base_llm", "laptop", "latency", {}, {"gguf-no-chat-template"}, set(), {}),
    (
        "embedding",
        "laptop",
        "throughput",
        {},
        {"llm-embedding"},
        {"llm-context"},
        {"parameters.embedding": "true", "parameters.n_ctx": 512},
    ),
    (
        "python",
        "laptop",
        "throughput",
        {},
        {"python-instances"},
        {"batch-throughput", "over-budget"},
        {"instance_count": 1},
    ),
    (
        "llm_70b",
        "laptop",
        "latency",
        {},
        {"llm-too-big-no-gpu", "over-budget"},
        {"llm-large-on-cpu"},
        {},
    ),
    ("llm_70b", "big_cpu", "latency", {}, {"llm-large-on-cpu"}, {"llm-too-big-no-gpu"}, {}),
    ("llm_70b", "four_gpus", "throughput", {}, {"llm-tensor-parallel"}, {"llm-multi-node"}, {}),
    ("llm_70b", "small_gpu", "latency", {}, {"llm-multi-node"}, {"llm-tensor-parallel"}, {}),
    ("llm_70b", "gpu_box", "latency", {}, {"llm-large-on-gpu"}, {"llm-tensor-parallel"}, {}),
    ("engine", "gpu_box", "latency", {}, {"tensorrt-engine", "tensorrt-triton"}, set(), {}),
]


@pytest.mark.parametrize(
    ("artifact", "profile", "goal", "options", "matched", "unmatched", "settings"), CASES
)
def test_rules_table_decides(
    artifacts: dict[str, ArtifactInfo],
    artifact: str,
    profile: str,
    goal: str,
    options: dict[str, Any],
    matched: set[str],
    unmatched: set[str],
    settings: dict[str, Any],
) -> None:
    rec = advise(artifacts[artifact], PROFILES[profile], goal=goal, **options)
    assert matched <= set(rec.rules), rec.rules
    assert not unmatched & set(rec.rules), rec.rules
    assert {k: rec.settings.get(k) for k in settings} == settings


def test_better_elsewhere_is_said_plainly(artifacts: dict[str, ArtifactInfo]) -> None:
    rec = advise(artifacts["llm_70b"], am.LAPTOP)
    assert rec.served_elsewhere
    (alternative,) = [a for a in rec.alternatives if a.better]
    assert "vLLM" in alternative.system and "no GPU" in alternative.reason
    assert "70.6 B parameters" in alternative.reason
    assert not advise(artifacts["onnx_dynamic"], am.LAPTOP).served_elsewhere


def test_shrinking_to_the_budget(artifacts: dict[str, ArtifactInfo]) -> None:
    roomy = advise(artifacts["llm"], am.LAPTOP, goal="throughput")
    tight = advise(artifacts["llm"], am.LAPTOP, goal="throughput", memory=700 * 2**20)
    assert roomy.memory.total > tight.memory.total
    assert tight.memory.total <= 700 * 2**20
    assert tight.settings["parameters.kv_size"] == tight.settings["parameters.n_ctx"] < 4096
    assert "budget" in tight.reasons["parameters.n_ctx"]


def test_a_named_runtime_gets_settings_for_it(artifacts: dict[str, ArtifactInfo]) -> None:
    rec = advise(artifacts["python"], am.LAPTOP, runtime="python")
    assert rec.reasons["runtime"] == "named in the model's config"
    assert "python" not in rec.rules  # the runtime table was not consulted


def test_missing_library_and_planned_runtime(
    artifacts: dict[str, ArtifactInfo], tmp_path: Path
) -> None:
    bare = Hardware(cores=2, memory_bytes=8 * GiB, runtimes={})
    rec = advise(artifacts["xgboost"], bare)
    assert "pip install 'modelyard[xgboost]'" in " ".join(rec.warnings)
    (tmp_path / "model.xml").write_text("<net/>")
    ir = advise(inspect_artifact(tmp_path / "model.xml"), bare)
    assert ir.runtime == "openvino" and "runtime-missing" not in ir.rules
    assert "pip install 'modelyard[openvino]'" in " ".join(ir.warnings)
    assert any(a.system.startswith("OpenVINO Model Server") for a in ir.alternatives)
    assert not any(a.better for a in ir.alternatives)  # modelyard serves IR itself
    planned = advise(inspect_artifact(tmp_path / "model.xml"), bare, runtime="tensorrt")
    assert "runtime-missing" in planned.rules


def test_unknown_goal() -> None:
    with pytest.raises(InvalidArgument, match="latency, throughput"):
        advise(ArtifactInfo(Path("x"), "onnx"), am.LAPTOP, goal="cheap")


@pytest.mark.parametrize(
    "condition", ["gpus >= 1", "not fits", "format in onnx|gguf", "token_ms > {latency_ms}", "llm"]
)
def test_conditions_read_as_written(condition: str) -> None:
    facts = {
        "gpus": 2,
        "fits": False,
        "format": "gguf",
        "token_ms": 30.0,
        "latency_ms": 10,
        "llm": True,
    }
    assert rules.holds(condition, facts)
    assert not rules.holds(
        condition,
        {
            "gpus": 0,
            "fits": True,
            "format": "sklearn",
            "token_ms": None,
            "latency_ms": None,
            "llm": False,
        },
    )


@pytest.mark.parametrize(("artifact", "profile", "goal", "options"), [c[:4] for c in CASES])
def test_reasons_match_the_settings_they_explain(
    artifacts: dict[str, ArtifactInfo],
    artifact: str,
    profile: str,
    goal: str,
    options: dict[str, Any],
) -> None:
    rec = advise(artifacts[artifact], PROFILES[profile], goal=goal, **options)
    threads = rec.settings.get("parameters.intra_op_thread_count")
    for key, reason in rec.reasons.items():  # no reason claims a thread count not chosen
        claimed = re.search(r"thread per physical core \((\d+)\)", reason)
        if claimed:
            chosen = rec.settings.get(key) if "thread" in key else threads
            assert int(claimed.group(1)) == chosen, (key, reason, chosen)
