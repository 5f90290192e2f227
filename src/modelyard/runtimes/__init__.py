"""Runtimes, found by name or by artifact suffix and imported only when used, so that a
missing extra is a clear message rather than an import error at start-up.

`RUNTIMES` is the one table of what each runtime reads: the repository finds artifacts with
it, the pickle gate reads it, the advisor names the extra to install from it. Nothing else
keeps a list of suffixes.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from modelyard.errors import ModelLoadError
from modelyard.runtimes.base import (
    Arrays,
    RequestArrays,
    ResponseArrays,
    Runtime,
    TemplateSource,
    TextModel,
)
from modelyard.spec.config import ModelConfig

__all__ = [
    "PICKLE_SUFFIXES",
    "RUNTIMES",
    "Arrays",
    "RequestArrays",
    "ResponseArrays",
    "Runtime",
    "RuntimeInfo",
    "TemplateSource",
    "TextModel",
    "build_runtime",
    "defines_triton_model",
    "hf_causal_lm",
    "hf_runtime",
    "isolation",
    "resolved_runtime",
    "runtime_class",
    "runtime_for_file",
    "runtime_suffixes",
    "savedmodel_in",
]


@dataclass(frozen=True)
class RuntimeInfo:
    module: str
    cls: str
    #: The extra that installs its library (`pip install 'modelyard[EXTRA]'`).
    extra: str
    #: Artifact suffixes it reads, to find the model file in a version folder.
    suffixes: tuple[str, ...]
    #: The file name Triton would look for in a version folder.
    default_filename: str
    #: Whether a file with one of `suffixes` is this runtime's by its suffix alone (a bare
    #: `NAME.onnx` is an ONNX model; a bare `.safetensors` file could be anything).
    claims_suffixes: bool = True
    #: Suffixes whose files are pickles: loading them runs code (--trust-pickle).
    pickles: tuple[str, ...] = ()
    #: Whether its models run in a worker process by default (user code that may crash or
    #: hang); the model parameter `isolation` (process | thread) decides per model.
    isolated: bool = False


RUNTIMES: dict[str, RuntimeInfo] = {
    "onnx": RuntimeInfo("modelyard.runtimes.onnx", "OnnxRuntime", "onnx", (".onnx",), "model.onnx"),
    # TorchScript (Triton's pytorch_libtorch) and torch.export programs / AOTInductor packages.
    "pytorch": RuntimeInfo(
        "modelyard.runtimes.pytorch", "PyTorchRuntime", "pytorch", (".pt", ".pt2"), "model.pt"
    ),
    # TensorFlow SavedModels: a version's artifact is the SavedModel's saved_model.pb, in
    # model.savedmodel/ (Triton's name) or in the version folder itself (OVMS's layout).
    "tensorflow": RuntimeInfo(
        "modelyard.runtimes.tensorflow",
        "TensorFlowRuntime",
        "tensorflow",
        (".pb",),
        "model.savedmodel/saved_model.pb",
        claims_suffixes=False,
    ),
    # OpenVINO IR (model.xml + model.bin): OVMS's format and Triton's `openvino` backend.
    "openvino": RuntimeInfo(
        "modelyard.runtimes.openvino", "OpenVinoRuntime", "openvino", (".xml",), "model.xml"
    ),
    "sklearn": RuntimeInfo(
        "modelyard.runtimes.sklearn",
        "SklearnRuntime",
        "sklearn",
        (".skops", ".joblib", ".pkl", ".pickle"),
        "model.skops",
        pickles=(".joblib", ".pkl", ".pickle"),
    ),
    "xgboost": RuntimeInfo(
        "modelyard.runtimes.boosters",
        "XGBoostRuntime",
        "xgboost",
        (".ubj", ".xgb", ".json"),
        "model.ubj",
    ),
    "lightgbm": RuntimeInfo(
        "modelyard.runtimes.boosters", "LightGBMRuntime", "lightgbm", (".txt", ".lgb"), "model.txt"
    ),
    "python": RuntimeInfo(
        "modelyard.runtimes.python", "PythonRuntime", "", (".py",), "model.py", isolated=True
    ),
    # A model.py defining Triton's `class TritonPythonModel` (runtime "python" picks it).
    "triton_python": RuntimeInfo(
        "modelyard.runtimes.triton_python",
        "TritonPythonRuntime",
        "",
        (".py",),
        "model.py",
        claims_suffixes=False,
        isolated=True,  # in a worker process, as Triton runs it in a stub process
    ),
    # TorchServe model archives: the archive's own handler runs (user code: a worker process).
    "torchserve": RuntimeInfo(
        "modelyard.runtimes.torchserve",
        "TorchServeRuntime",
        "torchserve",
        (".mar",),
        "model.mar",
        isolated=True,
    ),
    "llamacpp": RuntimeInfo(
        "modelyard.runtimes.llamacpp", "LlamaCppRuntime", "llm", (".gguf",), "model.gguf"
    ),
    # A Hugging Face causal-LM folder (config.json naming a *ForCausalLM, *.safetensors):
    # its config.json is the version's artifact, so sharded weights need no file name.
    "transformers": RuntimeInfo(
        "modelyard.runtimes.transformers_gen",
        "TransformersRuntime",
        "transformers",
        (".safetensors",),
        "config.json",
        claims_suffixes=False,
    ),
    # Sentence embeddings / feature extraction from a Hugging Face encoder folder (a
    # sentence-transformers folder, or config.json naming a plain *Model such as BertModel).
    "sentence": RuntimeInfo(
        "modelyard.runtimes.sentence",
        "SentenceRuntime",
        "embeddings",
        (".safetensors",),
        "model.safetensors",
        claims_suffixes=False,
    ),
    # Text and token classification from a Hugging Face folder (config.json naming a
    # *ForSequenceClassification or *ForTokenClassification); config.json is the artifact.
    "hf_classifier": RuntimeInfo(
        "modelyard.runtimes.hf_classifier",
        "HFClassifierRuntime",
        "transformers",
        (".safetensors",),
        "config.json",
        claims_suffixes=False,
    ),
}

#: Suffix -> the runtime a file with it belongs to, by its suffix alone.
_CLAIMED = {
    suffix: name
    for name, info in RUNTIMES.items()
    if info.claims_suffixes
    for suffix in info.suffixes
}
PICKLE_SUFFIXES = frozenset(suffix for info in RUNTIMES.values() for suffix in info.pickles)


def resolved_runtime(name: str, path: Path | None = None) -> str:
    """The runtime that serves the file at `path` under runtime `name`: for "python", Triton's
    Python backend ("triton_python") when the file defines `class TritonPythonModel`."""
    if name == "python" and path is not None and defines_triton_model(path):
        return "triton_python"
    return name


def runtime_class(name: str, path: Path | None = None) -> type[Runtime]:
    """The runtime class called `name`; for "python", Triton's Python backend when the file
    at `path` defines `class TritonPythonModel` (a modelyard.Model otherwise)."""
    name = resolved_runtime(name, path)
    try:
        info = RUNTIMES[name]
    except KeyError:
        raise ModelLoadError(
            f"unknown runtime {name!r}; known runtimes: {', '.join(RUNTIMES)}"
        ) from None
    try:
        module = importlib.import_module(info.module)
    except ImportError as exc:
        hint = f"pip install 'modelyard[{info.extra}]'" if info.extra else "reinstall modelyard"
        raise ModelLoadError(f"runtime {name!r} is not installed ({exc.name}): {hint}") from exc
    cls: type[Runtime] = getattr(module, info.cls)
    return cls


def isolation(name: str, config: ModelConfig) -> str:
    """Where a model of runtime `name` runs: "process" (a worker process) or "thread" (in the
    server), from its `isolation` parameter or the runtime's default."""
    info = RUNTIMES.get(name)
    default = "process" if info is not None and info.isolated else "thread"
    mode = config.parameters.get("isolation", default).strip().lower()
    if mode not in ("process", "thread"):
        raise ModelLoadError(
            f"parameter isolation must be 'process' (a worker process) or 'thread' (in the "
            f"server), got {mode!r}"
        )
    return mode


