"""TorchServe model archives made with `torch-model-archiver`, served by the real server on
TorchServe's two ports and spoken to as TorchServe's clients do (plain HTTP): predictions
(raw, JSON and form bodies, versions, batching, handler statuses), ping, the management API's
list / describe / register / unregister, TorchServe's errors; and the same archive over
KServe v2 with tritonclient."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("model_archiver")

import torch
import tritonclient.http as httpclient

from tests.server_process import ServerProcess, free_port
from tests.torchserve_models import eager_mar, mlp_mar, text_mar

pytestmark = pytest.mark.timeout(120)

#: TorchServe's default text handler needs the torchserve package and captum.
DEFAULT_HANDLERS = all(importlib.util.find_spec(m) for m in ("ts", "captum"))


class TorchServe:
    """The server's TorchServe ports."""

    def __init__(self, server: ServerProcess, inference: int, management: int) -> None:
        self.server = server
        self.inference = f"http://127.0.0.1:{inference}"
        self.management = f"http://127.0.0.1:{management}"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("torchserve") / "store"
    folder.mkdir()
    mlp_mar(folder, batch_size=4, delay_ms=200)
    eager_mar(folder)
    if DEFAULT_HANDLERS:
        text_mar(folder)
    return folder


@pytest.fixture(scope="module")
def ts(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TorchServe]:
    inference, management = free_port(), free_port()
    process = ServerProcess(
        str(repo),
        "--model-control-mode",
        "explicit",
        "--load-model",
        "*",
        "--torchserve-port",
        str(inference),
        "--torchserve-management-port",
        str(management),
        log_path=tmp_path_factory.mktemp("torchserve-logs") / "server.log",
    )
    with process:
        yield TorchServe(process, inference, management)


def _mlp_reference(repo: Path, rows: list[list[float]]) -> np.ndarray:
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(repo.parent / ".mlp-src" / "mlp.pt"))  # type: ignore[no-untyped-call]
    with torch.inference_mode():
        result: np.ndarray = model(torch.tensor(rows)).numpy()
    return result


def test_ping(ts: TorchServe) -> None:
    answer = httpx.get(f"{ts.inference}/ping")
    assert answer.status_code == 200
    assert answer.json() == {"status": "Healthy"}


def test_predict_json_matches_torch(ts: TorchServe, repo: Path) -> None:
    row = [0.5, -1.0, 2.0, 0.25]
    answer = httpx.post(f"{ts.inference}/predictions/mlp", json={"x": row})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    np.testing.assert_allclose(body["scores"], _mlp_reference(repo, [row])[0], rtol=1e-5)
    assert body["batch_size"] == 4  # the archive's batchSize reached the handler's context
    versioned = httpx.post(f"{ts.inference}/predictions/mlp/1.0", json={"x": row})
    assert versioned.json()["scores"] == body["scores"]


def test_concurrent_requests_reach_the_handler_as_batches(ts: TorchServe, repo: Path) -> None:
    rows = [[float(i), 1.0, -1.0, 0.5] for i in range(8)]

    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            url = f"{ts.inference}/predictions/mlp"
            return await asyncio.gather(*(client.post(url, json={"x": r}) for r in rows))

    answers = asyncio.run(send())
    assert [a.status_code for a in answers] == [200] * 8
    batches = [a.json()["batch"] for a in answers]
    assert max(batches) > 1 and max(batches) <= 4  # maxBatchDelay 200 ms lets them gather
    expected = _mlp_reference(repo, rows)
    for answer, want in zip(answers, expected, strict=True):
        np.testing.assert_allclose(answer.json()["scores"], want, rtol=1e-5)


def test_raw_text_and_form_bodies(ts: TorchServe) -> None:
    url = f"{ts.inference}/predictions/doubler"
    raw = httpx.post(url, content=b"hello")
    assert (raw.status_code, raw.text) == (200, "hello:10")
    assert "content-type" not in raw.headers  # TorchServe sets none for bytes and str
    text = httpx.post(url, content="héllo", headers={"content-type": "text/plain"})
    assert text.text == "héllo:10"  # a text part reaches the handler as str
    form = httpx.post(url, data={"body": "hey"})
    assert form.text == "hey:6"
    multipart = httpx.post(url, files={"body": ("a.txt", b"multi", "application/octet-stream")})
    assert multipart.text == "multi:10"


