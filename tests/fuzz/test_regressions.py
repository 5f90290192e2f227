"""The failing cases of issue 17 (defects 1-4 and 8) and of the fuzz runs, through the real
server with the real clients; each leaves the server serving (the `fuzzed` fixture checks)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import ollama
import openai
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.models import slow_model
from tests.server_process import ServerProcess


@pytest.fixture
def client(fuzzed: ServerProcess) -> Iterator[openai.OpenAI]:
    base = f"{fuzzed.url}/v1"
    with openai.OpenAI(base_url=base, api_key="unused", max_retries=0) as client:
        yield client


@pytest.fixture
def triton(fuzzed: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(fuzzed.http_addr, ssl=False)
    yield client
    client.close()


@pytest.fixture
def ollama_client(fuzzed: ServerProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=fuzzed.url) as client:
        yield client


# ---- defect 1: a bad token id fails its request only -----------------------------------------


@pytest.mark.parametrize("ids", [[300000], [262144], [-1], [2**31], [2**40]])
def test_token_ids_out_of_the_vocabulary_are_400(client: openai.OpenAI, ids: list[int]) -> None:
    with pytest.raises(openai.BadRequestError, match="vocabulary"):
        client.completions.create(model="tiny", prompt=ids, max_tokens=4)


def test_ollama_context_out_of_the_vocabulary_is_400(ollama_client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as error:
        ollama_client.generate(model="tiny", prompt="hi", context=[300000])
    assert error.value.status_code == 400 and "vocabulary" in str(error.value)


def test_a_bad_request_leaves_concurrent_streams_alone(client: openai.OpenAI) -> None:
    finishes: list[str | None] = []

    def stream() -> None:
        chunks = client.completions.create(
            model="tiny", prompt="once upon a time", max_tokens=24, stream=True
        )
        finishes.append([c.choices[0].finish_reason for c in chunks][-1])

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    for ids in ([300000], [2**40]):
        with pytest.raises(openai.BadRequestError):
            client.completions.create(model="tiny", prompt=ids, max_tokens=4)
    for thread in threads:
        thread.join(30)
    assert len(finishes) == 3 and set(finishes) <= {"length", "stop"}  # none failed


# ---- defects 2 and 8: what a load request may change -----------------------------------------


def test_a_load_config_cannot_switch_on_pickles(triton: httpclient.InferenceServerClient) -> None:
    config = '{"parameters": {"trust_pickle": {"string_value": "true"}}}'
    with pytest.raises(InferenceServerException, match="cannot set trust_pickle"):
        triton.load_model("addsub", config=config)


def test_load_options_of_the_wrong_kind_are_400(
    fuzzed: ServerProcess, triton: httpclient.InferenceServerClient
) -> None:
    url = f"{fuzzed.url}/v2/repository/models/addsub/load"
    bodies: list[object] = [{"parameters": []}, {"parameters": "x"}, {"parameters": {"config": 3}}]
    for body in bodies:
        reply = httpx.post(url, json=body)
        assert reply.status_code == 400, (body, reply.text)
    with pytest.raises(InferenceServerException, match="file overrides are not supported"):
        triton.load_model("addsub", files={"file:1/model.onnx": b"x"})


# ---- defect 3: pull brings in nothing from outside the --pull-from folders -------------------


def test_pull_from_an_outside_folder_is_refused(
    fuzzed: ServerProcess, ollama_client: ollama.Client, tmp_path: Path
) -> None:
    outside = tmp_path / "evil"
    outside.mkdir()
    (outside / "model.py").write_text("raise SystemExit('ran')\n")
    with pytest.raises(ollama.ResponseError) as error:
        ollama_client.pull(str(outside))
    assert error.value.status_code == 400
    index = httpx.post(f"{fuzzed.url}/v2/repository/index").json()
    assert "evil" not in {row["name"] for row in index}


# ---- defects 4 and 8: names are names, versions are numbers ----------------------------------


@pytest.fixture(scope="module")
def ondemand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("ondemand")
    with ServerProcess(str(repo), log_path=repo.parent / "ondemand.log") as server:
        yield server


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/completions", {"model": "../../../../**/zzz", "prompt": "x"}),
        ("POST", "/v1/chat/completions", {"model": "/etc/passwd", "messages": []}),
        ("POST", "/v2/models/**/infer", {"inputs": []}),
        ("GET", "/v2/models/..%2F..%2Fetc/ready", None),
        ("POST", "/api/generate", {"model": "**"}),
        ("GET", "/v2/models/x/versions/%C2%B2", None),
    ],
)
def test_names_in_ondemand_mode_are_4xx_at_once(
    ondemand: ServerProcess, method: str, path: str, body: object
) -> None:
    reply = httpx.request(method, ondemand.url + path, json=body, timeout=5)
    assert 400 <= reply.status_code < 500, reply.text
    assert reply.elapsed.total_seconds() < 1


# ---- found by the fuzz suite ------------------------------------------------------------------


def test_a_grpc_message_that_is_not_protobuf_is_invalid_argument(fuzzed: ServerProcess) -> None:
    with grpc.insecure_channel(fuzzed.grpc_addr) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.RpcError) as error:
            call(b"\x00", timeout=5)
        assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "cannot parse the request message" in (error.value.details() or "")


def test_a_logit_bias_key_of_unicode_digits_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="not a token id"):
        client.completions.create(model="tiny", prompt="hi", max_tokens=2, logit_bias={"\u00b2": 1})


def test_a_keep_alive_past_any_date_is_forever(ollama_client: ollama.Client) -> None:
    """keep_alive 1e300 s made `now + keep_alive` no date: every /api/ps after it was 500."""
    ollama_client.generate(model="tiny", keep_alive=1e300)
    (row,) = [m for m in ollama_client.ps().models if m.model == "tiny:latest"]
    assert row.expires_at is not None and row.expires_at.year > 2200
    ollama_client.generate(model="tiny", keep_alive="5m")  # back to what the others expect


# ---- defect 8: unloading under requests in flight is 503 (unavailable), not 429 --------------


def test_unload_under_requests_in_flight_answers_503(tmp_path: Path) -> None:
    slow_model(tmp_path, "slow", "", delay=1.0)
    args = ("--model-control-mode", "explicit", "--load-model", "slow")
    body = {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [1.0]}]}

    async def run(url: str) -> tuple[list[httpx.Response], httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            infer = "/v2/models/slow/infer"
            running = [asyncio.create_task(client.post(infer, json=body)) for _ in range(4)]
            await asyncio.sleep(0.4)  # the first executes, three wait in the queue
            unload = asyncio.create_task(client.post("/v2/repository/models/slow/unload"))
            await asyncio.sleep(0.3)
            late = await client.post(infer, json=body)
            answers = [await request for request in running]
            assert (await unload).status_code == 200
            assert (await client.post("/v2/repository/models/slow/load")).status_code == 200
            return answers, late, await client.post(infer, json=body)

    with ServerProcess(str(tmp_path), *args) as server:
        answers, late, again = asyncio.run(run(server.url))
    assert late.status_code == 503 and "not ready" in late.json()["error"]
    # whichever of the four reached the model first ran; the three queued behind it did not
    assert sorted(a.status_code for a in answers) == [200, 503, 503, 503]
    assert all("was unloaded" in a.json()["error"] for a in answers if a.status_code == 503)
    assert again.status_code == 200  # loaded again, it serves
