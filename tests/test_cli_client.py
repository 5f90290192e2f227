"""The Ollama-like commands: `modelyard run` in a real terminal (pexpect), and ps / show /
list / stop / cp / rm / pull against a running server; `run` starting a server of its own."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from click.testing import CliRunner

from modelyard.cli import main
from modelyard.cli_chat import read_message
from modelyard.settings import split_host
from tests.server_process import ServerProcess, free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("llama_cpp")
    from tests.llm_models import llm_repository

    return llm_repository(tmp_path_factory.mktemp("cli-repo"))


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("cli-logs") / "server.log"
    args = ("--model-control-mode", "ondemand", "--pull-from", str(repo))
    with ServerProcess(str(repo), *args, log_path=log) as process:
        yield process


def _env(server: ServerProcess, **extra: str) -> dict[str, str]:
    return {**os.environ, "MODELYARD_HOST": server.http_addr, **extra}


def _spawn(env: dict[str, str], *args: str) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        ["-m", "modelyard", "run", *args],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 120),
    )


def test_read_message_single_and_multi_line() -> None:
    lines = iter(['"""first', "second", 'third"""', "plain", '"""one"""'])
    read = lambda prompt: next(lines)  # noqa: E731
    assert read_message(read) == "first\nsecond\nthird"
    assert read_message(read) == "plain"
    assert read_message(read) == "one"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("localhost", ("localhost", 8000)),
        ("http://0.0.0.0:11434/", ("0.0.0.0", 11434)),
        ("[::1]:8080", ("::1", 8080)),
        ("", ("127.0.0.1", 8000)),
    ],
)
def test_host_forms(text: str, expected: tuple[str, int]) -> None:
    assert split_host(text, 8000) == expected


@pytest.mark.slow
def test_run_one_shot_and_interactive_in_a_terminal(server: ServerProcess) -> None:
    once = _spawn(
        _env(server),
        "tiny",
        "hello",
        "world",
        "-o",
        "num_predict=6",
        "-o",
        "temperature=0",
        "--verbose",
    )
    once.expect("eval count: +6 token")
    once.expect(pexpect.EOF)
    once.close()
    assert once.exitstatus == 0

    chat = _spawn(_env(server), "tiny", "-o", "num_predict=4")
    chat.expect(">>> ")
    chat.sendline("hello there")
    chat.expect(">>> ")  # the reply streamed, then the prompt again
    chat.sendline('"""first line')
    chat.expect(r"\.\.\. ")
    chat.sendline('second line"""')
    chat.expect(">>> ")
    chat.sendline("/?")
    chat.expect("/bye +exit")
    chat.expect(">>> ")
    chat.sendline("/bye")
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


@pytest.mark.slow
def test_run_starts_a_server_when_none_answers(repo: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "MODELYARD_HOST": f"127.0.0.1:{port}",
        "MODELYARD_MODELS": str(repo),
        "HOME": str(tmp_path),
    }
    once = _spawn(env, "tiny", "hi", "-o", "num_predict=3")
    once.expect(pexpect.EOF)
    once.close()
    assert once.exitstatus == 0, once.before
    assert "Application startup complete" in (tmp_path / ".modelyard" / "serve.log").read_text()
    with socket.socket() as sock:  # the embedded server stopped with `run`
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_model_commands(server: ServerProcess, repo: Path) -> None:
    runner = CliRunner()
    env = {"MODELYARD_HOST": server.http_addr}

    def run(*args: str) -> str:
        result = runner.invoke(main, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.output

    assert "tiny:latest" in run("list") and "tiny_embed:latest" in run("list")
    run("stop", "tiny_small")
    assert "tiny_small" not in run("ps")
    result = runner.invoke(
        main, ["run", "tiny_small", "a", "-o", "num_predict=2"], env=env, input=""
    )
    assert result.exit_code == 0, result.output
    table = run("ps")
    assert table.splitlines()[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    assert "tiny_small:latest" in table and "512" in table and "from now" in table
    run("stop", "tiny_small")
    assert "tiny_small" not in run("ps")
    shown = run("show", "tiny_small")
    assert "architecture        llama" in shown and "n_ctx 512" in shown
    assert "<|im_start|>" in run("show", "tiny", "--template")
    assert "copied" in run("cp", "tiny", "tiny_cli")
    assert "tiny_cli:latest" in run("list")
    assert "deleted" in run("rm", "tiny_cli")
    pulled = runner.invoke(
        main, ["pull", str(repo / "tiny.gguf"), "--name", "tiny_pulled"], env=env
    )
    assert pulled.exit_code == 0 and "success" in pulled.output
    assert "tiny_pulled:latest" in run("list")
    run("rm", "tiny_pulled")
    missing = runner.invoke(main, ["show", "nope"], env=env)
    assert missing.exit_code == 1 and "not found" in missing.output
    assert (repo / "tiny.gguf").exists()


def test_list_without_a_server_reads_folders(repo: Path) -> None:
    result = CliRunner().invoke(
        main, ["list", str(repo)], env={"MODELYARD_HOST": f"127.0.0.1:{free_port()}"}
    )
    assert result.exit_code == 0 and "tiny_small" in result.output
