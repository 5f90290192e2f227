"""The console's look at every model (core/overview.py): kinds read from the files before a
model loads and from what serves it after, the advisor's estimates and reasons, and why the
repository API is locked in some control modes."""

from __future__ import annotations

import asyncio
import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from onnx import TensorProto

from modelyard.core.models import ModelService
from modelyard.core.overview import ModelRow, Overview, overview, rss_bytes
from tests import models
from tests.llm_models import tiny_embedding, tiny_gguf
from tests.pipeline_models import pipeline_repository


def _look(roots: list[Path], mode: str, load: tuple[str, ...] = ()) -> Overview:
    async def main() -> Overview:
        with ThreadPoolExecutor(2) as executor:
            service = ModelService(roots, executor, control_mode=mode)
            await service.start()
            try:
                for name in load:
                    await service.load(name)
                return await overview(service)
            finally:
                await service.close()

    return asyncio.run(main())


def _rows(view: Overview) -> dict[str, ModelRow]:
    return {row.name: row for row in view.models}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("overview")
    models.identity_onnx(root / "ident.onnx", TensorProto.FLOAT)
    tiny_gguf(root / "tiny.gguf")
    tiny_embedding(root / "tiny_embed")
    return root


def test_kinds_and_estimates_before_anything_loads(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pipelines = pipeline_repository(tmp_path_factory.mktemp("pipelines"))
    view = _look([repo, pipelines], "explicit")
    assert view.control_mode == "explicit" and view.locked == ""
    rows = _rows(view)
    kinds = {name: rows[name].kind for name in ("ident", "tiny", "tiny_embed", "pipeline")}
    assert kinds == {
        "ident": "tensor",
        "tiny": "llm",
        "tiny_embed": "embedding",
        "pipeline": "pipeline",
    }
    for name in ("ident", "tiny", "tiny_embed"):
        row = rows[name]
        assert row.loaded == [] and row.versions == [1] and row.state == "UNAVAILABLE"
        assert row.reason and row.inputs == [] and row.estimate_bytes > 0, row
    assert rows["pipeline"].estimate_bytes == 0  # its steps count as the models they are
    as_json = view.to_json()
    assert as_json["models"][0]["name"] == view.models[0].name and "time" in as_json


def test_a_loaded_model_shows_what_serves_it(repo: Path) -> None:
    view = _look([repo], "ondemand", load=("ident",))
    ident = _rows(view)["ident"]
    assert ident.state == "READY" and ident.loaded == [1] and ident.reason == ""
    assert ident.runtime == "onnx" and ident.max_batch_size > 0
    assert ident.inputs == [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}]
    assert ident.outputs == [{"name": "y", "datatype": "FP32", "shape": [-1, -1]}]
    assert any(why.startswith("advisor:") for why in ident.reasons.values()), ident.reasons
    assert ident.inflight == 0 and ident.queue_depth == 0
    assert view.keep_alive_s is None  # the service's own default: no expiry


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="no llama-cpp-python")
def test_a_loaded_llm_and_embedder(repo: Path) -> None:
    rows = _rows(_look([repo], "explicit", load=("tiny", "tiny_embed")))
    assert rows["tiny"].kind == "llm" and rows["tiny"].context_length
    assert rows["tiny_embed"].kind == "embedding"


@pytest.mark.parametrize("mode", ["none", "poll"])
def test_modes_that_lock_the_repository_api_say_so(tmp_path: Path, mode: str) -> None:
    models.identity_onnx(tmp_path / "ident.onnx", TensorProto.FLOAT)
    view = _look([tmp_path], mode)
    assert f"model control mode {mode!r}" in view.locked
    assert _rows(view)["ident"].loaded == [1]


def test_rss_is_this_process_memory() -> None:
    rss = rss_bytes()
    assert rss is None or rss > 2**20
