"""The model service in process: load options parsed once for every front, readiness, the
lease that keeps a version until its holder is done, and a text generator's engine built at
load and gone at unload."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from onnx import TensorProto

from modelyard.core.models import LoadOptions, ModelService
from modelyard.errors import InvalidArgument, Unavailable
from tests import models


@pytest.mark.parametrize(
    ("parameters", "config"),
    [
        ({}, None),
        ({"config": '{"max_batch_size": 8}'}, {"max_batch_size": 8}),
        ({"config": b'{"max_batch_size": 8}'}, {"max_batch_size": 8}),
    ],
)
def test_load_options_read_a_config(parameters: dict[str, object], config: object) -> None:
    assert LoadOptions.parse(parameters).config == config


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"file:1/model.onnx": b"x"}, "file overrides are not supported"),
        ({"config": "{not json"}, "not JSON"),
        ({"config": "[1]"}, "must be a model config"),
        (
            {"config": '{"parameters": {"trust_pickle": {"string_value": "true"}}}'},
            "cannot set trust_pickle",
        ),
    ],
)
def test_load_options_refuse(parameters: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        LoadOptions.parse(parameters)


def _run(repo: Path, scenario: Callable[[ModelService], Awaitable[None]]) -> None:
    async def main() -> None:
        with ThreadPoolExecutor(2) as executor:
            service = ModelService([repo], executor, control_mode="explicit")
            assert not service.ready
            await service.start()
            try:
                await scenario(service)
            finally:
                await service.close()
            assert not service.ready

    asyncio.run(main())


def test_ready_after_start_not_while_draining(tmp_path: Path) -> None:
    models.identity_onnx(tmp_path / "ident.onnx", TensorProto.FLOAT)

    async def scenario(service: ModelService) -> None:
        assert service.ready
        service.drain()
        assert not service.ready

    _run(tmp_path, scenario)


def test_a_lease_keeps_its_version_through_an_unload(tmp_path: Path) -> None:
    models.identity_onnx(tmp_path / "ident.onnx", TensorProto.FLOAT)

    async def scenario(service: ModelService) -> None:
        await service.load("ident")
        async with service.lease("ident") as model:
            unload = asyncio.create_task(service.unload("ident"))
            await asyncio.sleep(0.1)
            assert not unload.done()  # it waits for the holder
            assert model.leases == 1 and model.batcher is not None
            with pytest.raises(Unavailable):  # while new requests find it gone
                service.get("ident")
        await asyncio.wait_for(unload, 5)
        assert [row.state for row in service.index()] == ["UNAVAILABLE"]

    _run(tmp_path, scenario)


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python")
def test_a_generators_engine_lives_from_load_to_unload(tmp_path: Path) -> None:
    from tests.llm_models import tiny_gguf

    tiny_gguf(tmp_path / "tiny.gguf")

    def engines() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name == "modelyard-engine-tiny"]

    async def scenario(service: ModelService) -> None:
        assert engines() == []
        await service.load("tiny")
        model = service.get("tiny")
        assert model.engine is not None and model.batcher is None and model.template is not None
        assert model.config.instance_count == model.engine.backend.n_slots
        assert engines() == ["modelyard-engine-tiny"]
        await service.unload("tiny")
        assert engines() == [] and model.engine is None

    _run(tmp_path, scenario)