def test_handler_status_and_content_type(ts: TorchServe) -> None:
    answer = httpx.post(
        f"{ts.inference}/predictions/mlp", json={"x": [1, 2, 3, 4]}, headers={"X-Teapot": "1"}
    )
    assert answer.status_code == 418
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == "short and stout"


def test_handler_that_raises_is_503_and_the_server_goes_on(ts: TorchServe) -> None:
    url = f"{ts.inference}/predictions/doubler"
    failed = httpx.post(url, content=b"boom")
    assert failed.status_code == 503
    body = failed.json()
    assert body["code"] == 503 and body["type"] == "InternalServerException"
    assert body["message"].startswith("Prediction failed")
    assert httpx.post(url, content=b"again").text == "again:10"


def test_unknown_model_version_and_route(ts: TorchServe) -> None:
    unknown = httpx.post(f"{ts.inference}/predictions/nope", content=b"x")
    assert unknown.status_code == 404
    assert unknown.json() == {
        "code": 404,
        "type": "ModelNotFoundException",
        "message": "Model not found: nope",
    }
    version = httpx.post(f"{ts.inference}/predictions/mlp/7.0", json={"x": [1, 2, 3, 4]})
    assert version.status_code == 404
    assert version.json()["type"] == "ModelNotFoundException"
    route = httpx.get(f"{ts.inference}/no/such/route")
    assert route.status_code == 404 and route.json()["type"] == "ResourceNotFoundException"


