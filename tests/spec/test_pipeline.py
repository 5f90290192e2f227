"""A pipeline's wiring is checked before any model loads: every read tensor has a producer,
no tensor is written twice, no cycle; each error names the step."""

from __future__ import annotations

import pytest

from modelyard.errors import InvalidArgument
from modelyard.spec.pipeline import PipelineSpec, Step


def _spec(*steps: tuple[str, dict[str, str], dict[str, str]]) -> PipelineSpec:
    return PipelineSpec([Step(m, -1, i, o) for m, i, o in steps])


def test_a_dag_with_two_readers_of_one_tensor_is_fine() -> None:
    spec = _spec(
        ("pre", {"RAW": "IN"}, {"A": "a"}),
        ("left", {"X": "a"}, {"Y": "l"}),
        ("right", {"X": "a"}, {"Y": "r"}),
        ("join", {"L": "l", "R": "r"}, {"Z": "OUT"}),
    )
    spec.check("p", ["IN"], ["OUT"])
    assert spec.models == ["pre", "left", "right", "join"]
    assert spec.produced() == {"a": 0, "l": 1, "r": 2, "OUT": 3}


@pytest.mark.parametrize(
    ("steps", "inputs", "outputs", "fragment"),
    [
        ([], ["IN"], [], "has no steps"),
        ([("m", {"X": "nowhere"}, {"Y": "OUT"})], ["IN"], ["OUT"], "step 1 (model 'm') reads"),
        ([("m", {"X": "IN"}, {"Y": "y"})], ["IN"], ["OUT"], "output 'OUT' is produced by no"),
        (
            [("m", {"X": "IN"}, {"Y": "t"}), ("n", {"X": "IN"}, {"Y": "t"})],
            ["IN"],
            ["t"],
            "step 2 (model 'n') writes tensor 't'",
        ),
        ([("m", {"X": "IN"}, {"Y": "IN"})], ["IN"], [], "the request already provides"),
        (
            [("m", {"X": "b"}, {"Y": "a"}), ("n", {"X": "a"}, {"Y": "b"})],
            [],
            ["a"],
            "cycle through step 1 (model 'm'), step 2 (model 'n')",
        ),
        ([("", {}, {"Y": "OUT"})], [], ["OUT"], "step 1 names no model"),
    ],
)
def test_wiring_errors_name_the_step(
    steps: list[tuple[str, dict[str, str], dict[str, str]]],
    inputs: list[str],
    outputs: list[str],
    fragment: str,
) -> None:
    with pytest.raises(InvalidArgument, match="pipeline 'p'") as err:
        _spec(*steps).check("p", inputs, outputs)
    assert fragment in err.value.message


def test_triton_json_form() -> None:
    spec = _spec(("m", {"X": "IN"}, {"Y": "OUT"}))
    assert spec.to_triton() == {
        "step": [
            {
                "model_name": "m",
                "model_version": -1,
                "input_map": {"X": "IN"},
                "output_map": {"Y": "OUT"},
            }
        ]
    }
