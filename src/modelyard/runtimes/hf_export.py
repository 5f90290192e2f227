"""A Hugging Face encoder folder exported once to an ONNX graph for onnxruntime (the `sentence`
runtime's encoder), with torch and transformers (extra `[transformers]`).

The export runs in a child process (`python -m modelyard.runtimes.hf_export FOLDER OUT`): torch
(~260 MiB) never enters the server's memory, and the exporter's changes to the model it
traces (seen with transformers 5: the model answers differently after an export) die with it.
The graph is cached in the user's cache (`~/.cache/modelyard/onnx/`), named after what it was
made from (config.json, and the weights file's real path, size and mtime): a changed model is
exported again, and folders of links to the same files (the demo's) share one export.

Graph: inputs `input_ids`, `attention_mask` (and `token_type_ids` when the tokenizer makes
them), INT64 [batch, tokens]; output `last_hidden_state` FP32 [batch, tokens, width]. Eager
attention: the SDPA path's masks do not trace.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from modelyard.errors import ModelLoadError

#: onnxruntime 1.17+ reads it; every BERT-family operator is in it.
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "last_hidden_state"
_TIMEOUT_S = 600


def exported_graph(folder: Path, weights: Path) -> Path:
    """The ONNX graph of the encoder in `folder`: one it ships (`onnx/model.onnx`, as
    sentence-transformers' own repositories do), else the cached export, else a new export."""
    shipped = folder / "onnx" / "model.onnx"
    if shipped.is_file():
        return shipped
    cached = _user_cache() / f"encoder-{_fingerprint(folder, weights)}.onnx"
    if cached.is_file():
        return cached
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelLoadError(f"cannot make the cache of exported graphs: {exc}") from exc
    return _export(folder, cached)


def _fingerprint(folder: Path, weights: Path) -> str:
    """What the graph depends on: the model's config and its weights file (where it really
    is, its size and mtime), so a changed model is exported again."""
    real = weights.resolve()
    stat = real.stat()
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    digest.update(f"{real}:{stat.st_size}:{stat.st_mtime_ns}:{OPSET}".encode())
    return digest.hexdigest()[:20]


def _user_cache() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "modelyard" / "onnx"


def _export(folder: Path, target: Path) -> Path:
    partial = target.with_suffix(f".{os.getpid()}.partial")
    command = [sys.executable, "-m", "modelyard.runtimes.hf_export", str(folder), str(partial)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ModelLoadError(f"exporting {folder} to ONNX took over {_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ModelLoadError(
            f"{folder} has no ONNX graph and exporting one failed ({last}); exporting needs "
            "torch and transformers: pip install 'modelyard[transformers]'"
        )
    partial.replace(target)
    return target


def export(folder: Path, target: Path) -> None:
    """Trace the encoder in `folder` into an ONNX graph at `target` (in the child process)."""
    import warnings

    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(
        str(folder), local_files_only=True, attn_implementation="eager"
    ).eval()
    example = tokenizer(["an example", "a longer example sentence"], padding=True)
    names = [n for n in INPUTS if n in example]
    args = tuple(torch.tensor(example[n]) for n in names)
    dims = {n: {0: "batch", 1: "tokens"} for n in [*names, OUTPUT]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's warnings about Python conditions
        torch.onnx.export(
            _encoder(model, names),
            args,
            str(target),
            input_names=names,
            output_names=[OUTPUT],
            dynamic_axes=dims,
            opset_version=OPSET,
            dynamo=False,
        )


def _encoder(model: Any, names: list[str]) -> Any:
    """The model called with named inputs (transformers 5's forward takes no positional
    token_type_ids), returning its last hidden state only."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.model(**dict(zip(names, tensors, strict=True)))[0]
            return out

    return Encoder()


if __name__ == "__main__":
    export(Path(sys.argv[1]), Path(sys.argv[2]))
