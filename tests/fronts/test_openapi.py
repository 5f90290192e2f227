"""/openapi.json lists every route the server serves with its schemas, /docs renders it, and the
request schemas agree with the readers the fronts check requests with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies
from schemathesis.core.result import Ok

from modelyard.errors import InvalidArgument
from modelyard.fronts import ollama_schema, openai_schema, tgi_schema
from modelyard.fronts.kserve_infer import infer_target
from modelyard.fronts.openapi import OPERATIONS, route_operations
from modelyard.server import Modelyard
from modelyard.settings import Settings


def _app(tmp_path: Path, keys: frozenset[str] = frozenset()) -> Modelyard:
    return Modelyard(Settings(repositories=(tmp_path,), api_keys=keys))


async def _get(server: Modelyard, path: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=server.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers)


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import asyncio

    server = _app(tmp_path_factory.mktemp("empty"))
    reply = asyncio.run(_get(server, "/openapi.json"))
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    out: dict[str, Any] = reply.json()
    return out


def test_every_route_is_in_the_document_and_described(
    document: dict[str, Any], tmp_path: Path
) -> None:
    served = route_operations(_app(tmp_path).routes)
    assert ("POST", "/v2/models/{model}/infer") in served  # the route that skips the router
    assert ("GET", "/v1/chat/completions") not in served
    for method, path in served:
        assert method.lower() in document["paths"].get(path, {}), f"{method} {path} is missing"
        assert (method, path) in OPERATIONS, f"{method} {path} has no description in OPERATIONS"
    listed = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert listed == set(served)  # and nothing that is not served


def test_the_infer_paths_are_the_ones_the_hot_path_takes(document: dict[str, Any]) -> None:
    for path in document["paths"]:
        if path.endswith("/infer"):
            real = path.replace("{model}", "m").replace("{version}", "2")
            assert infer_target({"type": "http", "method": "POST", "path": real}) is not None


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_dict(document)
    operations = [op for op in schema.get_all_operations() if isinstance(op, Ok)]
    assert len(operations) == sum(len(ops) for ops in document["paths"].values())
    chat = document["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert chat["temperature"] == {"type": "number", "minimum": 0.0, "maximum": 2.0}
    assert chat["n"]["maximum"] == openai_schema.MAX_N


@pytest.mark.anyio
async def test_docs_page_is_open_and_the_document_needs_the_key(tmp_path: Path) -> None:
    server = _app(tmp_path, frozenset({"sesame"}))
    page = await _get(server, "/docs")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert "sessionStorage" in page.text  # it asks for the key itself
    script = await _get(server, "/docs/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert (await _get(server, "/docs/../../etc/passwd")).status_code in (401, 404)
    assert (await _get(server, "/openapi.json")).status_code == 401
    keyed = await _get(server, "/openapi.json", authorization="Bearer sesame")
    assert keyed.status_code == 200 and keyed.json()["security"] == [{"apiKey": []}]
    opened = set()
    for path, operations in keyed.json()["paths"].items():  # the open ones say so
        if operations.get("get", {}).get("security") == []:
            sample = path.replace(
                "{file}", "console.css" if "console" in path else "swagger-ui.css"
            )
            assert (await _get(server, sample)).status_code == 200, path
            opened.add(path)
    assert opened == {"/v2/health/live", "/docs", "/docs/{file}", "/console", "/console/{file}"}


# ---- the readers accept what the schemas allow -----------------------------------------------

#: Rules OpenAPI 3.0's schemas cannot state (between fields; what logit_bias's keys are); a body
#: the schema allows may break only these.
NOT_IN_SCHEMA = (
    "is not a token id",
    "min_tokens must not exceed max_tokens",
    "top_logprobs needs logprobs",
    "stream_options is only allowed with stream",
    "tool_choice needs tools",
    "which is not in tools",
    "function names must differ",
    "needs json_schema.schema",
    # TGI's rules across fields and on a grammar's value
    "must not be set when `best_of` > 1",
    "you must use sampling when `best_of` is > 1",
    "is not supported when streaming tokens",
    "grammar",
)


def _bodies(document: dict[str, Any], path: str) -> strategies.SearchStrategy[Any]:
    schema = schemathesis.openapi.from_dict(document)
    operation = schema[path]["POST"]
    return operation.as_strategy().map(lambda case: case.body)


@pytest.mark.parametrize(
    ("path", "read"),
    [
        ("/v1/chat/completions", openai_schema.read_chat),
        ("/v1/completions", openai_schema.read_completion),
        ("/api/generate", ollama_schema.read_generate),
        ("/api/chat", ollama_schema.read_chat),
        ("/api/embed", ollama_schema.read_embed),
        ("/generate", tgi_schema.read_generate),
    ],
)
def test_the_readers_accept_what_the_schema_allows(
    document: dict[str, Any], path: str, read: Callable[[Any], Any]
) -> None:
    @settings(
        max_examples=50,
        derandomize=True,  # the same bodies every run: a failure is a drift, not chance
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_bodies(document, path))
    def check(body: Any) -> None:
        try:
            read(body)
        except InvalidArgument as exc:
            assert any(rule in exc.message for rule in NOT_IN_SCHEMA), (body, exc.message)

    check()
