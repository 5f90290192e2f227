"""Sentence embeddings from a llama.cpp context made with `embeddings = true` and pooling:
several texts per decode (one sequence each), L2-normalised as OpenAI's are."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from modelyard.errors import Internal
from modelyard.runtimes.llamacpp_lib import lc


class Embedder:
    def __init__(self, ctx: Any, n_embd: int, n_seq: int, n_batch: int) -> None:
        self.ctx = ctx
        self.n_embd = n_embd
        self.n_seq = n_seq
        self.n_batch = n_batch
        self._lock = threading.Lock()
        self._batch = lc.llama_batch_init(n_batch, 0, 1)

    def embed(self, tokenized: list[list[int]]) -> list[list[float]]:
        out: list[list[float]] = []
        with self._lock:
            for group in self._groups(tokenized):
                out += self._run(group)
        return out

    def _groups(self, tokenized: list[list[int]]) -> list[list[list[int]]]:
        """Texts packed into decodes of at most n_seq sequences and n_batch tokens."""
        groups: list[list[list[int]]] = [[]]
        used = 0
        for tokens in tokenized:
            if groups[-1] and (len(groups[-1]) == self.n_seq or used + len(tokens) > self.n_batch):
                groups.append([])
                used = 0
            groups[-1].append(tokens)
            used += len(tokens)
        return groups

    def _run(self, group: list[list[int]]) -> list[list[float]]:
        batch = self._batch
        n = 0
        for seq, tokens in enumerate(group):
            for pos, token in enumerate(tokens):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = 1
                n += 1
        batch.n_tokens = n
        memory = lc.llama_get_memory(self.ctx)
        if memory:
            lc.llama_memory_clear(memory, True)
        code = lc.llama_decode(self.ctx, batch)
        if code != 0:
            raise Internal(f"llama_decode failed with code {code} while embedding")
        return [self._vector(seq) for seq in range(len(group))]

    def _vector(self, seq: int) -> list[float]:
        pointer = lc.llama_get_embeddings_seq(self.ctx, seq)
        if not pointer:
            raise Internal("the model gave no pooled embedding (pooling type none?)")
        vector = np.ctypeslib.as_array(pointer, shape=(self.n_embd,)).astype(np.float64)
        norm = float(np.linalg.norm(vector))
        return list(vector / norm if norm > 0 else vector)

    def close(self) -> None:
        if self._batch is not None:
            lc.llama_batch_free(self._batch)
            self._batch = None
