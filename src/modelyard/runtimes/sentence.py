"""Sentence embeddings from a sentence-transformers BERT folder (all-MiniLM-L6-v2 and kin)
without torch: the encoder runs in numpy on the safetensors weights, the tokenizer is
Hugging Face's `tokenizers` (extra `[embeddings]`).

The folder is what sentence-transformers saves: `config.json` (BERT sizes),
`model.safetensors`, `tokenizer.json`, `modules.json` (a Normalize module means unit vectors),
`1_Pooling/config.json` (mean or CLS pooling), `sentence_bert_config.json` (max_seq_length).
A `model.yaml` with `runtime: sentence` next to them makes it a model.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelyard.errors import InvalidArgument, ModelLoadError
from modelyard.runtimes.base import Arrays, Runtime, Signature, TextModel
from modelyard.spec.generation import TEXT_INPUT, embedding_signature

_BATCH = 32


class SentenceRuntime(Runtime, TextModel):
    name: ClassVar[str] = "sentence"

    def load(self) -> None:
        folder = self.path.parent
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer

            self.bert = Bert(_json(folder / "config.json"), load_file(str(self.path)))
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except (OSError, KeyError, ValueError, Exception) as exc:
            raise ModelLoadError(
                f"model {self.config.name!r}: not a sentence-transformers BERT folder ({exc})"
            ) from exc
        settings = _settings(folder)
        self.n_ctx = min(settings["max_seq_length"], self.bert.max_positions)
        self.tokenizer.enable_truncation(self.n_ctx)
        self.tokenizer.no_padding()  # tokenizer.json may pad to a fixed length; batches pad here
        self.pooling = settings["pooling"]
        self.normalize = settings["normalize"]
        self._lock = threading.Lock()

    def signature(self) -> Signature:
        return embedding_signature(self.bert.width)

    def infer(self, inputs: Arrays) -> Arrays:
        texts = [
            t.decode() if isinstance(t, bytes) else str(t) for t in inputs[TEXT_INPUT].reshape(-1)
        ]
        vectors, _ = self.embed(texts)
        return {"embedding": np.array(vectors, dtype=np.float32)}

    # ---- TextModel ---------------------------------------------------------------------------

    @property
    def embedding(self) -> bool:
        return True

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    def tokenize(self, text: str, special: bool = True, add_special: bool = True) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special).ids)

    def detokenize(self, tokens: list[int]) -> str:
        return str(self.tokenizer.decode(tokens, skip_special_tokens=False))

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        if not texts:
            raise InvalidArgument("nothing to embed")
        return self.embed_tokens([e.ids for e in self.tokenizer.encode_batch(texts)])

    def embed_tokens(self, inputs: list[list[int]]) -> tuple[list[list[float]], int]:
        if not inputs:
            raise InvalidArgument("nothing to embed")
        too_long = max(len(t) for t in inputs)
        if too_long > self.n_ctx:
            raise InvalidArgument(f"an input has {too_long} tokens; this model takes {self.n_ctx}")
        out: list[list[float]] = []
        tokens = 0
        for start in range(0, len(inputs), _BATCH):
            ids, mask = _pad(inputs[start : start + _BATCH])
            tokens += int(mask.sum())
            with self._lock:  # numpy releases the GIL in matmuls; one batch at a time
                vectors = self.bert.embed(ids, mask, self.pooling)
            if self.normalize:
                vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            out += vectors.astype(np.float64).tolist()
        return out, tokens

    def details(self) -> dict[str, Any]:
        return {
            "format": "safetensors",
            "family": "bert",
            "embedding_length": self.bert.width,
            "context_length": self.n_ctx,
            "size": self.path.stat().st_size,
        }


class Bert:
    """A BERT encoder in numpy (float32): embeddings, N post-norm layers of attention and GELU
    feed-forward, then pooling over the tokens the mask keeps."""

    def __init__(self, config: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        self.w = {k.removeprefix("bert."): v for k, v in weights.items()}
        for key in [
            k
            for k in self.w
            if k.startswith("encoder.") and k.endswith(".weight") and self.w[k].ndim == 2
        ]:
            self.w[key] = np.ascontiguousarray(self.w[key].T)  # x @ W.T -> one BLAS call
        self.width = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_positions = int(config.get("max_position_embeddings", 512))

    def embed(self, ids: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
        x = self._embeddings(ids)
        bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        for i in range(self.layers):
            x = self._layer(x, bias, f"encoder.layer.{i}.")
        if pooling == "cls":
            return np.asarray(x[:, 0, :])
        keep = mask[:, :, None].astype(np.float32)
        return np.asarray((x * keep).sum(axis=1) / np.maximum(keep.sum(axis=1), 1e-9))

    def _embeddings(self, ids: np.ndarray) -> np.ndarray:
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][: ids.shape[1]][None]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        return self._norm(x, "embeddings.LayerNorm.")

    def _layer(self, x: np.ndarray, bias: np.ndarray, p: str) -> np.ndarray:
        attended = self._attention(x, bias, p + "attention.")
        x = self._norm(
            x + self._dense(attended, p + "attention.output.dense."),
            p + "attention.output.LayerNorm.",
        )
        hidden = _gelu(self._dense(x, p + "intermediate.dense."))
        return self._norm(x + self._dense(hidden, p + "output.dense."), p + "output.LayerNorm.")

    def _attention(self, x: np.ndarray, bias: np.ndarray, p: str) -> np.ndarray:
        batch, length, _ = x.shape
        size = self.width // self.heads

        def split(name: str) -> np.ndarray:
            y = self._dense(x, f"{p}self.{name}.")
            return y.reshape(batch, length, self.heads, size).transpose(0, 2, 1, 3)

        q, k, v = split("query"), split("key"), split("value")
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(size)) + bias
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        return np.asarray((probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, self.width))

    def _dense(self, x: np.ndarray, p: str) -> np.ndarray:
        weight = self.w[p + "weight"]
        flat = x.reshape(-1, x.shape[-1]) @ weight + self.w[p + "bias"]
        return np.asarray(flat.reshape(*x.shape[:-1], weight.shape[1]))

    def _norm(self, x: np.ndarray, p: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return np.asarray(
            (x - mean) / np.sqrt(var + self.eps) * self.w[p + "weight"] + self.w[p + "bias"]
        )


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU with erf (as BERT uses), erf from Abramowitz & Stegun 7.1.26 (error < 1.5e-7)."""
    z = np.abs(x) / np.float32(np.sqrt(2.0))
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return np.asarray(0.5 * x * (1.0 + erf), dtype=np.float32)


def _pad(batch: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    length = max(len(ids) for ids in batch)
    ids = np.zeros((len(batch), length), dtype=np.int64)
    mask = np.zeros((len(batch), length), dtype=np.int64)
    for row, tokens in enumerate(batch):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return ids, mask


def _json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _settings(folder: Path) -> dict[str, Any]:
    pooling_file = folder / "1_Pooling" / "config.json"
    pooling = _json(pooling_file) if pooling_file.exists() else {}
    modules = _json_list(folder / "modules.json")
    bert = folder / "sentence_bert_config.json"
    return {
        "pooling": "cls" if pooling.get("pooling_mode_cls_token") else "mean",
        "normalize": any(str(m.get("type", "")).endswith("Normalize") for m in modules),
        "max_seq_length": int(_json(bert).get("max_seq_length", 512)) if bert.exists() else 512,
    }


def _json_list(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else []
