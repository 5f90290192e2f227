"""The logger, auto-complete's `ModelConfig` and what modelyard refuses, of
`triton_python_backend_utils` (re-exported by `triton_pb_utils`)."""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping
from typing import Any

from modelyard.runtimes.triton_pb_tensors import refused

log = logging.getLogger("modelyard.triton_python")

# ---- logging -------------------------------------------------------------------------------


_LOG_LEVELS = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR, 3: logging.DEBUG}


class Logger:
    """Triton's model logger, writing to the `modelyard.triton_python` Python logger."""

    class LogLevel(enum.IntEnum):
        INFO = 0
        WARNING = 1
        ERROR = 2
        VERBOSE = 3

    @staticmethod
    def log(message: str, level: int = 0) -> None:
        log.log(_LOG_LEVELS.get(int(level), logging.INFO), "%s", message)

    @staticmethod
    def log_info(message: str) -> None:
        log.info("%s", message)

    @staticmethod
    def log_warn(message: str) -> None:
        log.warning("%s", message)

    @staticmethod
    def log_error(message: str) -> None:
        log.error("%s", message)

    @staticmethod
    def log_verbose(message: str) -> None:
        log.debug("%s", message)


# ---- auto-complete -------------------------------------------------------------------------


class ModelConfig:
    """The config a model's `auto_complete_config(auto_complete_model_config)` may complete:
    max_batch_size, inputs, outputs, dynamic batching."""

    def __init__(self, model_config: str | Mapping[str, Any]) -> None:
        text = model_config if isinstance(model_config, str) else json.dumps(model_config)
        self._model_config: dict[str, Any] = json.loads(text)

    def as_dict(self) -> dict[str, Any]:
        return self._model_config

    def set_max_batch_size(self, max_batch_size: int) -> None:
        current = int(self._model_config.get("max_batch_size", 0))
        if current > max_batch_size:
            raise ValueError(
                f"configuration specified max_batch_size {current}, but auto_complete_config "
                f"of model {self._model_config.get('name')!r} sets {max_batch_size}"
            )
        self._model_config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self) -> None:
        self._model_config.setdefault("dynamic_batching", {})

    def add_input(self, input: Mapping[str, Any]) -> None:
        self._add("input", input)

    def add_output(self, output: Mapping[str, Any]) -> None:
        self._add("output", output)

    def set_model_transaction_policy(self, transaction_policy_dict: Mapping[str, Any]) -> None:
        self._model_config["model_transaction_policy"] = dict(transaction_policy_dict)

    def _add(self, kind: str, tensor: Mapping[str, Any]) -> None:
        unknown = set(tensor) - {"name", "data_type", "dims", "optional"}
        if unknown or "name" not in tensor or "data_type" not in tensor or "dims" not in tensor:
            raise ValueError(
                f"{kind} {tensor.get('name')!r} in auto_complete_config needs name, data_type "
                f"and dims (and optionally optional), got {sorted(tensor)}"
            )
        tensors = self._model_config.setdefault(kind, [])
        same = next((t for t in tensors if t.get("name") == tensor["name"]), None)
        if same is None:
            tensors.append(dict(tensor))
        elif same.get("data_type") != tensor["data_type"] or [
            int(d) for d in same.get("dims", [])
        ] != [int(d) for d in tensor["dims"]]:
            raise ValueError(
                f"{kind} {tensor['name']!r} is already in the config with another data_type or dims"
            )


# ---- refused -------------------------------------------------------------------------------


def load_model(model_name: str, config: str = "", files: Any = None) -> None:
    raise refused(
        "Loading a model from a model (pb_utils.load_model)",
        "load it with the repository API (POST /v2/repository/models/NAME/load) or at start-up",
    )


def unload_model(model_name: str, unload_dependents: bool = False) -> None:
    raise refused(
        "Unloading a model from a model (pb_utils.unload_model)",
        "use the repository API (POST /v2/repository/models/NAME/unload)",
    )


def is_model_ready(model_name: str, model_version: str = "") -> bool:
    raise refused("pb_utils.is_model_ready", "call the model and check response.has_error()")


class MetricFamily:
    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2

    def __init__(self, name: str, description: str, kind: int) -> None:
        raise refused(
            "Custom metrics (pb_utils.MetricFamily)",
            "the server's /metrics has the model's statistics",
        )


class PreferredMemory:
    def __init__(self, preferred_memory_type: int, preferred_device_id: int = 0) -> None:
        self.kind = preferred_memory_type
        self.device_id = preferred_device_id


def get_model_dir() -> str:
    raise refused("pb_utils.get_model_dir", "use args['model_repository'] in initialize()")
