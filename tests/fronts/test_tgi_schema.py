"""TGI request bodies read into sampling parameters, with TGI's rules."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.errors import InvalidArgument
from modelyard.fronts.tgi_schema import read_generate
from modelyard.spec.generation import RegexOutput, StructuredOutput


def _read(stream: bool | None = False, **parameters: Any) -> Any:
    return read_generate({"inputs": "hi", "parameters": parameters}, stream)


def test_greedy_unless_sampling_is_asked_for() -> None:
    assert _read().params.greedy and _read().seeds == (None,)
    assert _read(temperature=1.0).params.greedy  # TGI: 1.0 is no warper
    for sampling in ({"do_sample": True}, {"temperature": 0.7}, {"top_k": 5}, {"top_p": 0.9}):
        body = _read(**sampling)
        assert not body.params.greedy
        assert body.seeds[0] is not None and body.params.seed == body.seeds[0]
    assert _read(do_sample=True, seed=5).seeds == (5,)
    typical = _read(typical_p=0.5)
    assert typical.params.typical_p == 0.5 and not typical.params.greedy


def test_logprobs_are_asked_for_what_the_answer_shows() -> None:
    assert _read().params.logprobs is None
    assert _read(details=True).params.logprobs == 0
    assert _read(stream=True).params.logprobs is None  # a null logprob per streamed token
    assert _read(stream=True, details=True).params.logprobs == 0
    assert _read(top_n_tokens=3).params.logprobs == 3
    assert _read(decoder_input_details=True).params.prompt_logprobs == 0


def test_best_of_takes_sampling_and_several_seeds() -> None:
    body = _read(best_of=3, do_sample=True)
    assert body.best_of == 3 and len(set(body.seeds)) == 3
    with pytest.raises(InvalidArgument, match="`seed` must not be set"):
        _read(best_of=2, do_sample=True, seed=1)
    with pytest.raises(InvalidArgument, match="not supported when streaming"):
        _read(True, best_of=2, do_sample=True)
    with pytest.raises(InvalidArgument, match="not supported when streaming"):
        _read(True, decoder_input_details=True)


@pytest.mark.parametrize(
    ("grammar", "expected"),
    [
        ({"type": "json", "value": {"type": "object"}}, StructuredOutput({"type": "object"})),
        ({"type": "json", "value": '{"type": "array"}'}, StructuredOutput({"type": "array"})),
        ({"type": "json_object", "value": {}}, StructuredOutput()),
        (
            {"type": "json_schema", "value": {"name": "x", "schema": {"type": "string"}}},
            StructuredOutput({"type": "string"}),
        ),
        ({"type": "regex", "value": "[a-z]+"}, RegexOutput("[a-z]+")),
    ],
)
def test_grammars(grammar: dict[str, Any], expected: object) -> None:
    assert _read(grammar=grammar).grammar == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": ""}, "`inputs` must be a non-empty string"),
        ({"inputs": "x", "parameters": []}, "`parameters` must be an object"),
        ({"inputs": "x", "stream": "yes"}, "`stream` must be true or false"),
        ({"inputs": "x", "parameters": {"top_k": 0}}, "`top_k` must be strictly positive"),
        ({"inputs": "x", "parameters": {"stop": "x"}}, "`stop` must be a list of strings"),
        ({"inputs": "x", "parameters": {"adapter_id": "a"}}, "no LoRA adapters"),
        ({"inputs": "x", "parameters": {"grammar": {"type": "regex"}}}, "cannot be empty"),
        ({"inputs": "x", "model": 3}, "`model` must be a model's name"),
    ],
)
def test_bad_bodies(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        read_generate(body, None)


def test_nulls_are_absent_as_the_text_generation_client_sends_them() -> None:
    parameters: dict[str, Any] = {"best_of": None, "seed": None, "stop": [], "watermark": False}
    body = read_generate({"inputs": "x", "parameters": parameters})
    assert body.best_of == 1 and body.params.stop == () and not body.stream
