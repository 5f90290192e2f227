"""The advisor on pipelines: memory (what loading adds), and steps it would merge or split; from
facts about each step, and through `modelyard advise` on a repository with ensembles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from modelyard.advisor.pipelines import StepFacts, advise_pipeline
from modelyard.advisor.render import schema
from modelyard.cli import main
from modelyard.spec.pipeline import PipelineSpec, Step
from tests.models import addsub_onnx
from tests.pipeline_models import pipeline_repository

MIB = 2**20
CHAIN = PipelineSpec(
    [
        Step("a", inputs={"X": "IN"}, outputs={"Y": "mid"}),
        Step("b", inputs={"X": "mid"}, outputs={"Y": "OUT"}),
    ]
)
# "a" feeds two readers: nothing to merge it with
FANOUT = PipelineSpec(
    [
        Step("a", inputs={"X": "IN"}, outputs={"Y": "mid"}),
        Step("b", inputs={"X": "mid"}, outputs={"Y": "L"}),
        Step("c", inputs={"X": "mid"}, outputs={"Y": "R"}),
    ]
)


def _facts(runtime: str, name: str, **changes: object) -> StepFacts:
    facts = StepFacts(name, runtime, "process", 8, 10 * MIB, False)
    for key, value in changes.items():
        setattr(facts, key, value)
    return facts


def _advise(spec: PipelineSpec, *facts: StepFacts, max_batch_size: int = 8) -> list[str]:
    advice = advise_pipeline("p", spec, max_batch_size, {f.model: f for f in facts})
    return [f"{n.rule}: {','.join(n.steps)}" for n in advice.notes]


@pytest.mark.parametrize(
    ("runtimes", "notes"),
    [
        (("python", "python"), ["pipeline-merge: a,b"]),
        (("triton_python", "triton_python"), ["pipeline-merge: a,b"]),
        (("onnx", "onnx"), ["pipeline-merge: a,b"]),
        (("python", "onnx"), []),  # different runtimes: nothing to merge into
        (("python", "triton_python"), []),
    ],
)
def test_a_chain_on_one_runtime_is_worth_merging(
    runtimes: tuple[str, str], notes: list[str]
) -> None:
    assert _advise(CHAIN, _facts(runtimes[0], "a"), _facts(runtimes[1], "b")) == notes


def test_the_merge_note_says_why_and_how() -> None:
    python = advise_pipeline("p", CHAIN, 8, {m: _facts("python", m) for m in ("a", "b")}).notes[0]
    assert "one Python model" in python.text and "a round trip to a worker process" in python.text
    assert "measured here" in python.text
    onnx = advise_pipeline("p", CHAIN, 8, {m: _facts("onnx", m) for m in ("a", "b")}).notes[0]
    assert "onnx.compose.merge_models" in onnx.text and "worker process" not in onnx.text


def test_a_tensor_with_two_readers_is_no_chain() -> None:
    assert _advise(FANOUT, *(_facts("python", m) for m in "abc")) == []


def test_a_python_step_with_a_model_file_beside_it_is_worth_splitting() -> None:
    heavy = _facts("python", "a", model_files=["1/model.onnx"])
    assert _advise(CHAIN, heavy, _facts("onnx", "b")) == ["pipeline-split: a"]


def test_an_unbatched_step_among_batched_ones() -> None:
    notes = _advise(CHAIN, _facts("python", "a", max_batch_size=0), _facts("onnx", "b"))
    assert notes == ["pipeline-unbatched: a"]
    # none batches: nothing sets the pace alone
    both = (_facts("python", "a", max_batch_size=0), _facts("onnx", "b", max_batch_size=0))
    assert _advise(CHAIN, *both, max_batch_size=0) == []


def test_memory_counts_each_step_once_and_what_loading_adds() -> None:
    twice = PipelineSpec([*CHAIN.steps, Step("a", inputs={"X": "OUT"}, outputs={"Y": "END"})])
    facts = {"a": _facts("onnx", "a"), "b": _facts("onnx", "b", loaded=True)}
    advice = advise_pipeline("p", twice, 8, facts)
    assert advice.memory_bytes == 20 * MIB
    assert advice.memory_to_load_bytes == 10 * MIB
    assert "b already loaded, so loading it adds 10 MiB" in advice.describe_memory()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = pipeline_repository(tmp_path_factory.mktemp("pipelines"))
    # a Python step that opens an ONNX graph itself
    addsub_onnx(root / "preprocess" / "1" / "inner.onnx", scale=1.0)
    return root


def test_advise_a_repository_with_pipelines(repo: Path) -> None:
    result = CliRunner().invoke(main, ["advise", str(repo)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "\npipeline — a pipeline of 3 step models (batches of up to 8)" in out
    assert "addsub (onnx, batches of 16)" in out
    assert "  split    step 'preprocess' is Python code with a model file beside it" in out
    assert "\nslowchain — a pipeline of 2 step models" in out
    assert "  merge    steps 'slow_left' and 'slow_right' form a chain on python" in out
    assert all(len(line) <= 100 for line in out.splitlines())


def test_advise_json_lists_pipelines_and_validates(repo: Path) -> None:
    result = CliRunner().invoke(main, ["advise", str(repo), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    jsonschema.validate(document, schema())
    pipelines = {p["name"]: p for p in document["pipelines"]}
    assert set(pipelines) == {"pipeline", "pipeline_yaml", "fanout", "slowchain", "fails"}
    steps = {s["model"]: s for s in pipelines["pipeline"]["steps"]}
    assert steps["addsub"]["memory_bytes"] > 0
    assert pipelines["pipeline"]["memory_bytes"] >= steps["addsub"]["memory_bytes"]
    assert steps["preprocess"]["model_files"] == ["1/inner.onnx"]
    assert {m["name"] for m in document["models"]} >= {"addsub", "preprocess", "slow_left"}


def test_advise_one_ensemble_folder_finds_its_steps(repo: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["advise", str(repo / "slowchain")])
    assert result.exit_code == 0, result.output
    assert "\nslowchain — a pipeline of 2 step models" in result.output
    assert "\nslow_left — " in result.output and "\npipeline — " not in result.output
    # an ensemble whose steps are missing is still advised on what is there
    shutil.copytree(repo / "slowchain", tmp_path / "slowchain")
    alone = CliRunner().invoke(main, ["advise", str(tmp_path / "slowchain")])
    assert alone.exit_code == 0, alone.output
    assert "a pipeline of 0 step models" in alone.output
    assert "no step model slow_left, slow_right here: loading it will fail" in alone.output
