"""Load one version of a model from disk: its config completed by the advisor and by the
artifact's own signature, and its runtime with the artifact read. Blocking: call it on a
worker thread. What serves the loaded runtime (batcher, engine) is the core's to build."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from modelyard.advisor.apply import advise_config
from modelyard.errors import ModelLoadError
from modelyard.repository.autocomplete import complete
from modelyard.repository.scan import ModelSource
from modelyard.runtimes import PICKLE_SUFFIXES, Runtime, build_runtime
from modelyard.spec.calls import ModelCalls
from modelyard.spec.config import ModelConfig

log = logging.getLogger("modelyard.repository")


@dataclass
class Loaded:
    """A model version read from disk: its complete config and its loaded runtime."""

    name: str
    version: int
    config: ModelConfig
    runtime: Runtime


#: Models whose load runs native libraries (onnxruntime, llama.cpp, the boosters...) load one at
#: a time: the server loads its start-up models concurrently, and two libraries initialising at
#: once corrupted the heap now and then ("double free or corruption" at start).
_NATIVE_LOADS = threading.Lock()
#: Runtimes whose load runs the user's code (in the server or a worker process): not serialised,
#: since a model's load may call another model, which may have to load first.
_USER_CODE = frozenset({"python", "worker"})


def load_version(
    source: ModelSource,
    version: int,
    trust_pickle: bool,
    calls: ModelCalls | None = None,
    goal: str = "latency",
) -> Loaded:
    """Load one version on the calling (worker) thread and complete its config; `calls` is
    how its model may call other models (BLS, composition); `goal`: what the advisor
    configures it for unless its config names one."""
    path = source.versions[version]
    config = source.config.replace(reasons=dict(source.config.reasons))
    config = advise_config(config, path, goal=goal)  # fills what the config leaves out
    if config.runtime is None:
        raise ModelLoadError(f"model {source.name!r}: no runtime reads {path.name}")
    if config.trust_pickle is None:
        config.trust_pickle = trust_pickle
    if path.suffix.lower() in PICKLE_SUFFIXES and not config.trust_pickle:
        raise ModelLoadError(
            f"model {source.name!r} is a pickle ({path.name}), which runs code when loaded; "
            "start with --trust-pickle (MODELYARD_TRUST_PICKLE=1) or set trust_pickle for "
            "this model if you trust the file, or save it in a safe format (.skops, .onnx, "
            "XGBoost .ubj, LightGBM .txt)"
        )
    if not path.exists():
        raise ModelLoadError(f"model {source.name!r}: {path} does not exist")
    runtime = build_runtime(config.runtime, path, config)
    runtime.calls = calls
    if runtime.name in _USER_CODE:
        runtime.load()  # may call other models (which may load): never behind the lock
    else:
        with _NATIVE_LOADS:
            runtime.load()
    try:
        config = complete(
            config,
            runtime.signature(),
            path.name,
            runtime.named_inputs,
            runtime.declared_max_batch_size(),
        )
    except BaseException:
        runtime.unload()
        raise
    runtime.config = config
    log.info(
        "loaded %s version %d with runtime %s (%s)",
        source.name,
        version,
        config.runtime,
        config.reasons.get("runtime", "config"),
    )
    return Loaded(source.name, version, config, runtime)
