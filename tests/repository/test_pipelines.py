"""Reading pipelines from disk: Triton's ensemble_scheduling, a model.yaml pipeline section and
an OVMS config.json (its models and its DAGs), with clear errors for what does not read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from modelyard.errors import InvalidArgument, ModelLoadError
from modelyard.listing import describe_repository, render_table
from modelyard.repository.config import from_yaml, parse_pbtxt
from modelyard.repository.scan import reread, scan
from modelyard.settings import Settings
from modelyard.spec.pipeline import Step
from tests.pipeline_models import ENSEMBLE_CONFIG, PIPELINE_YAML, ovms_repository


def test_ensemble_scheduling_is_read() -> None:
    config = parse_pbtxt(ENSEMBLE_CONFIG, "pipeline")
    assert config.pipeline is not None
    assert config.runtime is None and config.platform == "ensemble"
    assert config.pipeline.steps[1] == Step(
        "addsub", -1, {"INPUT0": "a", "INPUT1": "b"}, {"OUTPUT0": "sum", "OUTPUT1": "diff"}
    )
    assert config.max_batch_size == 8
    assert config.to_triton_json()["ensemble_scheduling"] == config.pipeline.to_triton()


def test_model_yaml_pipeline_is_the_same_dag() -> None:
    config = from_yaml(yaml.safe_load(PIPELINE_YAML), "pipeline_yaml")
    triton = parse_pbtxt(ENSEMBLE_CONFIG, "pipeline")
    assert config.pipeline == triton.pipeline
    assert [t.name for t in config.inputs] == ["RAW"]
    assert config.outputs[0].name == "RESULT" and config.outputs[0].datatype == ""


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('platform: "ensemble"', "needs ensemble_scheduling"),
        (
            'platform: "ensemble"\noutput [{ name: "O" data_type: TYPE_FP32 dims: [1] }]\n'
            'ensemble_scheduling { step [ { model_name: "m" input_map { key: "X" value: "I" }'
            ' output_map { key: "Y" value: "O" } } ] }',
            "step 1 (model 'm') reads tensor 'I'",
        ),
    ],
)
def test_bad_ensembles_do_not_read(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_pbtxt(text, "e")
    assert fragment in err.value.message


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"steps": "no"}, "pipeline needs a list of steps"),
        ({"steps": [], "extra": 1}, "unknown pipeline keys ['extra']"),
        ({"steps": [{"inputs": {}}]}, "each pipeline step needs a model"),
        ({"steps": [{"model": "m", "input": {}}]}, "step 'm' has unknown keys ['input']"),
        ({"steps": [{"model": "m", "inputs": ["a"]}]}, "inputs must map"),
        ({"steps": [{"model": "m"}], "inputs": [{"name": "x", "datatype": "NOPE"}]}, "NOPE"),
    ],
)
def test_bad_model_yaml_pipelines_say_what_to_fix(
    section: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        from_yaml({"pipeline": section}, "p")
    assert fragment in err.value.message


def test_an_ovms_repository_is_read_from_its_config_json(tmp_path: Path) -> None:
    root = ovms_repository(tmp_path)
    found = scan([root])
    assert sorted(found) == ["addsub", "pipeline", "post", "pre"]
    assert found["addsub"].versions == {
        1: root / "models" / "addsub" / "1" / "model.onnx",
        2: root / "models" / "addsub" / "2" / "model.onnx",
    }
    pipeline = found["pipeline"].config.pipeline
    assert pipeline is not None
    assert [s.model for s in pipeline.steps] == ["pre", "addsub", "post"]
    assert pipeline.steps[1].inputs == {"INPUT0": "pre_node/a", "INPUT1": "pre_node/B"}
    assert pipeline.steps[2].outputs == {"PRODUCT": "RESULT"}  # the response's name
    assert reread(found["addsub"]).versions == found["addsub"].versions
    (root / "config.json").write_text("{ not json")
    with pytest.raises(ModelLoadError, match=r"config\.json is not JSON"):
        reread(found["addsub"])


def test_ovms_models_that_cannot_serve_say_why(tmp_path: Path) -> None:
    (tmp_path / "twice" / "1").mkdir(parents=True)
    for file in ("a.onnx", "b.onnx"):
        (tmp_path / "twice" / "1" / file).write_bytes(b"")
    config = {
        "model_config_list": [
            {"config": {"name": "twice", "base_path": "twice"}},
            {"config": {"name": "gone", "base_path": "nowhere"}},
            {"config": {"name": "nameless"}},
        ],
        "pipeline_config_list": [
            {
                "name": "custom",
                "inputs": ["x"],
                "nodes": [{"name": "n", "model_name": "lib", "type": "custom"}],
                "outputs": [],
            },
            {
                "name": "demux",
                "inputs": ["x"],
                "nodes": [{"name": "n", "model_name": "twice", "demultiply_count": 0}],
                "outputs": [],
            },
        ],
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    found = scan([tmp_path])
    assert "several .onnx files" in str(found["twice"].error)
    assert "is not a folder" in str(found["gone"].error)
    assert "needs config.name and config.base_path" in str(found["nameless"].error)
    assert "only 'DL model' nodes" in str(found["custom"].error)
    assert "demultiply_count is not supported" in str(found["demux"].error)


def test_modelyard_list_shows_a_pipeline_and_its_steps(tmp_path: Path) -> None:
    rows = describe_repository(Settings(repositories=(ovms_repository(tmp_path),)))
    pipeline = next(r for r in rows if r["name"] == "pipeline")
    assert pipeline["runtime"] == "ensemble"
    assert pipeline["inputs"] == ["RAW (from its step)"]
    assert "a pipeline: pre -> addsub -> post" in render_table(rows)
