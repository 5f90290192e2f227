"""Find models on disk. Three layouts, mixed freely in one folder:

    REPO/NAME/config.pbtxt + REPO/NAME/<version>/model.onnx     Triton layout
    REPO/NAME/model.yaml + files (or <version>/ folders)          simple layout
    REPO/NAME.onnx | .joblib | .skops | .ubj | .json | .txt     a bare file; its stem is the name
    REPO/NAME.xml + NAME.bin                                     a bare OpenVINO IR
    REPO/NAME.mar                                                 a TorchServe model archive
    REPO/NAME/config.json + *.safetensors + tokenizer files      a Hugging Face folder
    REPO/NAME.savedmodel/ (saved_model.pb + variables/)          a TensorFlow SavedModel

A Hugging Face folder (what `save_pretrained` writes) is served by the runtime its config.json's
`architectures` call for (`runtimes.hf_runtime`): a `*ForCausalLM` by transformers (a text
generator), a `*ForSequenceClassification` / `*ForTokenClassification` by hf_classifier, a bare
encoder (`BertModel`...) or a sentence-transformers folder by sentence (embeddings), with or
without a `model.yaml` beside it; a `model.yaml` or `config.pbtxt` naming a runtime wins.

A TensorFlow SavedModel is a folder, not a file: a folder holding `saved_model.pb` is one
model (a bare `NAME.savedmodel/`, or any folder with the file); in a version folder it is
Triton's `model.savedmodel/` or the version folder itself (OVMS's layout). Its artifact, as a
version's file, is that `saved_model.pb`.

A folder with an OVMS `config.json` (`model_config_list`) is read as OVMS reads it instead: its
models and pipelines are those the file lists (`repository/ovms.py`). A pipeline (an ensemble,
a `model.yaml` `pipeline:`) has no file of its own: its versions are its (empty) folders.

Nothing is loaded here; a model whose config does not read is reported with its error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from modelyard.errors import ModelyardError
from modelyard.repository.config import from_yaml, parse_pbtxt
from modelyard.runtimes import (
    RUNTIMES,
    hf_runtime,
    runtime_for_file,
    runtime_suffixes,
    savedmodel_in,
    torchserve_archive,
)
from modelyard.spec.config import DynamicBatching, ModelConfig

log = logging.getLogger("modelyard.repository")


@dataclass
class ModelSource:
    """A model as found on disk: its config as written and its version artifacts."""

    name: str
    path: Path
    layout: str  # "triton" | "simple" | "file"
    config: ModelConfig
    versions: dict[int, Path] = field(default_factory=dict)
    error: str | None = None
    #: The OVMS config.json that lists this model (None: found by its own files).
    listed_in: Path | None = None


def scan(roots: list[Path]) -> dict[str, ModelSource]:
    """Every model under the given repository folders (the first of two same names wins)."""
    found: dict[str, ModelSource] = {}
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"model repository {root} is not a folder")
        for source in _sources(root):
            if source.name in found:
                log.warning(
                    "model %r in %s is shadowed by %s",
                    source.name,
                    source.path,
                    found[source.name].path,
                )
                continue
            found[source.name] = source
    return found


def _sources(root: Path) -> Iterator[ModelSource]:
    """The models of one repository folder: those an OVMS `config.json` lists when the folder
    has one, else every entry that is a model."""
    from modelyard.repository.ovms import is_ovms_config, read_ovms

    if is_ovms_config(root / "config.json"):
        yield from read_ovms(root / "config.json")
        return
    if any((root / name).is_file() for name in ("config.pbtxt", "model.yaml", "saved_model.pb")):
        # one model's folder given as the repository (`modelyard serve repo/mlp`): that model
        source = read_entry(root)
        if source is not None:
            yield source
        return
    for entry in sorted(root.iterdir()):
        source = read_entry(entry)
        if source is not None:
            yield source


def reread(source: ModelSource) -> ModelSource:
    """The model as it is on disk now (before a load), or as it was if it is gone."""
    if source.listed_in is not None:
        from modelyard.repository.ovms import read_ovms

        if not source.listed_in.exists():
            return source
        again = {s.name: s for s in read_ovms(source.listed_in)}
        return again.get(source.name, source)
    if not source.path.exists():
        return source
    return read_entry(source.path) or source


def read_entry(entry: Path) -> ModelSource | None:
    """The model at one repository entry, or None if the entry is not a model."""
    if entry.name.startswith((".", "_")):
        return None
    try:
        if entry.is_dir():
            return _read_folder(entry) or _bare_savedmodel(entry)
        return _read_file(entry)
    except (ModelyardError, OSError, yaml.YAMLError) as exc:
        name = entry.name if entry.is_dir() else entry.stem
        return ModelSource(name, entry, "triton", ModelConfig(name), error=str(exc))


def _read_file(path: Path) -> ModelSource | None:
    runtime = runtime_for_file(path)
    if runtime is None or runtime == "python" or not _sniff(path, runtime):
        return None
    config = ModelConfig(path.stem, runtime=runtime)
    config.reasons["runtime"] = f"file suffix {path.suffix}"
    if runtime == "torchserve":
        _archive_batching(config, path)
    return ModelSource(path.stem, path, "file", config, versions={1: path})


def _archive_batching(config: ModelConfig, path: Path) -> None:
    """A TorchServe archive's batchSize and maxBatchDelay (its model-config.yaml, else
    TorchServe's defaults) as the batcher's max_batch_size and queue delay."""
    found = torchserve_archive.batching(path)
    config.max_batch_size = found.batch_size
    config.dynamic_batching = DynamicBatching(max_queue_delay_us=found.max_batch_delay_ms * 1000)
    reason = f"TorchServe's batchSize / maxBatchDelay for {path.name}"
    config.reasons["max_batch_size"] = config.reasons["dynamic_batching"] = reason


def _sniff(path: Path, runtime: str) -> bool:
    """Bare .json/.txt/.xml files are models only when they look like XGBoost / LightGBM
    models or an OpenVINO IR (whose root element is `<net`)."""
    if path.suffix.lower() == ".json":
        with path.open("rb") as f:
            return b'"learner"' in f.read(4096)
    if path.suffix.lower() == ".txt":
        with path.open("rb") as f:
            return f.read(5) == b"tree\n"
    if path.suffix.lower() == ".xml":
        with path.open("rb") as f:
            return b"<net " in f.read(4096)
    return True


def _read_folder(folder: Path) -> ModelSource | None:
    pbtxt, yml = folder / "config.pbtxt", folder / "model.yaml"
    if pbtxt.exists():
        config, layout = parse_pbtxt(pbtxt.read_text(), folder.name), "triton"
    elif yml.exists():
        config, layout = from_yaml(yaml.safe_load(yml.read_text()), folder.name), "simple"
    elif any(p.is_dir() and p.name.isdigit() for p in folder.iterdir()):
        config, layout = ModelConfig(folder.name), "triton"
    elif hf_runtime(folder) is not None:
        config, layout = ModelConfig(folder.name), "simple"
    else:
        return None
    version_dirs = {int(p.name): p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()}
    if not version_dirs and layout == "simple":
        version_dirs = {1: folder}
    if config.pipeline is not None:  # a pipeline's versions hold no files of their own
        return ModelSource(folder.name, folder, layout, config, version_dirs or {1: folder})
    if config.runtime is None and version_dirs:
        _hf_runtime(config, version_dirs[max(version_dirs)])
        _savedmodel_runtime(config, version_dirs[max(version_dirs)])
    versions = {v: _artifact(d, config) for v, d in version_dirs.items()}
    if config.runtime is None and versions:
        latest = versions[max(versions)]
        config.runtime = runtime_for_file(latest)
        config.reasons["runtime"] = f"file {latest.name}"
    if config.runtime is not None and config.runtime not in RUNTIMES:
        raise ModelyardError(
            f"model {folder.name!r} asks for runtime {config.runtime!r}; "
            f"known runtimes: {', '.join(RUNTIMES)}"
        )
    return ModelSource(folder.name, folder, layout, config, versions)


def _hf_runtime(config: ModelConfig, version_dir: Path) -> None:
    """A Hugging Face folder is the runtime's its architecture calls for (a GGUF build of the
    same model would be llamacpp's: a folder holding both must name its runtime)."""
    found = hf_runtime(version_dir)
    if found is None or any(version_dir.glob("*.gguf")):
        return
    config.runtime, architecture = found
    config.reasons["runtime"] = (
        f"a Hugging Face folder whose config.json names {architecture} ({config.runtime})"
    )


