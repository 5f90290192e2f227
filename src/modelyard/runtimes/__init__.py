"""Runtimes, found by name or by artifact suffix and imported only when used, so that a
missing extra is a clear message rather than an import error at start-up."""

from __future__ import annotations

import importlib
from pathlib import Path

from modelyard.errors import ModelLoadError
from modelyard.runtimes.base import Arrays, Runtime

__all__ = ["RUNTIMES", "Arrays", "Runtime", "runtime_class", "runtime_for_file"]

# name -> (module, class, the extra that installs its library)
RUNTIMES: dict[str, tuple[str, str, str]] = {
    "onnx": ("modelyard.runtimes.onnx", "OnnxRuntime", "onnx"),
    "sklearn": ("modelyard.runtimes.sklearn", "SklearnRuntime", "sklearn"),
    "xgboost": ("modelyard.runtimes.boosters", "XGBoostRuntime", "xgboost"),
    "lightgbm": ("modelyard.runtimes.boosters", "LightGBMRuntime", "lightgbm"),
    "python": ("modelyard.runtimes.python", "PythonRuntime", ""),
    "llamacpp": ("modelyard.runtimes.llamacpp", "LlamaCppRuntime", "llm"),
    "sentence": ("modelyard.runtimes.sentence", "SentenceRuntime", "embeddings"),
}

# artifact suffix -> runtime name; order matters only for folders holding several files.
SUFFIXES: dict[str, str] = {
    ".onnx": "onnx",
    ".skops": "sklearn",
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".pickle": "sklearn",
    ".ubj": "xgboost",
    ".xgb": "xgboost",
    ".json": "xgboost",
    ".txt": "lightgbm",
    ".lgb": "lightgbm",
    ".py": "python",
    ".gguf": "llamacpp",
}


def runtime_class(name: str) -> type[Runtime]:
    try:
        module_name, class_name, extra = RUNTIMES[name]
    except KeyError:
        raise ModelLoadError(
            f"unknown runtime {name!r}; known runtimes: {', '.join(RUNTIMES)}"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'modelyard[{extra}]'" if extra else "reinstall modelyard"
        raise ModelLoadError(f"runtime {name!r} is not installed ({exc.name}): {hint}") from exc
    cls: type[Runtime] = getattr(module, class_name)
    return cls


def runtime_for_file(path: Path) -> str | None:
    """The runtime that reads this file, judged by its suffix (None if no runtime does)."""
    return SUFFIXES.get(path.suffix.lower())
