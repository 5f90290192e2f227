"""The model service's pull, copy and delete in process, on a Triton-layout ONNX model: copy
shares the files and renames the config's model, pull stages and installs, delete unloads
first; read-only in mode none."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modelyard.core.models import ModelService
from modelyard.errors import FailedPrecondition, InvalidArgument
from tests import models


def _triton_model(root: Path, name: str) -> Path:
    from onnx import TensorProto

    folder = root / name
    models.identity_onnx(folder / "1" / "model.onnx", TensorProto.FLOAT)
    (folder / "config.pbtxt").write_text(f'name: "{name}"\nplatform: "onnxruntime_onnx"\n')
    return folder


async def _scenario(root: Path, outside: Path) -> None:
    with ThreadPoolExecutor(2) as executor:
        repository = ModelService([root], executor, control_mode="ondemand")
        await repository.start()
        store = repository
        await repository.acquire("ident")
        await store.copy("ident", "twin")
        config = (root / "twin" / "config.pbtxt").read_text()
        assert (
            'name: "twin"' in config
            and 'name: "ident"' in (root / "ident" / "config.pbtxt").read_text()
        )
        original, copy = root / "ident" / "1" / "model.onnx", root / "twin" / "1" / "model.onnx"
        assert original.stat().st_ino == copy.stat().st_ino
        assert (await repository.acquire("twin")).name == "twin"
        with pytest.raises(InvalidArgument, match="already exists"):
            await store.copy("ident", "twin")

        steps = [step.status async for step in store.pull(str(outside), "other")]
        assert steps[0] == "pulling manifest" and steps[-1] == "success"
        assert 'name: "other"' in (root / "other" / "config.pbtxt").read_text()
        assert not [p for p in root.iterdir() if p.name.startswith(".pull-")]
        assert (await repository.acquire("other")).name == "other"

        await store.delete("twin")
        assert not (root / "twin").exists() and original.exists()
        assert "twin" not in repository.entries
        await repository.close()


def test_copy_pull_delete(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    root = tmp_path / "repo"
    _triton_model(root, "ident")
    outside = _triton_model(tmp_path / "elsewhere", "source")
    asyncio.run(_scenario(root, outside))


def test_read_only_in_mode_none(tmp_path: Path) -> None:
    async def scenario() -> None:
        with ThreadPoolExecutor(1) as executor:
            repository = ModelService([tmp_path], executor, control_mode="none")
            with pytest.raises(FailedPrecondition, match="ondemand"):
                await repository.copy("a", "b")

    asyncio.run(scenario())
