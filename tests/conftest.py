from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.models import build_repository
from tests.server_process import ServerProcess


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repository(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="session")
def server(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server over the test repository, explicit model control, every model loaded."""
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with ServerProcess(
        str(model_repo),
        "--model-control-mode",
        "explicit",
        "--load-model",
        "*",
        "--trust-pickle",
        log_path=log,
    ) as process:
        yield process


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server over the tiny GGUF models (tests/llm_models.py)."""
    if importlib.util.find_spec("llama_cpp") is None:  # importing it leaks /dev/null handles
        pytest.skip("llama-cpp-python is not installed")
    from tests.llm_models import llm_repository

    repo = llm_repository(tmp_path_factory.mktemp("llm-repo"))
    log = tmp_path_factory.mktemp("llm-logs") / "server.log"
    with ServerProcess(str(repo), log_path=log) as process:
        yield process
