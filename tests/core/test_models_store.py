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
from modelyard.repository.store import PullPolicy
from tests import models


def _triton_model(root: Path, name: str) -> Path:
    from onnx import TensorProto

    folder = root / name
    models.identity_onnx(folder / "1" / "model.onnx", TensorProto.FLOAT)
    (folder / "config.pbtxt").write_text(f'name: "{name}"\nplatform: "onnxruntime_onnx"\n')
    return folder


async def _scenario(root: Path, outside: Path) -> None:
    with ThreadPoolExecutor(2) as executor:
        policy = PullPolicy(pull_from=(outside.parent,))
        repository = ModelService([root], executor, control_mode="ondemand", pull=policy)
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


def _pull(service: ModelService, spec: str, name: str) -> list[str]:
    async def steps() -> list[str]:
        return [step.status async for step in service.pull(spec, name)]

    return asyncio.run(steps())


def _service(root: Path, executor: ThreadPoolExecutor, policy: PullPolicy) -> ModelService:
    return ModelService([root], executor, control_mode="ondemand", pull=policy)


def test_pull_only_from_listed_folders_and_code_only_when_allowed(tmp_path: Path) -> None:
    from tests.models import sklearn_joblib

    root, allowed, elsewhere = tmp_path / "repo", tmp_path / "allowed", tmp_path / "elsewhere"
    for folder in (root, allowed, elsewhere):
        folder.mkdir()
    (allowed / "tree").mkdir()
    sklearn_joblib(allowed / "tree" / "model.joblib")
    (allowed / "tree" / "model.yaml").write_text("runtime: sklearn\ntrust_pickle: true\n")
    (elsewhere / "x.onnx").write_bytes(b"")
    with ThreadPoolExecutor(1) as executor:
        closed = _service(root, executor, PullPolicy(pull_from=(allowed,)))
        with pytest.raises(FailedPrecondition, match="--pull-from"):
            _pull(closed, str(elsewhere / "x.onnx"), "x")
        with pytest.raises(FailedPrecondition, match="--pull-from"):  # no way around by ..
            _pull(closed, str(allowed / ".." / "elsewhere" / "x.onnx"), "x")
        with pytest.raises(FailedPrecondition, match="--pull-code"):
            _pull(closed, str(allowed / "tree"), "tree")
        assert not (root / "tree").exists()
        code = _service(root, executor, PullPolicy(pull_from=(allowed,), pull_code=True))
        assert _pull(code, str(allowed / "tree"), "tree")[-1] == "success"
    assert "trust_pickle" not in (root / "tree" / "model.yaml").read_text()  # trust is dropped
    assert "trust_pickle" in (allowed / "tree" / "model.yaml").read_text()  # not the source's
