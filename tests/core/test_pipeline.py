"""The DAG executor and the load-time check of a pipeline against its step models' configs
(no server: the step call is a coroutine the test writes)."""

from __future__ import annotations

import asyncio
import gc
import time

import numpy as np
import pytest

from modelyard.core.pipeline import Arrays, resolve, run, step_error
from modelyard.errors import Internal, ModelLoadError, NotFound, Unavailable
from modelyard.spec.config import ModelConfig, TensorSpec
from modelyard.spec.pipeline import PipelineSpec, Step

FANOUT = PipelineSpec(
    [
        Step("pre", -1, {"RAW": "IN"}, {"A": "a"}),
        Step("left", -1, {"X": "a"}, {"Y": "l"}),
        Step("right", -1, {"X": "a"}, {"Y": "r"}),
        Step("join", -1, {"L": "l", "R": "r"}, {"Z": "OUT"}),
    ]
)


async def _call(index: int, step: Step, inputs: Arrays) -> Arrays:
    await asyncio.sleep(0.3 if step.model in ("left", "right") else 0)
    if step.model == "pre":
        return {"A": inputs["RAW"] + 1}
    if step.model == "join":
        return {"Z": inputs["L"] * inputs["R"]}
    factor = 2 if step.model == "left" else 3
    return {"Y": inputs["X"] * factor}


def test_steps_run_when_their_inputs_are_ready_and_branches_overlap() -> None:
    start = time.monotonic()
    tensors = asyncio.run(run(FANOUT, {"IN": np.array([1.0, 2.0])}, _call))
    assert time.monotonic() - start < 0.5  # left and right (0.3 s each) side by side, not 0.6 s
    assert tensors["OUT"].tolist() == [24.0, 54.0]  # (2*2)*(2*3), (3*2)*(3*3)


def test_a_failing_step_cancels_the_running_ones() -> None:
    cancelled = []

    async def call(index: int, step: Step, inputs: Arrays) -> Arrays:
        if step.model == "left":
            raise Unavailable("left is down")
        try:
            return await _call(index, step, inputs)
        except asyncio.CancelledError:
            cancelled.append(step.model)
            raise

    with pytest.raises(Unavailable, match="left is down"):
        asyncio.run(run(FANOUT, {"IN": np.array([1.0])}, call))
    assert cancelled == ["right"]


def test_a_left_out_pipeline_input_is_not_waited_for() -> None:
    spec = PipelineSpec([Step("m", -1, {"X": "IN", "K": "OPTIONAL"}, {"Y": "OUT"})])
    seen: list[list[str]] = []

    async def call(index: int, step: Step, inputs: Arrays) -> Arrays:
        seen.append(sorted(inputs))
        return {"Y": inputs["X"]}

    tensors = asyncio.run(run(spec, {"IN": np.array([5])}, call))
    assert tensors["OUT"].tolist() == [5]
    assert seen == [["X"]]


def test_steps_that_never_get_their_inputs_are_an_internal_error() -> None:
    async def call(index: int, step: Step, inputs: Arrays) -> Arrays:
        return {"Y": inputs["X"]}

    broken = PipelineSpec([Step("m", -1, {"X": "loop"}, {"Y": "loop"})])  # check() refuses it
    with pytest.raises(Internal, match="never got their inputs: step 1"):
        asyncio.run(run(broken, {}, call))


def test_step_error_keeps_the_class_and_names_the_step() -> None:
    error = step_error("ens", 1, Step("m"), NotFound("unknown model 'm'"))
    assert isinstance(error, NotFound)
    assert error.message == "ensemble 'ens' step 2 (model 'm'): unknown model 'm'"


# ---- resolve ----------------------------------------------------------------------------------