def test_bad_requests_are_400(ts: TorchServe) -> None:
    empty_form = httpx.post(
        f"{ts.inference}/predictions/doubler",
        content=b"no parts here",
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert empty_form.status_code == 400
    assert empty_form.json()["type"] == "BadRequestException"
    no_url = httpx.post(f"{ts.management}/models")
    assert no_url.status_code == 400
    assert no_url.json()["message"] == "Parameter url is required."
    remote = httpx.post(f"{ts.management}/models", params={"url": "https://example.com/a.mar"})
    assert remote.status_code == 400
    missing = httpx.post(f"{ts.management}/models", params={"url": "missing.mar"})
    assert missing.status_code == 404


def test_list_and_describe(ts: TorchServe) -> None:
    listed = httpx.get(f"{ts.management}/models").json()
    names = {m["modelName"]: m["modelUrl"] for m in listed["models"]}
    assert names["mlp"] == "mlp.mar" and names["doubler"] == "doubler.mar"
    page = httpx.get(f"{ts.management}/models", params={"limit": 1}).json()
    assert len(page["models"]) == 1 and page["nextPageToken"] == "1"
    [mlp] = httpx.get(f"{ts.management}/models/mlp").json()
    assert mlp["modelName"] == "mlp" and mlp["modelVersion"] == "1.0"
    assert (mlp["batchSize"], mlp["maxBatchDelay"]) == (4, 200)
    assert mlp["workers"][0]["status"] == "READY"
    assert httpx.get(f"{ts.management}/models/mlp/all").json()[0]["modelName"] == "mlp"
    assert httpx.get(f"{ts.management}/models/nope").status_code == 404


def test_register_predict_unregister(ts: TorchServe, repo: Path) -> None:
    shutil.copy(repo / "doubler.mar", repo / "late.mar")  # into the model store
    url = f"{ts.management}/models"
    query = {"url": "late.mar", "batch_size": "2", "max_batch_delay": "10", "initial_workers": "1"}
    registered = httpx.post(url, params=query, timeout=60)
    assert registered.status_code == 200, registered.text
    assert registered.json() == {
        "status": 'Model "late" Version: 1.0 registered with 1 initial workers'
    }
    assert httpx.post(f"{ts.inference}/predictions/late", content=b"abc").text == "abc:6"
    [late] = httpx.get(f"{url}/late").json()
    assert (late["batchSize"], late["maxBatchDelay"]) == (2, 10)
    again = httpx.post(url, params={"url": "late.mar"})
    assert again.status_code == 409 and again.json()["type"] == "ConflictStatusException"
    removed = httpx.delete(f"{url}/late", timeout=60)
    assert removed.json() == {"status": 'Model "late" unregistered'}
    gone = httpx.post(f"{ts.inference}/predictions/late", content=b"abc")
    assert gone.status_code == 404
    assert httpx.get(f"{url}/late").status_code == 404
    assert "late" not in {m["modelName"] for m in httpx.get(url).json()["models"]}


@pytest.mark.skipif(not DEFAULT_HANDLERS, reason="needs the torchserve package and captum")
def test_default_text_classifier(ts: TorchServe) -> None:
    answer = httpx.post(f"{ts.inference}/predictions/sentiment", content=b"A very good movie!")
    assert answer.status_code == 200, answer.text
    scores = answer.json()
    assert set(scores) == {"negative", "positive"}
    assert sum(scores.values()) == pytest.approx(1.0)


def test_the_archive_over_kserve_v2(ts: TorchServe, repo: Path) -> None:
    client = httpclient.InferenceServerClient(ts.server.http_addr)
    metadata = client.get_model_metadata("mlp")
    assert metadata["inputs"][0]["name"] == "body"
    assert metadata["inputs"][0]["datatype"] == "BYTES"
    row = [1.0, 0.0, -2.0, 3.0]
    body = httpclient.InferInput("body", [1, 1], "BYTES")
    body.set_data_from_numpy(np.array([[json.dumps({"x": row}).encode()]], dtype=object))
    result = client.infer("mlp", [body]).as_numpy("output")
    assert result is not None and result.shape == (1, 1)
    scores = json.loads(result[0, 0])["scores"]
    np.testing.assert_allclose(scores, _mlp_reference(repo, [row])[0], rtol=1e-5)


def test_the_advisor_reads_an_archive_without_loading_it(repo: Path) -> None:
    from modelyard.advisor.inspect import inspect_artifact

    info = inspect_artifact(repo / "doubler.mar")
    assert (info.format, info.container) == ("torchserve", "mar")
    assert info.details["handler"] == "handler.py"
    assert info.weight_bytes is not None and info.weight_bytes > 0


def test_two_archives_in_one_process_keep_their_own_modules(tmp_path: Path) -> None:
    """Two archives whose handlers are both `handler.py` importing a `model.py`, loaded in the
    server's process (`isolation: thread`): each runs its own handler."""
    from modelyard.repository.loader import load_version
    from modelyard.repository.scan import scan
    from modelyard.runtimes import RequestArrays

    store = tmp_path / "store"
    store.mkdir()
    eager_mar(store, "colon", separator=":")
    eager_mar(store, "equals", separator="=")
    sources = scan([store])
    loaded = []
    for name in ("colon", "equals"):
        sources[name].config.parameters["isolation"] = "thread"
        loaded.append(load_version(sources[name], 1, trust_pickle=False))
    try:
        body = np.array([[b"abc"]], dtype=object)
        texts = []
        for each in loaded:
            [answer] = each.runtime.infer_many([RequestArrays({"body": body})])
            assert isinstance(answer, dict)
            texts.append(answer["output"][0, 0])
        assert texts == [b"abc:6", b"abc=6"]
    finally:
        for each in loaded:
            each.runtime.unload()


def test_archives_that_do_not_read_are_refused(tmp_path: Path) -> None:
    import zipfile

    from modelyard.errors import ModelLoadError
    from modelyard.runtimes.torchserve_archive import extract, read_manifest

    escaping = tmp_path / "escape.mar"
    with zipfile.ZipFile(escaping, "w") as archive:
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps({"model": {"handler": "h.py"}}))
        archive.writestr("../outside.py", "print('no')")
    assert read_manifest(escaping).handler == "h.py"
    with pytest.raises(ModelLoadError, match="outside the archive"):
        extract(escaping, tmp_path / "unpacked")
    assert not (tmp_path / "outside.py").exists()
    plain = tmp_path / "plain.mar"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("model.pt", b"")
    with pytest.raises(ModelLoadError, match="MANIFEST"):
        read_manifest(plain)
