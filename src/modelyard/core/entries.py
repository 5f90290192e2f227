"""The model service's records: a model's entry (its source on disk and loaded versions), the
protocol-neutral rows it answers with (`ModelStatus`, `Residence`), the options of a load
request (`LoadOptions`, parsed once for every front) and the `Lease` that holds a version."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from modelyard.core.served import ServedModel
from modelyard.errors import InvalidArgument
from modelyard.repository.scan import ModelSource

if TYPE_CHECKING:
    from modelyard.core.models import ModelService

READY, UNAVAILABLE, LOADING, UNLOADING = "READY", "UNAVAILABLE", "LOADING", "UNLOADING"


@dataclass
class ModelEntry:
    source: ModelSource
    versions: dict[int, ServedModel] = field(default_factory=dict)
    state: str = UNAVAILABLE
    reason: str = "not loaded"
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    fingerprint: float = 0.0
    #: Estimated bytes the loaded versions take (the memory budget counts these).
    estimate: int = 0
    #: Per-model keep-alive asked for by a request (None: the server's default).
    keep_alive_s: float | None = None
    #: Seconds the last load took (Ollama's load_duration).
    load_seconds: float = 0.0
    #: Loaded by its own name (a request, the start-up set), not only as a pipeline's step.
    alone: bool = False
    #: Pipelines that loaded this model as their step (unloading the last one unloads it).
    needed_by: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def busy(self) -> bool:
        return any(v.leases for v in self.versions.values())

    @property
    def last_used(self) -> float:
        return max((v.last_used for v in self.versions.values()), default=0.0)


@dataclass(frozen=True)
class ModelStatus:
    """One row of the repository index: a loaded version, or a model that is not loaded."""

    name: str
    version: str  # "" when no version is loaded
    state: str
    reason: str


@dataclass(frozen=True)
class Residence:
    """A loaded model, as listings of what occupies memory show it."""

    name: str
    #: Estimated bytes (0 when no budget asked for an estimate).
    estimate: int
    #: Epoch seconds it unloads if left idle (None: never by itself).
    expires_at: float | None
    #: Tokens one sequence may hold, for text models (None: not a text model).
    context_length: int | None
    source: ModelSource


@dataclass(frozen=True)
class LoadOptions:
    """What a load request may carry: a model config (Triton's JSON form) that replaces the
    one on disk. Triton's `file:` overrides (model files sent with the request) are refused,
    and so is anything that would widen what the operator allowed (`trust_pickle`)."""

    config: dict[str, Any] | None = None

    @classmethod
    def parse(cls, parameters: Mapping[str, Any]) -> LoadOptions:
        """From a load request's parameters, as every front reads them: `config` a JSON
        string (or bytes), other keys refused if they are file overrides."""
        for key in parameters:
            if key.startswith("file:"):
                raise InvalidArgument(
                    f"load parameter {key!r}: file overrides are not supported; "
                    "put the model's files in the model repository"
                )
        text = parameters.get("config")
        if text is None:
            return cls()
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        try:
            config = orjson.loads(text) if isinstance(text, str) else None
        except orjson.JSONDecodeError as exc:
            raise InvalidArgument(f"load parameter 'config' is not JSON: {exc}") from exc
        if not isinstance(config, dict):
            raise InvalidArgument("load parameter 'config' must be a model config as a JSON string")
        if "trust_pickle" in (config.get("parameters") or {}):
            raise InvalidArgument(
                "a load request cannot set trust_pickle; only the server's operator can "
                "(--trust-pickle, or the model's own config file)"
            )
        return cls(config)


class Lease:
    """Holds one version of a model from `__aenter__` to `__aexit__`: while held it is never
    unloaded or evicted (unloading waits for it). Bound to the version it found: a reload in
    between changes nothing for the holder."""

    __slots__ = ("_keep_alive_s", "_model", "_name", "_service", "_version")

    def __init__(
        self,
        service: ModelService,
        name: str,
        version: str | None = None,
        keep_alive_s: float | None = None,
    ) -> None:
        self._service = service
        self._name = name
        self._version = version
        self._keep_alive_s = keep_alive_s
        self._model: ServedModel | None = None

    async def __aenter__(self) -> ServedModel:
        service = self._service
        if service.control_mode == "ondemand":
            model = await service.acquire(self._name, self._version, self._keep_alive_s)
        else:
            model = service.get(self._name, self._version)
        model.hold()  # no await since it was found: it cannot have gone in between
        self._model = model
        return model

    async def __aexit__(self, *exc: object) -> None:
        model, self._model = self._model, None
        if model is not None:
            model.release()
