"""Find models on disk. Three layouts, mixed freely in one folder:

    REPO/NAME/config.pbtxt + REPO/NAME/<version>/model.onnx     Triton layout
    REPO/NAME/model.yaml + files (or <version>/ folders)          simple layout
    REPO/NAME.onnx | .joblib | .skops | .ubj | .json | .txt     a bare file; its stem is the name
    REPO/NAME.xml + NAME.bin                                     a bare OpenVINO IR
    REPO/NAME/config.json + *.safetensors + tokenizer files      a Hugging Face causal LM

A Hugging Face folder (what `save_pretrained` writes) whose config.json names a `*ForCausalLM`
architecture is a text generator served by the transformers runtime, with or without a
`model.yaml` beside it; a `model.yaml` or `config.pbtxt` naming another runtime wins.

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
from modelyard.runtimes import RUNTIMES, hf_causal_lm, runtime_for_file, runtime_suffixes
from modelyard.spec.config import ModelConfig

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
    if (root / "config.pbtxt").is_file() or (root / "model.yaml").is_file():
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
            return _read_folder(entry)
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
    return ModelSource(path.stem, path, "file", config, versions={1: path})


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
    elif hf_causal_lm(folder) is not None:
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
    """A Hugging Face causal-LM folder is the transformers runtime's (a GGUF build of the same
    model would be llamacpp's: a folder holding both must name its runtime)."""
    architecture = hf_causal_lm(version_dir)
    if architecture is None or any(version_dir.glob("*.gguf")):
        return
    config.runtime = "transformers"
    config.reasons["runtime"] = (
        f"a Hugging Face folder whose config.json names {architecture} (transformers)"
    )


def _artifact(version_dir: Path, config: ModelConfig) -> Path:
    """The model file in a version folder: the configured name, the runtime's default name,
    or the single file with a known suffix."""
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