def _bare_savedmodel(folder: Path) -> ModelSource | None:
    """A folder that is a SavedModel (`NAME.savedmodel/` serves as NAME), else None."""
    if not (folder / "saved_model.pb").is_file():
        return None
    name = folder.stem if folder.suffix == ".savedmodel" else folder.name
    config = ModelConfig(name, runtime="tensorflow")
    config.reasons["runtime"] = "a TensorFlow SavedModel folder (saved_model.pb)"
    return ModelSource(name, folder, "file", config, versions={1: folder / "saved_model.pb"})


def _savedmodel_runtime(config: ModelConfig, version_dir: Path) -> None:
    if config.runtime is None and savedmodel_in(version_dir) is not None:
        config.runtime = "tensorflow"
        config.reasons["runtime"] = f"a TensorFlow SavedModel in {version_dir.name}/"


def _artifact(version_dir: Path, config: ModelConfig) -> Path:
    """The model file in a version folder: the configured name, the runtime's default name,
    or the single file with a known suffix."""
    if config.runtime == "tensorflow":
        return _savedmodel_artifact(version_dir, config)
    if config.default_model_filename:
        return version_dir / config.default_model_filename
    info = RUNTIMES.get(config.runtime or "")
    if info is not None and (version_dir / info.default_filename).exists():
        return version_dir / info.default_filename
    suffixes = runtime_suffixes(config.runtime)
    candidates = sorted(
        p
        for p in version_dir.iterdir()
        if p.is_file() and p.suffix.lower() in suffixes and p.name != "model.yaml"
    )
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelyardError(
            f"no model file in {version_dir} (known suffixes: {', '.join(suffixes)})"
        )
    names = ", ".join(p.name for p in candidates)
    raise ModelyardError(
        f"several model files in {version_dir} ({names}); name one with "
        "default_model_filename (config.pbtxt) or file (model.yaml)"
    )


def _savedmodel_artifact(version_dir: Path, config: ModelConfig) -> Path:
    """A SavedModel's saved_model.pb: in the folder `default_model_filename` names (Triton's
    `model.savedmodel` by default), else the version folder's own SavedModel."""
    if config.default_model_filename:
        named = version_dir / config.default_model_filename
        return named if named.suffix == ".pb" else named / "saved_model.pb"
    found = savedmodel_in(version_dir)
    if found is None:
        raise ModelyardError(
            f"no TensorFlow SavedModel in {version_dir} (model.savedmodel/saved_model.pb, or "
            "saved_model.pb and variables/ in the version folder)"
        )
    return found
