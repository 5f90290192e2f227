"""Protocol details that other people's clients depend on, tried with those clients: the
KServe SDK's health checks, a browser's CORS preflight, the ollama client on an embedding
model and on a server started by hand (the default, open model control mode)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from onnx import TensorProto

from tests import models
from tests.server_process import ServerProcess

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
)


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`modelyard serve REPO` with nothing else: the default model control mode."""
    repo = tmp_path_factory.mktemp("default")
    models.identity_onnx(repo / "ident.onnx", TensorProto.FLOAT)
    if importlib.util.find_spec("llama_cpp") is not None:
        from tests.llm_models import tiny_embedding, tiny_gguf

        tiny_gguf(repo / "tiny.gguf")
        tiny_embedding(repo / "tiny_embed")
    with ServerProcess(str(repo), log_path=repo.parent / "default.log") as process:
        yield process


_KSERVE_CHECKS = """
import asyncio, json, sys
from kserve import InferenceRESTClient, RESTConfig

async def checks(url):
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    try:
        return [
            await client.is_server_live(url),
            await client.is_server_ready(url),
            await client.is_model_ready(url, "ident"),
            await client.is_model_ready(url, "nope"),
        ]
    finally:
        await client.close()

print(json.dumps(asyncio.run(checks(sys.argv[1]))))
"""


def test_kserve_sdk_health_checks(default_server: ServerProcess) -> None:
    """In its own interpreter: the KServe SDK's generated protos and tritonclient's (which
    other tests import) both define the `inference` package and cannot share one."""
    done = subprocess.run(
        [sys.executable, "-c", _KSERVE_CHECKS, default_server.url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [True, True, True, False]


@pytest.mark.parametrize(
    "origin",
    ["http://localhost:3000", "http://127.0.0.1:8080", "app://obsidian.md", "tauri://localhost"],
)
def test_a_browser_preflight_from_a_local_page_is_allowed(
    default_server: ServerProcess, origin: str
) -> None:
    preflight = httpx.options(
        f"{default_server.url}/api/chat",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "content-type,authorization"
    answer = httpx.get(f"{default_server.url}/api/version", headers={"Origin": origin})
    assert answer.headers["access-control-allow-origin"] == origin


def test_a_preflight_from_elsewhere_is_refused(default_server: ServerProcess) -> None:
    headers = {"Origin": "https://example.com", "Access-Control-Request-Method": "POST"}
    preflight = httpx.options(f"{default_server.url}/v1/chat/completions", headers=headers)
    assert preflight.status_code == 403 and "--cors-origin" in preflight.text
    answer = httpx.get(f"{default_server.url}/api/version", headers={"Origin": headers["Origin"]})
    assert "access-control-allow-origin" not in answer.headers


def test_more_origins_and_api_keys(model_repo: Path, tmp_path: Path) -> None:
    args = ("--cors-origin", "https://*.example.com", "--api-key", "k")
    with ServerProcess(str(model_repo), *args, api_key="k", log_path=tmp_path / "log") as own:
        origin = "https://chat.example.com"
        preflight = httpx.options(  # browsers send preflights without credentials
            f"{own.url}/v2/models/addsub/infer",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == origin
        refused = httpx.get(f"{own.url}/v2/models/addsub", headers={"Origin": origin})
        assert refused.status_code == 401  # the request itself still needs its key


@needs_llama
def test_ollama_show_and_ps_on_an_embedding_model(default_server: ServerProcess) -> None:
    with ollama.Client(host=default_server.url) as client:
        shown = client.show("tiny_embed")
        assert shown.capabilities == ["embedding"] and shown.details is not None
        assert shown.details.family == "llama"
        assert client.show("tiny").capabilities == ["completion", "tools"]
        names = {m.model for m in client.ps().models}
    assert names == {"tiny:latest", "tiny_embed:latest"}  # not the ONNX model


@needs_llama
def test_a_hand_started_server_allows_what_the_ollama_api_allows(
    default_server: ServerProcess,
) -> None:
    with ollama.Client(host=default_server.url) as client:
        client.generate(model="tiny", prompt="", keep_alive=0)  # unloads
        assert "tiny:latest" not in {m.model for m in client.ps().models}
        assert client.generate(model="tiny", prompt="hello", options={"num_predict": 2}).done
        client.copy("tiny", "tiny_copy")
        assert "tiny_copy:latest" in {m.model for m in client.list().models}
        client.delete("tiny_copy")
        assert "tiny_copy:latest" not in {m.model for m in client.list().models}
        # models loaded at start stay: a request's keep-alive is what unloads them
        expiry = {m.model: m.expires_at for m in client.ps().models}
    assert expiry["tiny_embed:latest"] is not None and expiry["tiny_embed:latest"].year == 9999
    log = default_server.log()
    assert "model control mode ondemand" in log and "--model-control-mode none locks" in log
