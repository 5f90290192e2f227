"""The console's routes: the page and its files are open, its data route needs the key, a
browser opening / is sent to it while API clients still get "Ollama is running", and the data
route tells what the repository index, metadata and config tell (tests/console drives the page
itself in Chromium)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from onnx import TensorProto

from modelyard.server import Modelyard
from modelyard.settings import Settings
from tests.models import identity_onnx
from tests.server_process import ServerProcess

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def _client(tmp_path: Path, keys: frozenset[str] = frozenset()) -> httpx.AsyncClient:
    server = Modelyard(Settings(repositories=(tmp_path,), api_keys=keys))
    transport = httpx.ASGITransport(app=server.app)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.anyio
async def test_a_browser_at_the_root_is_sent_to_the_console(tmp_path: Path) -> None:
    async with _client(tmp_path, frozenset({"sesame"})) as client:
        browser = await client.get("/", headers={"accept": BROWSER_ACCEPT})
        assert browser.status_code == 307 and browser.headers["location"] == "/console"
        assert (await client.head("/", headers={"accept": BROWSER_ACCEPT})).status_code == 307
    async with _client(tmp_path) as client:
        probe = await client.get("/")  # httpx sends Accept: */*, as API clients do
        assert probe.status_code == 200 and probe.text == "Ollama is running"
        plain = await client.get("/", headers={"accept": "application/json"})
        assert plain.text == "Ollama is running"
        tgi = await client.post("/", headers={"accept": BROWSER_ACCEPT}, json={})
        assert tgi.status_code != 307  # POST / stays TGI's


@pytest.mark.anyio
async def test_the_page_is_open_and_its_data_needs_the_key(tmp_path: Path) -> None:
    async with _client(tmp_path, frozenset({"sesame"})) as client:
        page = await client.get("/console")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "console/console.js" in page.text and "console/console.css" in page.text
        script = await client.get("/console/console.js")
        assert script.status_code == 200 and "sessionStorage" in script.text
        assert script.headers["content-type"].startswith("text/javascript")
        for name in ("console.css", "charts.js", "playground.js"):
            assert (await client.get(f"/console/{name}")).status_code == 200, name
        assert (await client.get("/console/secrets.txt")).status_code == 401  # not a page file
        assert (await client.get("/console/api/models")).status_code == 401
        keyed = {"authorization": "Bearer sesame"}
        missing = await client.get("/console/nothing.js", headers=keyed)
        assert missing.status_code == 404 and "nothing.js" in missing.json()["error"]
        data = await client.get("/console/api/models", headers=keyed)
        assert data.status_code == 200 and data.json()["models"] == []


def test_the_data_route_agrees_with_the_repository_and_metadata(server: ServerProcess) -> None:
    view = httpx.get(f"{server.url}/console/api/models").json()
    assert view["control_mode"] == "explicit" and view["locked"] == ""
    assert view["rss_bytes"] > 10 * 2**20  # a Python server with onnxruntime in it
    index = httpx.post(f"{server.url}/v2/repository/index").json()
    rows = {m["name"]: m for m in view["models"]}
    assert set(rows) == {row["name"] for row in index}
    for row in index:
        assert rows[row["name"]]["state"] == row["state"], row
    addsub = rows["addsub"]
    metadata = httpx.get(f"{server.url}/v2/models/addsub").json()
    assert addsub["kind"] == "tensor" and addsub["runtime"] == "onnx"
    assert addsub["loaded"] == [int(v) for v in metadata["versions"]]
    assert addsub["inputs"] == metadata["inputs"] and addsub["outputs"] == metadata["outputs"]
    parameters = metadata["parameters"].items()
    reasons = {k.removeprefix("reason."): v for k, v in parameters if k.startswith("reason.")}
    assert addsub["reasons"] == reasons and reasons
    assert addsub["estimate_bytes"] > 0
    # a Python model runs in its own worker process: its memory is measured, not estimated
    assert addsub["process_rss_bytes"] is None
    assert rows["reverse"]["process_rss_bytes"] > 2**20


def test_control_mode_none_says_why_the_buttons_are_off(tmp_path: Path) -> None:
    identity_onnx(tmp_path / "repo" / "identity.onnx", TensorProto.FLOAT)
    with ServerProcess(
        str(tmp_path / "repo"), "--model-control-mode", "none", log_path=tmp_path / "log"
    ) as own:
        view = httpx.get(f"{own.url}/console/api/models").json()
    assert view["control_mode"] == "none"
    assert "--model-control-mode explicit" in view["locked"]
