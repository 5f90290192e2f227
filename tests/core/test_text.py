"""Text-side pieces of LLM serving: incremental detokenization with stop strings, sampling
options, chat templates."""

from __future__ import annotations

import pytest

from modelyard.core import chat
from modelyard.core.sampling import sampling_params
from modelyard.core.textstream import TextStream
from modelyard.errors import InvalidArgument, ModelLoadError


def test_text_stream_joins_split_utf8() -> None:
    stream = TextStream()
    data = "é€".encode()
    assert stream.push(data[:1]) == ("", False)
    assert stream.push(data[1:4]) == ("é", False)
    assert stream.push(data[4:]) == ("€", False)


def test_text_stream_holds_back_a_possible_stop() -> None:
    stream = TextStream(("END",))
    assert stream.push(b"abc E") == ("abc ", False)
    assert stream.push(b"N") == ("", False)
    assert stream.push(b"x") == ("ENx", False)
    assert stream.push(b"yEND tail") == ("y", True)


def test_text_stream_flush_returns_held_text() -> None:
    stream = TextStream(("stop",))
    assert stream.push(b"go st") == ("go ", False)
    assert stream.flush() == "st"


def test_sampling_params_read_openai_and_vllm_names() -> None:
    params = sampling_params(
        {
            "max_tokens": 5,
            "temperature": 0,
            "top_k": -1,
            "stop": "x",
            "seed": 3,
            "min_p": 0.1,
            "repetition_penalty": 1.2,
            "stop_token_ids": [7],
            "logit_bias": {"5": -100},
            "top_p": None,
        }
    )
    assert params.max_tokens == 5 and params.greedy and params.top_k == 0
    assert params.stop == ("x",) and params.stop_token_ids == frozenset({7})
    assert params.logit_bias == {5: -100.0} and params.top_p == 1.0


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": "hot"},
        {"temperature": 3},
        {"max_tokens": 0},
        {"top_p": 0},
        {"stop": [1]},
        {"ignore_eos": "yes"},
        {"min_tokens": 5, "max_tokens": 2},
        {"logit_bias": {"x": 1}},
        {"stop_token_ids": "2"},
    ],
)
def test_sampling_params_refuse_bad_values(options: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        sampling_params(options)


def test_model_template_renders_messages() -> None:
    template = chat.choose(
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}"
        "{% endfor %}{% if add_generation_prompt %}>{% endif %}",
        None,
        "llama",
        "m",
    )
    text = template.render(chat.normalize([{"role": "user", "content": "hi"}]))
    assert text == "[user]hi>"


def test_gemma_fallback_folds_system_into_the_first_turn(caplog: pytest.LogCaptureFixture) -> None:
    template = chat.choose(None, None, "gemma3", "g", bos="<bos>")
    assert "known template gemma" in template.origin
    assert template.stop == ("<end_of_turn>",)
    assert "no chat template" in caplog.text
    text = template.render(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    assert text == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    )


def test_override_by_name_or_source() -> None:
    assert chat.choose("{{ x }}", "chatml", "gemma3", "m").stop == ("<|im_end|>",)
    custom = chat.choose(None, "{{ messages[0]['content'] | upper }}", "llama", "m")
    assert custom.render([{"role": "user", "content": "hey"}]) == "HEY"
    with pytest.raises(ModelLoadError):
        chat.choose(None, "{% for %}", "llama", "m")


def test_template_errors_are_invalid_arguments() -> None:
    template = chat.choose(None, "{{ raise_exception('only user turns') }}", "llama", "m")
    with pytest.raises(InvalidArgument, match="only user turns"):
        template.render([{"role": "user", "content": "x"}])


@pytest.mark.parametrize(
    "messages",
    [
        [],
        "hi",
        [{"content": "x"}],
        [{"role": "user", "content": 3}],
        [{"role": "user", "content": [{"type": "image_url"}]}],
    ],
)
def test_bad_messages(messages: object) -> None:
    with pytest.raises(InvalidArgument):
        chat.normalize(messages)


def test_content_parts_are_joined() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert chat.normalize([{"role": "user", "content": parts}])[0]["content"] == "ab"
