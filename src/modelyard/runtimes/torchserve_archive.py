"""TorchServe model archives (`.mar`): a zip that `torch-model-archiver` writes, holding
`MAR-INF/MANIFEST.json`, the serialized model (TorchScript or an eager state dict with its
`model.py`), the handler and extra files.

Read without torch: the repository reads an archive's batching settings when it scans (its
`model-config.yaml`: TorchServe's batchSize and maxBatchDelay), the runtime extracts the
archive into a folder of its own before it loads the handler (TorchServe's `model_dir`).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelyard.errors import ModelLoadError

MANIFEST = "MAR-INF/MANIFEST.json"
#: TorchServe's defaults when neither the archive nor the registration says: one request per
#: batch, 100 ms to fill a larger one.
DEFAULT_BATCH_SIZE = 1
DEFAULT_MAX_BATCH_DELAY_MS = 100


@dataclass(frozen=True)
class Manifest:
    """What `MAR-INF/MANIFEST.json` says, as TorchServe's handlers read it (`raw` is the
    whole document: `context.manifest`)."""

    model_name: str
    version: str
    handler: str
    serialized_file: str = ""
    model_file: str = ""
    config_file: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Batching:
    """TorchServe's batch settings for one model (`batchSize`, `maxBatchDelay` in ms)."""

    batch_size: int = DEFAULT_BATCH_SIZE
    max_batch_delay_ms: int = DEFAULT_MAX_BATCH_DELAY_MS


def read_manifest(path: Path) -> Manifest:
    """The manifest of the archive at `path` (a `.mar` zip, or a folder it was unpacked to)."""
    raw = _read_json(path, MANIFEST)
    model = raw.get("model") if isinstance(raw, dict) else None
    if not isinstance(model, dict) or not model.get("handler"):
        raise ModelLoadError(f"{path}: {MANIFEST} names no model handler")
    return Manifest(
        model_name=str(model.get("modelName", path.stem)),
        version=str(model.get("modelVersion", "1.0")),
        handler=str(model["handler"]),
        serialized_file=str(model.get("serializedFile", "")),
        model_file=str(model.get("modelFile", "")),
        config_file=str(model.get("configFile", "")),
        raw=raw,
    )


def read_model_config(path: Path, manifest: Manifest) -> dict[str, Any]:
    """The archive's `model-config.yaml` (`context.model_yaml_config`), {} when it has none."""
    if not manifest.config_file:
        return {}
    text = _read_member(path, manifest.config_file).decode("utf-8", "replace")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelLoadError(f"{path}: {manifest.config_file} is not YAML: {exc}") from exc
    return data if isinstance(data, dict) else {}


def batching(path: Path) -> Batching:
    """The archive's batching settings (TorchServe's defaults when it sets none)."""
    config = read_model_config(path, read_manifest(path))
    return Batching(
        _positive(config.get("batchSize"), DEFAULT_BATCH_SIZE),
        _positive(config.get("maxBatchDelay"), DEFAULT_MAX_BATCH_DELAY_MS, allow_zero=True),
    )


def extract(path: Path, into: Path) -> None:
    """Unpack the archive into the folder `into` (TorchServe's model_dir); a member whose
    name would land outside it is refused."""
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder; serve the .mar file itself")
    root = into.resolve()
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not (root / member).resolve().is_relative_to(root):
                    raise ModelLoadError(f"{path}: member {member!r} points outside the archive")
            archive.extractall(root)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"{path} is not a readable model archive: {exc}") from exc


def _read_json(path: Path, member: str) -> Any:
    try:
        return json.loads(_read_member(path, member))
    except ValueError as exc:
        raise ModelLoadError(f"{path}: {member} is not JSON: {exc}") from exc


def _read_member(path: Path, member: str) -> bytes:
    try:
        if path.is_dir():
            return (path / member).read_bytes()
        with zipfile.ZipFile(path) as archive:
            return archive.read(member)
    except KeyError:
        raise ModelLoadError(f"{path} has no {member}; is it a TorchServe archive?") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"{path} is not a readable model archive: {exc}") from exc


def _positive(value: Any, default: int, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return value if value > 0 or (allow_zero and value == 0) else default
