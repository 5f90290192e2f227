from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from tests.fuzz.oracle import report, still_serving
from tests.server_process import ServerProcess


@pytest.fixture(scope="package")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server over a classic model (addsub), a BYTES model, the tiny LLM and the tiny
    embedding model, in the default control mode (ondemand): a fuzzed request may unload a
    model (Ollama's keep_alive 0), and the next one that names it loads it again."""
    if importlib.util.find_spec("llama_cpp") is None:  # importing it leaks /dev/null handles
        pytest.skip("llama-cpp-python is not installed")
    from onnx import TensorProto

    from tests import models
    from tests.llm_models import tiny_embedding, tiny_gguf

    repo = tmp_path_factory.mktemp("fuzz-repo")
    models.addsub_onnx(repo / "addsub" / "1" / "model.onnx")
    models.identity_onnx(repo / "identity_string.onnx", TensorProto.STRING)
    tiny_gguf(repo / "tiny.gguf")
    tiny_embedding(repo / "tiny_embed")
    log = tmp_path_factory.mktemp("fuzz-logs") / "server.log"
    with ServerProcess(str(repo), log_path=log) as server:
        yield server


@pytest.fixture
def fuzzed(fuzz_server: ServerProcess) -> Iterator[ServerProcess]:
    """The fuzz server, checked to still serve good requests after the test."""
    yield fuzz_server
    still_serving(fuzz_server)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = report()
    if lines:
        terminalreporter.section("fuzz cases by front")
        for line in lines:
            terminalreporter.write_line(line)
