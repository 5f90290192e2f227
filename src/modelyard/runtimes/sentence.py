"""Sentence embeddings / feature extraction from a Hugging Face encoder folder (a
sentence-transformers folder such as all-MiniLM-L6-v2, or `save_pretrained`'s folder of a bare
`BertModel`, `XLMRobertaModel`...): the encoder runs on onnxruntime (extra `[embeddings]`),
on an ONNX graph exported once from the folder by transformers (runtimes/hf_export.py; extra
`[transformers]` for that first load only); the tokenizer is Hugging Face's `tokenizers`.
onnxruntime was measured faster than transformers on torch at batch 1 and 32
(benchmarks/embeddings.py, docs/benchmarks.md).

The folder: `config.json`, `model.safetensors`, `tokenizer.json`, and for sentence-transformers
`modules.json` (a Normalize module means unit vectors), `1_Pooling/config.json` (mean, CLS or
max pooling), `sentence_bert_config.json` (max_seq_length). A bare encoder is mean-pooled and
normalised, as OpenAI's embeddings are. Parameters (model.yaml / config.pbtxt), all optional:

    pooling                 mean | cls | max (default: the folder's, else mean)
    normalize               true | false (default: the folder's Normalize module; true without one)
    max_seq_length          tokens one text may hold (default: the folder's, at most the model's)
    intra_op_thread_count   onnxruntime's threads (the advisor sets one per physical core)

Texts in (KServe `text_input` BYTES, one per row; requests batched by the core's batcher), one
vector per text out (`embedding`); a batch is padded to its longest text, 32 texts per run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelyard.errors import InvalidArgument, ModelLoadError
from modelyard.runtimes.base import Arrays, Runtime, Signature, TextModel, warn_unknown_parameters
from modelyard.runtimes.hf_export import INPUTS, OUTPUT, exported_graph
from modelyard.spec.generation import TEXT_INPUT, embedding_signature

_BATCH = 32
_OWN_PARAMETERS = {
    "pooling",
    "normalize",
    "max_seq_length",
    "intra_op_thread_count",
    "inter_op_thread_count",
}
_POOLINGS = ("mean", "cls", "max")


class SentenceRuntime(Runtime, TextModel):
    name: ClassVar[str] = "sentence"
    inline_safe: ClassVar[bool] = True

    def load(self) -> None:
        folder = self.path.parent
        params = self.config.parameters
        warn_unknown_parameters(self.name, self.config.name, params, _OWN_PARAMETERS)
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelLoadError(
                f"runtime 'sentence' is not installed ({exc.name}): "
                "pip install 'modelyard[embeddings]'"
            ) from exc
        try:
            model_config = _json(folder / "config.json")
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except (OSError, ValueError, Exception) as exc:
            raise ModelLoadError(
                f"model {self.config.name!r}: not a Hugging Face encoder folder ({exc})"
            ) from exc
        self.session = _session(ort, exported_graph(folder, self.path), params)
        self.feeds = [i.name for i in self.session.get_inputs() if i.name in INPUTS]
        self.width = int(model_config["hidden_size"])
        settings = read_settings(folder, params)
        self.n_ctx = min(settings.max_seq_length, int(model_config["max_position_embeddings"]))
        self.tokenizer.enable_truncation(self.n_ctx)
        self.tokenizer.no_padding()  # tokenizer.json may pad to a fixed length; batches pad here
        self.pooling, self.normalize = settings.pooling, settings.normalize

    def signature(self) -> Signature:
        return embedding_signature(self.width)

    def infer(self, inputs: Arrays) -> Arrays:
        texts = texts_of(inputs[TEXT_INPUT])
        vectors = [self._encode(texts[i : i + _BATCH])[0] for i in range(0, len(texts), _BATCH)]
        return {"embedding": np.concatenate(vectors).astype(np.float32, copy=False)}

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
        out: list[list[float]] = []
        tokens = 0
        for start in range(0, len(texts), _BATCH):
            vectors, read = self._encode(texts[start : start + _BATCH])
            out += vectors.astype(np.float64).tolist()
            tokens += read
        return out, tokens

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
            out += self._run(ids, mask, np.zeros_like(ids)).astype(np.float64).tolist()
            tokens += int(mask.sum())
        return out, tokens

    def details(self) -> dict[str, Any]:
        return {
            "format": "safetensors",
            "family": "bert",
            "embedding_length": self.width,
            "context_length": self.n_ctx,
            "size": self.path.stat().st_size,
        }

    # ---- the encoder ---------------------------------------------------------------------------

    def _encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Pooled vectors of up to _BATCH texts, and the tokens they read."""
        encodings = self.tokenizer.encode_batch(texts)
        ids, mask = _pad([e.ids for e in encodings])
        types, _ = _pad([e.type_ids for e in encodings])
        return self._run(ids, mask, types), int(mask.sum())

    def _run(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        given = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        try:
            (hidden,) = self.session.run([OUTPUT], {n: given[n] for n in self.feeds})
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise InvalidArgument(f"the encoder rejected the inputs: {exc}") from exc
        vectors = pool(np.asarray(hidden), mask, self.pooling)
        if self.normalize:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors


def texts_of(array: np.ndarray) -> list[str]:
    """The texts of a BYTES tensor, one per element; bytes that are not UTF-8 are a client's
    error."""
    try:
        return [t.decode() if isinstance(t, bytes) else str(t) for t in array.reshape(-1)]
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{TEXT_INPUT} must be UTF-8 text: {exc}") from exc


def pool(hidden: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
    """One vector per row of `hidden` [batch, tokens, width] over the tokens `mask` keeps."""
    if how == "cls":
        return np.array(hidden[:, 0, :], dtype=np.float32)
    keep = mask[:, :, None].astype(np.float32)
    if how == "max":
        return np.asarray(np.where(keep > 0, hidden, -np.inf).max(axis=1), dtype=np.float32)
    return np.asarray((hidden * keep).sum(axis=1) / np.maximum(keep.sum(axis=1), 1e-9))


def _session(ort: Any, graph: Path, params: dict[str, str]) -> Any:
    options = ort.SessionOptions()
    try:
        options.intra_op_num_threads = int(params.get("intra_op_thread_count", 0))
        options.inter_op_num_threads = int(params.get("inter_op_thread_count", 0))
    except ValueError as exc:
        raise ModelLoadError(f"a thread count must be a whole number: {exc}") from exc
    options.log_severity_level = 3
    # a server waits on requests: let onnxruntime's threads sleep between runs (runtimes/onnx.py)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelLoadError(f"onnxruntime cannot load {graph}: {exc}") from exc


def _pad(batch: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    length = max(len(ids) for ids in batch)
    ids = np.zeros((len(batch), length), dtype=np.int64)
    mask = np.zeros((len(batch), length), dtype=np.int64)
    for row, tokens in enumerate(batch):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return ids, mask


@dataclass
class Settings:
    """Pooling, normalisation and the longest text: the parameters', else the folder's."""

    pooling: str
    normalize: bool
    max_seq_length: int


def read_settings(folder: Path, params: dict[str, str]) -> Settings:
    pooling_file = folder / "1_Pooling" / "config.json"
    pooling = _json(pooling_file) if pooling_file.exists() else {}
    modules = _json_list(folder / "modules.json")
    bert = folder / "sentence_bert_config.json"
    found = Settings(
        "cls" if pooling.get("pooling_mode_cls_token") else "mean",
        any(str(m.get("type", "")).endswith("Normalize") for m in modules) or not modules,
        int(_json(bert).get("max_seq_length", 512)) if bert.exists() else 512,
    )
    if pooling.get("pooling_mode_max_tokens"):
        found.pooling = "max"
    found.pooling = params.get("pooling", found.pooling).strip().lower()
    if found.pooling not in _POOLINGS:
        raise ModelLoadError(f"parameter pooling must be one of {', '.join(_POOLINGS)}")
    if "normalize" in params:
        found.normalize = params["normalize"].strip().lower() in ("1", "true", "yes", "on")
    if "max_seq_length" in params:
        try:
            found.max_seq_length = int(params["max_seq_length"])
        except ValueError as exc:
            raise ModelLoadError(f"parameter max_seq_length: {exc}") from exc
    return found


def _json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _json_list(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else []
