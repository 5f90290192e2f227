"""Regular expressions as grammars (runtimes/llamacpp_regex.py): llama.cpp's own grammar
sampler accepts exactly what Python's `re.fullmatch` does; what a grammar cannot express is
refused, never approximated."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.errors import InvalidArgument
from modelyard.runtimes.llamacpp_regex import regex_gbnf
from modelyard.spec.config import ModelConfig
from modelyard.spec.generation import RegexOutput
from tests.runtimes.test_llamacpp_grammar import Checker

CASES = {
    r"[0-9]{3}-(yes|no)": ["123-yes", "123-no", "12-yes", "1234-no", "123-maybe", ""],
    r"\d+(\.\d{1,2})?": ["7", "3.14", "3.", "3.145", ".5", "12.0"],
    r"^(?:ab)*c$": ["c", "abc", "ababc", "abac", "ab"],
    r"[^a-c]x?\s\w{2,}": ["d x ab", "dx\tab_9", "a ab", "d a", "dxx ab"],
    r"a.b|\$\.": ["a-b", "a\nb", "$.", "ab"],
    r"[A-Z][a-z]*( [A-Z][a-z]*)*": ["Hello World", "Hello world", "H", ""],
    r"\W\S\D": ["!a#", "aaa", "! 1"],
    "": ["", "a"],
}


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Checker]:
    pytest.importorskip("llama_cpp")
    from modelyard.runtimes.llamacpp import LlamaCppRuntime
    from tests.llm_models import tiny_gguf

    path = tiny_gguf(Path(tmp_path_factory.mktemp("regex")) / "tiny.gguf")
    parameters = {"n_ctx": "128", "n_seq_max": "1", "n_threads": "1"}
    runtime = LlamaCppRuntime(path, ModelConfig("tiny", "llamacpp", parameters=parameters))
    runtime.load()
    yield Checker(runtime)
    runtime.unload()


@pytest.mark.parametrize("pattern", list(CASES))
def test_the_grammar_accepts_what_the_regex_matches(checker: Checker, pattern: str) -> None:
    for text in CASES[pattern]:
        expected = re.fullmatch(pattern, text) is not None
        assert checker.accepts(RegexOutput(pattern), text) is expected, (pattern, text)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a(?=b)", "lookarounds"),
        ("a(?<!b)", "lookarounds"),
        (r"(a)\1", "backreferences"),
        (r"a\bb", "anchors inside the pattern"),
        ("a^b", "anchors inside the pattern"),
        ("(?i)abc", "case-insensitive"),
        ("a(?i:b)", "flags inside a group"),
        (r"[^\D]", "negated class"),
        ("[", "does not compile"),
    ],
)
def test_what_a_grammar_cannot_express_is_refused(pattern: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        regex_gbnf(pattern)


@pytest.mark.parametrize("pattern", [r"\W", r"\D", r"[^\w-]", r"\S", r"\s", r"\w+"])
def test_beyond_ascii_the_grammar_never_accepts_what_the_regex_refuses(
    checker: Checker, pattern: str
) -> None:
    for text in ["é", "\u0663", "\u00a0", "\u3000", "!", "-", "ab"]:
        if checker.accepts(RegexOutput(pattern), text):
            assert re.fullmatch(pattern, text), (pattern, text)
    spaces = pattern in (r"\s", r"\S")  # \s is exact: Python's every space character
    for text in ["\u00a0", "\u3000", "x"] if spaces else []:
        expected = re.fullmatch(pattern, text) is not None
        assert checker.accepts(RegexOutput(pattern), text) is expected
