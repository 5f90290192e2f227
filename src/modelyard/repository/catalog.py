"""What model listings show without loading a model: the files, their size and content
digest, what the artifact's header tells (format, family, parameters, quantization, context),
and for loaded models what they occupy and when they unload.

Reading headers and hashing files is blocking work: call `describe` on a worker thread.
Results are cached per file (path, size, modification time), so a listing of large models
costs their hashing once.
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.errors import ModelyardError
from modelyard.repository.scan import ModelSource

#: The task of a model, as listings name its capabilities (every text generator calls tools:
#: in its template's own format, or the generic one).
CAPABILITIES = {
    "text-generation": ["completion", "tools"],
    "embedding": ["embedding"],
    "rerank": ["rerank"],
}


@dataclass
class ModelCard:
    name: str
    path: Path  # the repository entry: a file or a folder
    artifact: Path | None  # the file served (the highest version's)
    runtime: str | None
    size: int = 0  # bytes of every file of the entry
    modified: float = 0.0  # epoch seconds of the newest file
    digest: str = ""  # sha256 (hex) of the artifact
    format: str = ""
    task: str = "unknown"
    family: str = ""
    parameters: int | None = None
    quantization: str = ""
    context_length: int | None = None
    #: Plain metadata values from the artifact's header (GGUF keys), long arrays as None.
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The `parameters` of the model's config (model.yaml / config.pbtxt).
    config_parameters: dict[str, str] = field(default_factory=dict)
    error: str = ""

    @property
    def capabilities(self) -> list[str]:
        return CAPABILITIES.get(self.task, ["predict"])

    @property
    def parameter_size(self) -> str:
        """The parameter count as people write it (270.4M), "" when unknown."""
        from modelyard.advisor.artifact import human_count

        return human_count(self.parameters) if self.parameters else ""

    @property
    def chat_template(self) -> str:
        """The Jinja chat template the model will use ("" when none is written down)."""
        named = self.config_parameters.get("chat_template", "")
        return named or str(self.metadata.get("tokenizer.chat_template") or "")


def describe(source: ModelSource) -> ModelCard:
    """The card of one model (blocking: reads headers, hashes the artifact)."""
    artifact = source.versions[max(source.versions)] if source.versions else None
    card = ModelCard(
        source.name,
        source.path,
        artifact,
        source.config.runtime,
        config_parameters=dict(source.config.parameters),
    )
    card.size, card.modified = _footprint(source.path)
    if artifact is None or not artifact.is_file():
        card.error = source.error or "no model file"
        return card
    stat = artifact.stat()
    card.digest = _digest(artifact, stat.st_size, stat.st_mtime_ns)
    try:
        _fill(card, *_inspect(artifact, stat.st_size, stat.st_mtime_ns))
    except (ModelyardError, OSError, ValueError) as exc:
        card.error = str(exc)
    return card


def is_text_model(source: ModelSource) -> bool:
    """Whether the model's runtime reads and writes text (a language or embedding model)."""
    from modelyard.runtimes import TextModel, runtime_class

    if source.config.runtime is None:
        return False
    try:
        return issubclass(runtime_class(source.config.runtime), TextModel)
    except ModelyardError:
        return False


def _fill(card: ModelCard, info: Any, metadata: dict[str, Any]) -> None:
    card.format = info.format
    card.task = info.task
    card.family = info.architecture or ""
    card.parameters = info.parameters
    card.quantization = info.quantization or ""
    card.context_length = info.context_length
    card.metadata = metadata
    flag = card.config_parameters.get("embedding", "").strip().lower()
    if flag in ("1", "true", "yes", "on"):  # the config makes it an embedding model
        card.task = "embedding"
    elif flag in ("0", "false", "no", "off") and card.task == "embedding":
        card.task = "text-generation"


@functools.lru_cache(maxsize=256)
def _inspect(path: Path, size: int, mtime_ns: int) -> tuple[Any, dict[str, Any]]:
    from modelyard.advisor.gguf_header import ArrayLength, is_gguf, read_header
    from modelyard.advisor.inspect import inspect_artifact

    info = inspect_artifact(path)
    metadata: dict[str, Any] = {}
    if is_gguf(path):
        for key, value in read_header(path).metadata.items():
            metadata[key] = None if isinstance(value, ArrayLength) else value
        metadata.setdefault("general.parameter_count", info.parameters)
    return info, metadata


def file_digest(path: Path) -> str:
    """The sha256 (hex) of a file, computed once per size and modification time."""
    stat = path.stat()
    return _digest(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _digest(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _footprint(path: Path) -> tuple[int, float]:
    if path.is_file():
        stat = path.stat()
        return stat.st_size, stat.st_mtime
    files = [p for p in path.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    newest = max([p.stat().st_mtime for p in files], default=path.stat().st_mtime)
    return size, newest


# ---- residency -----------------------------------------------------------------------------


def expires_at(last_used: float, busy: bool, keep_alive_s: float | None) -> float | None:
    """Wall-clock time (epoch seconds) a loaded model unloads if left idle; None: never.
    `last_used` is a `time.monotonic()` reading; a busy model counts from now."""
    if keep_alive_s is None or keep_alive_s < 0:
        return None
    idle_since = time.monotonic() if busy else last_used
    return time.time() - (time.monotonic() - idle_since) + keep_alive_s
