"""Hugging Face text and token classifiers through transformers on torch (CPU; extra
`[transformers]`).

A folder as `save_pretrained` writes it — `config.json` whose `architectures` names a
`*ForSequenceClassification` or `*ForTokenClassification`, `*.safetensors`, the tokenizer's
files — is a classifier; its labels are config.json's `id2label`. Texts in (KServe
`text_input` BYTES, one per row; requests batched by the core's batcher, each batch padded to
its longest text, 32 texts per forward pass). Out, as transformers' own pipelines answer:

    text classification   label BYTES [-1] (the top label), score FP32 [-1] (its probability),
                          scores FP32 [-1, labels] (every label's, in id order): softmax, or
                          sigmoid for `multi_label_classification` and single-logit models
    token classification  entities BYTES [-1]: per text, the JSON list the
                          "token-classification" pipeline returns (entity, score, index, word,
                          start, end for each token not labelled O)

Parameters (all optional): `max_length` (tokens per text; default the tokenizer's limit, at
most max_position_embeddings), `intra_op_thread_count` (torch's threads; the advisor sets one
per physical core).
"""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

import numpy as np
import torch
import transformers

from modelyard.errors import InvalidArgument, ModelLoadError
from modelyard.runtimes import hf_runtime
from modelyard.runtimes.base import Arrays, Runtime, Signature, warn_unknown_parameters
from modelyard.runtimes.pytorch import thread_count
from modelyard.runtimes.sentence import texts_of
from modelyard.spec.config import TensorSpec
from modelyard.spec.generation import TEXT_INPUT

_BATCH = 32
_OWN_PARAMETERS = {"max_length", "intra_op_thread_count"}


class HFClassifierRuntime(Runtime):
    name: ClassVar[str] = "hf_classifier"
    inline_safe: ClassVar[bool] = True

    def load(self) -> None:
        folder = self.path if self.path.is_dir() else self.path.parent
        params = self.config.parameters
        warn_unknown_parameters(self.name, self.config.name, params, _OWN_PARAMETERS)
        found = hf_runtime(folder)
        if found is None or found[0] != self.name:
            raise ModelLoadError(
                f"model {self.config.name!r}: {folder}/config.json names no "
                "*ForSequenceClassification or *ForTokenClassification architecture"
            )
        self.tokens = found[1].endswith("ForTokenClassification")
        auto = (
            transformers.AutoModelForTokenClassification
            if self.tokens
            else transformers.AutoModelForSequenceClassification
        )
        try:
            self.tokenizer: Any = transformers.AutoTokenizer.from_pretrained(
                str(folder), local_files_only=True
            )
            self.model: Any = auto.from_pretrained(str(folder), local_files_only=True).eval()
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelLoadError(
                f"model {self.config.name!r}: transformers cannot load {folder}: {exc}"
            ) from exc
        config = self.model.config
        self.labels = [str(config.id2label[i]) for i in range(config.num_labels)]
        self.sigmoid = config.problem_type == "multi_label_classification" or len(self.labels) == 1
        limit = int(getattr(config, "max_position_embeddings", 0) or 512)
        try:
            self.max_length = min(int(params.get("max_length", 0)) or limit, limit)
        except ValueError as exc:
            raise ModelLoadError(f"parameter max_length must be a whole number: {exc}") from exc
        self.threads = thread_count(params, "intra_op_thread_count") or max(
            1, (os.cpu_count() or 1) // max(1, self.config.instance_count)
        )

    def signature(self) -> Signature:
        texts = [TensorSpec(TEXT_INPUT, "BYTES", [-1])]
        if self.tokens:
            return texts, [TensorSpec("entities", "BYTES", [-1])]
        return texts, [
            TensorSpec("label", "BYTES", [-1]),
            TensorSpec("score", "FP32", [-1]),
            TensorSpec("scores", "FP32", [-1, len(self.labels)]),
        ]

    def infer(self, inputs: Arrays) -> Arrays:
        texts = texts_of(inputs[TEXT_INPUT])
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # per OpenMP thread: this worker thread
        chunks = [texts[i : i + _BATCH] for i in range(0, len(texts), _BATCH)]
        if self.tokens:
            entities = [e for chunk in chunks for e in self._entities(chunk)]
            return {"entities": np.array(entities, dtype=object)}
        scores = np.concatenate([self._scores(chunk) for chunk in chunks])
        top = scores.argmax(axis=1)
        return {
            "label": np.array([self.labels[i].encode() for i in top], dtype=object),
            "score": scores[np.arange(len(top)), top],
            "scores": scores,
        }

    def unload(self) -> None:
        self.model = None

    # ---- the tasks -----------------------------------------------------------------------------

    def _forward(self, texts: list[str], **extra: Any) -> tuple[Any, np.ndarray]:
        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            **extra,
        )
        names = set(self.tokenizer.model_input_names)
        try:
            with torch.inference_mode():
                logits = self.model(**{k: v for k, v in encoded.items() if k in names}).logits
        except (RuntimeError, ValueError, IndexError) as exc:
            raise InvalidArgument(f"the model rejected the inputs: {exc}") from exc
        return encoded, logits.float().numpy()

    def _scores(self, texts: list[str]) -> np.ndarray:
        _, logits = self._forward(texts)
        if self.sigmoid:
            return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float32)
        return _softmax(logits)

    def _entities(self, texts: list[str]) -> list[bytes]:
        encoded, logits = self._forward(
            texts, return_offsets_mapping=True, return_special_tokens_mask=True
        )
        out = []
        for row in range(len(texts)):
            ids = encoded["input_ids"][row].tolist()
            special = encoded["special_tokens_mask"][row].tolist()
            offsets = encoded["offset_mapping"][row].tolist()
            probs = _softmax(logits[row])
            found = []
            for index, token in enumerate(ids):
                best = int(probs[index].argmax())
                if special[index] or self.labels[best] == "O":
                    continue  # padding is special too
                start, end = offsets[index]
                found.append(
                    {
                        "entity": self.labels[best],
                        "score": float(probs[index, best]),
                        "index": index,
                        "word": self.tokenizer.convert_ids_to_tokens(token),
                        "start": start,
                        "end": end,
                    }
                )
            out.append(json.dumps(found).encode())
        return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True), dtype=np.float32)
