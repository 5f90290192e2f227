"""Python models: a `model.py` defining one subclass of `modelyard.Model`."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import types
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import Internal, ModelLoadError, ModelyardError
from modelyard.model import Model
from modelyard.runtimes.base import Arrays, Runtime


class PythonRuntime(Runtime):
    name = "python"

    model: Model

    def load(self) -> None:
        module = self._import()
        classes = [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj)
            and issubclass(obj, Model)
            and obj is not Model
            and obj.__module__ == module.__name__
        ]
        if len(classes) != 1:
            found = ", ".join(c.__name__ for c in classes) or "none"
            raise ModelLoadError(
                f"{self.path} must define exactly one subclass of modelyard.Model (found "
                f"{found}), or Triton's `class TritonPythonModel` (docs/python-backend.md)"
            )
        if not self.config.inputs or not self.config.outputs:
            raise ModelLoadError(
                f"Python model {self.config.name!r} must declare its inputs and outputs "
                "in config.pbtxt or model.yaml"
            )
        version = int(self.path.parent.name) if self.path.parent.name.isdigit() else 1
        self.model = classes[0](self.config.name, version, self.path.parent, self.config.parameters)
        if self.calls is not None:
            self.model.models = self.calls
        predict = self.model.predict
        self.asynchronous = inspect.iscoroutinefunction(predict) or inspect.isasyncgenfunction(
            predict
        )
        try:
            self.model.load()
        except Exception as exc:
            raise ModelLoadError(f"{classes[0].__name__}.load() failed: {exc!r}") from exc

    def _import(self) -> types.ModuleType:
        return import_model_file(self.path, f"modelyard_user_models.{self.config.name}")

    def infer(self, inputs: Arrays) -> Arrays:
        results = list(self.infer_stream(inputs))
        if len(results) != 1:
            raise Internal(
                f"model {self.config.name!r} produced {len(results)} responses; "
                "use a streaming call (gRPC ModelStreamInfer) for models that yield"
            )
        return results[0]

    def infer_stream(self, inputs: Arrays) -> Iterator[Arrays]:
        try:
            result = self.model.predict(inputs)
            if isinstance(result, dict):
                yield _arrays(result)
                return
            for item in result:
                yield _arrays(item)
        except ModelyardError:
            raise
        except Exception as exc:
            raise Internal(f"model {self.config.name!r} raised {exc!r}") from exc

    async def infer_async(self, inputs: Arrays) -> Arrays:
        results = [item async for item in self.infer_stream_async(inputs)]
        if len(results) != 1:
            raise Internal(
                f"model {self.config.name!r} produced {len(results)} responses; "
                "use a streaming call (gRPC ModelStreamInfer) for models that yield"
            )
        return results[0]

    async def infer_stream_async(self, inputs: Arrays) -> AsyncGenerator[Arrays, None]:
        """An `async def predict`: awaited (or iterated, when it yields) on the loop."""
        try:
            result: Any = self.model.predict(inputs)
            if inspect.isawaitable(result):
                yield _arrays(await result)
                return
            async for item in result:
                yield _arrays(item)
        except ModelyardError:
            raise
        except Exception as exc:
            raise Internal(f"model {self.config.name!r} raised {exc!r}") from exc

    def unload(self) -> None:
        self.model.unload()


def _arrays(result: object) -> Arrays:
    if not isinstance(result, dict):
        raise Internal(f"predict() must return a dict of arrays, not {type(result).__name__}")
    return {str(k): v if isinstance(v, np.ndarray) else np.asarray(v) for k, v in result.items()}


def import_model_file(path: Path, prefix: str) -> types.ModuleType:
    """Import a model's `model.py` under a module name of its own (`prefix` and the path's
    hash: two models' files never replace each other); an error says which file failed."""
    module_name = f"{prefix}_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ModelLoadError(f"importing {path} failed: {exc!r}") from exc
    return module