def _model(name: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> ModelConfig:
    return ModelConfig(name, runtime="onnx", max_batch_size=8, inputs=inputs, outputs=outputs)


PRE = _model("pre", [TensorSpec("RAW", "FP32", [4])], [TensorSpec("A", "INT32", [4])])
POST = _model("post", [TensorSpec("X", "INT32", [-1])], [TensorSpec("Y", "BYTES", [1])])
CHAIN = PipelineSpec(
    [Step("pre", -1, {"RAW": "IN"}, {"A": "a"}), Step("post", -1, {"X": "a"}, {"Y": "OUT"})]
)


def test_resolve_types_untyped_tensors_from_their_steps() -> None:
    config = ModelConfig(
        "p",
        max_batch_size=4,
        inputs=[TensorSpec("IN", "", [])],
        outputs=[TensorSpec("OUT", "", [])],
        pipeline=CHAIN,
    )
    done = resolve(config, [PRE, POST])
    assert done.inputs == [TensorSpec("IN", "FP32", [4])]
    assert done.outputs == [TensorSpec("OUT", "BYTES", [1])]
    assert done.platform == "ensemble"


@pytest.mark.parametrize(
    ("post", "fragment"),
    [
        (
            _model("post", [TensorSpec("X", "FP32", [4])], [TensorSpec("Y", "BYTES", [1])]),
            "tensor 'a' is INT32 but its input 'X' takes FP32",
        ),
        (
            _model("post", [TensorSpec("X", "INT32", [5])], [TensorSpec("Y", "BYTES", [1])]),
            "tensor 'a' has shape [-1, 4] but its input 'X' takes [-1, 5]",
        ),
        (
            _model("post", [TensorSpec("Z", "INT32", [4])], [TensorSpec("Y", "BYTES", [1])]),
            "the model has no input 'X'",
        ),
        (
            _model("post", [TensorSpec("X", "INT32", [4])], [TensorSpec("W", "BYTES", [1])]),
            "the model has no output 'Y'",
        ),
        (
            _model(
                "post",
                [TensorSpec("X", "INT32", [4]), TensorSpec("K", "INT32", [1])],
                [TensorSpec("Y", "BYTES", [1])],
            ),
            "nothing is mapped to its inputs ['K']",
        ),
    ],
)
def test_resolve_refuses_mismatches_naming_the_step(post: ModelConfig, fragment: str) -> None:
    config = ModelConfig(
        "p",
        inputs=[TensorSpec("IN", "", [])],
        outputs=[TensorSpec("OUT", "", [])],
        pipeline=CHAIN,
    )
    with pytest.raises(ModelLoadError, match="ensemble 'p' step 2 \\(model 'post'\\)") as err:
        resolve(config, [PRE, post])
    assert fragment in err.value.message


def test_resolve_refuses_a_declared_type_its_step_does_not_make() -> None:
    config = ModelConfig(
        "p",
        inputs=[TensorSpec("IN", "", [])],
        outputs=[TensorSpec("OUT", "FP32", [1])],
        pipeline=CHAIN,
    )
    with pytest.raises(ModelLoadError, match="declared FP32 but its step makes it BYTES"):
        resolve(config, [PRE, POST])


def test_resolve_refuses_an_ensemble_batch_its_steps_cannot_take() -> None:
    config = ModelConfig(
        "p",
        max_batch_size=16,
        inputs=[TensorSpec("IN", "", [])],
        outputs=[TensorSpec("OUT", "", [])],
        pipeline=CHAIN,
    )
    with pytest.raises(ModelLoadError, match="step 1 \\(model 'pre'\\): the ensemble takes"):
        resolve(config, [PRE, POST])


def test_steps_failing_together_raise_one_error_and_leave_none_unread() -> None:
    async def call(index: int, step: Step, inputs: Arrays) -> Arrays:
        if step.model in ("left", "right"):
            raise Unavailable(f"{step.model} is down")
        return await _call(index, step, inputs)

    async def main() -> list[dict[str, object]]:
        unread: list[dict[str, object]] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: unread.append(ctx))
        with pytest.raises(Unavailable, match="is down"):
            await run(FANOUT, {"IN": np.array([1.0])}, call)
        gc.collect()
        await asyncio.sleep(0)
        return unread

    assert asyncio.run(main()) == []