def build_runtime(name: str, path: Path, config: ModelConfig) -> Runtime:
    """The runtime that serves one model version: the runtime itself, or a proxy to it in a
    worker process when the model is isolated. `name` is resolved first (`resolved_runtime`),
    so a worker hosts the runtime the file asks for ("python" may be "triton_python")."""
    name = resolved_runtime(name, path)
    if isolation(name, config) == "process":
        from modelyard.runtimes.worker import WorkerRuntime

        runtime_class(name)  # a missing runtime is a clear error here, not in the worker
        return WorkerRuntime(path, config, hosted=name)
    return runtime_class(name)(path, config)


def defines_triton_model(path: Path) -> bool:
    """Whether a model.py defines Triton's `TritonPythonModel` class (read, not imported)."""
    try:
        source = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.startswith("class TritonPythonModel") for line in source.splitlines())


def hf_causal_lm(folder: Path) -> str | None:
    """The `*ForCausalLM` architecture a Hugging Face folder's config.json names when the
    folder also holds safetensors weights (the transformers runtime's folders), else None."""
    return next((a for a in hf_architectures(folder) if a.endswith("ForCausalLM")), None)


def hf_architectures(folder: Path) -> list[str]:
    """The architectures a Hugging Face folder's config.json names, when the folder also
    holds safetensors weights (else none: a config alone is no model)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return []
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if not isinstance(architectures, list) or not any(folder.glob("*.safetensors")):
        return []
    return [a for a in architectures if isinstance(a, str)]


#: An architecture's name ending -> the runtime that serves its folders (first match wins).
_HF_RUNTIMES = (
    ("ForCausalLM", "transformers"),
    ("ForSequenceClassification", "hf_classifier"),
    ("ForTokenClassification", "hf_classifier"),
    ("Model", "sentence"),  # a bare encoder (BertModel, XLMRobertaModel...): its features
)


def hf_runtime(folder: Path) -> tuple[str, str] | None:
    """The runtime that serves a Hugging Face folder and why: (runtime, architecture) from
    config.json's `architectures` (a sentence-transformers folder, with modules.json, is
    "sentence" whatever it names), or None when no runtime serves it."""
    architectures = hf_architectures(folder)
    if (folder / "modules.json").is_file() and architectures:
        return "sentence", f"{architectures[0]} in a sentence-transformers folder"
    for ending, runtime in _HF_RUNTIMES:
        found = next((a for a in architectures if a.endswith(ending)), None)
        if found is not None:
            return runtime, found
    return None


def savedmodel_in(folder: Path) -> Path | None:
    """The saved_model.pb of the TensorFlow SavedModel a folder holds: the folder itself is
    one (OVMS's version folders, a bare `NAME.savedmodel/`), or one `*.savedmodel` folder in it
    is (Triton's `model.savedmodel/`). None when there is none, or several to choose from."""
    if (folder / "saved_model.pb").is_file():
        return folder / "saved_model.pb"
    inner = sorted(folder.glob("*.savedmodel/saved_model.pb"))
    return inner[0] if len(inner) == 1 else None


def runtime_for_file(path: Path) -> str | None:
    """The runtime that reads this file, judged by its suffix (None if no runtime claims it)."""
    return _CLAIMED.get(path.suffix.lower())


def runtime_suffixes(runtime: str | None) -> tuple[str, ...]:
    """The suffixes of the files `runtime` reads (every claimed suffix when None)."""
    if runtime is None:
        return tuple(_CLAIMED)
    info = RUNTIMES.get(runtime)
    return info.suffixes if info is not None else ()
