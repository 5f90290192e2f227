"""The engine's `Backend` over one llama.cpp context (low-level API): a `llama_batch` whose
rows carry (slot = sequence id, position, token), samplers built per request from llama.cpp's
sampler chain, prefix-cache trimming with `llama_memory_seq_rm`, and prefixes shared between
live sequences with `llama_memory_seq_cp`."""

from __future__ import annotations

import ctypes
import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelyard.errors import Internal, InvalidArgument
from modelyard.runtimes.llamacpp_grammar import gbnf
from modelyard.runtimes.llamacpp_lib import lc
from modelyard.spec.generation import SamplingParams, TokenLogprob


class LlamaBackend:
    """One context with `n_slots` sequences sharing a unified KV cache."""

    def __init__(
        self,
        ctx: Any,
        vocab: Any,
        *,
        n_slots: int,
        n_ctx: int,
        n_cells: int,
        n_batch: int,
        n_vocab: int,
        end_tokens: list[int],
        n_swa: int,
    ) -> None:
        self.ctx = ctx
        self.vocab = vocab
        self.memory = lc.llama_get_memory(ctx)
        self.n_slots = n_slots
        self.n_ctx = n_ctx
        self.n_cells = n_cells
        self.n_batch = n_batch
        self.n_vocab = n_vocab
        self.end_tokens = np.array(sorted(end_tokens), dtype=np.int64)
        self._end_set = frozenset(end_tokens)
        self.n_swa = n_swa
        self._batch = lc.llama_batch_init(n_batch, 0, 1)
        self._tokens = np.ctypeslib.as_array(self._batch.token, shape=(n_batch,))
        self._pos = np.ctypeslib.as_array(self._batch.pos, shape=(n_batch,))
        self._n_seq = np.ctypeslib.as_array(self._batch.n_seq_id, shape=(n_batch,))
        self._logits = np.ctypeslib.as_array(self._batch.logits, shape=(n_batch,))
        self._pieces: dict[int, bytes] = {}
        self._candidates: Candidates | None = None

    # ---- Backend ---------------------------------------------------------------------------

    def decode(self, rows: Sequence[tuple[int, int, int, bool]]) -> None:
        n = len(rows)
        slots, pos, tokens, want = zip(*rows, strict=True)
        self._tokens[:n] = tokens
        self._pos[:n] = pos
        self._n_seq[:n] = 1
        self._logits[:n] = want
        seq_ids = self._batch.seq_id
        for i, slot in enumerate(slots):
            seq_ids[i][0] = slot
        self._batch.n_tokens = n
        code = lc.llama_decode(self.ctx, self._batch)
        if code != 0:
            raise Internal(f"llama_decode failed with code {code} on a batch of {n} tokens")

    def new_sampler(self, params: SamplingParams) -> LlamaSampler:
        return LlamaSampler(self, params)

    def candidates(self, logits: np.ndarray) -> Candidates:
        if self._candidates is None:
            self._candidates = Candidates(self.n_vocab)
        return self._candidates.fill(logits)

    def grammar_allows(self, grammar: Any, token: int) -> bool:
        one = np.array([(token, 1.0, 0.0)], dtype=Candidates.DTYPE)
        array = lc.llama_token_data_array(
            data=one.ctypes.data_as(lc.llama_token_data_p), size=1, selected=-1, sorted=False
        )
        lc.llama_sampler_apply(grammar, ctypes.byref(array))
        return bool(np.isfinite(one["logit"][0]))

    def row_logits(self, row: int) -> np.ndarray:
        pointer = lc.llama_get_logits_ith(self.ctx, row)
        if not pointer:
            raise Internal(f"no logits for batch row {row}")
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def logprobs(self, row: int, token: int, top: int) -> TokenLogprob:
        logits = self.row_logits(row).astype(np.float64)
        finite = np.isfinite(logits)
        peak = logits[finite].max()
        logz = peak + math.log(float(np.exp(logits[finite] - peak).sum()))
        alternatives: list[tuple[int, bytes, float]] = []
        if top > 0:
            best = np.argpartition(-logits, min(top, self.n_vocab - 1))[:top]
            best = best[np.argsort(-logits[best])]
            alternatives = [(int(t), self.piece(int(t)), float(logits[t] - logz)) for t in best]
        rank = int(np.count_nonzero(logits > logits[token])) + 1
        return TokenLogprob(
            token, self.piece(token), float(logits[token] - logz), alternatives, rank
        )

    def is_end(self, token: int) -> bool:
        return token in self._end_set

    def piece(self, token: int) -> bytes:
        found = self._pieces.get(token)
        if found is None:
            found = self._pieces[token] = _piece(self.vocab, token)
        return found

    def keep(self, slot: int, n: int) -> int:
        if n > 0 and self._can_cut(slot, n) and lc.llama_memory_seq_rm(self.memory, slot, n, -1):
            return n
        lc.llama_memory_seq_rm(self.memory, slot, -1, -1)
        return 0

    def share(self, source: int, slot: int, n: int) -> int:
        """In the unified KV cache the cells of `source` also become `slot`'s: nothing is
        copied or recomputed."""
        lc.llama_memory_seq_rm(self.memory, slot, -1, -1)
        if n <= 0 or not self._can_cut(source, n):
            return 0
        lc.llama_memory_seq_cp(self.memory, source, slot, 0, n)
        return n

    def _can_cut(self, slot: int, n: int) -> bool:
        """Sliding-window layers keep only the last n_swa positions: a cut is usable only when
        the window before it is still cached."""
        if self.n_swa <= 0:
            return True
        pos_min = lc.llama_memory_seq_pos_min(self.memory, slot)
        return bool(pos_min <= max(0, n - self.n_swa))

    def close(self) -> None:
        if self._batch is not None:
            lc.llama_batch_free(self._batch)
            self._batch = None


class LlamaSampler:
    """A request's llama.cpp sampler chain; greedy requests without penalties or grammar take
    the argmax directly (no chain, no copy of the vocabulary).

    A grammar is checked after sampling rather than applied to the whole vocabulary first
    (as llama.cpp's own common sampler does): the token the chain picks is tested alone, and
    only when the grammar refuses it is the vocabulary filtered and sampled again. On Gemma's
    262k-token vocabulary that halves the cost of a structured-output token."""

    def __init__(self, backend: LlamaBackend, params: SamplingParams) -> None:
        self.backend = backend
        self.params = params
        self.end_allowed = True
        self.bias = {int(t): float(b) for t, b in params.logit_bias.items()}
        self.chain: Any = None
        self.grammar: Any = None
        if params.structured is not None:
            self.grammar = _grammar(backend, gbnf(params.structured))
        if not (params.greedy and _plain(params)):
            self.chain = _chain(backend, params)

    def allow_end(self, allowed: bool) -> None:
        self.end_allowed = allowed

    def sample(self, row: int) -> int:
        logits = self.backend.row_logits(row)
        if not self.end_allowed and len(self.backend.end_tokens):
            logits[self.backend.end_tokens] = -np.inf
        for token, bias in self.bias.items():
            if 0 <= token < self.backend.n_vocab:
                logits[token] += bias
        if self.chain is None:
            return int(np.argmax(logits))
        if self.grammar is None:
            return int(lc.llama_sampler_sample(self.chain, self.backend.ctx, row))
        return self._sample_with_grammar(logits)

    def _sample_with_grammar(self, logits: np.ndarray) -> int:
        candidates = self.backend.candidates(logits)
        lc.llama_sampler_apply(self.chain, ctypes.byref(candidates.array))
        token = candidates.selected()
        if not self.backend.grammar_allows(self.grammar, token):
            candidates = self.backend.candidates(logits)
            lc.llama_sampler_apply(self.grammar, ctypes.byref(candidates.array))
            lc.llama_sampler_apply(self.chain, ctypes.byref(candidates.array))
            token = candidates.selected()
        lc.llama_sampler_accept(self.grammar, token)
        lc.llama_sampler_accept(self.chain, token)
        return token

    def close(self) -> None:
        for sampler in (self.chain, self.grammar):
            if sampler is not None:
                lc.llama_sampler_free(sampler)
        self.chain = self.grammar = None


class Candidates:
    """A `llama_token_data_array` over a reusable numpy buffer of (id, logit, p) rows."""

    DTYPE = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])

    def __init__(self, n_vocab: int) -> None:
        self.data = np.zeros(n_vocab, dtype=self.DTYPE)
        self.ids = np.arange(n_vocab, dtype=np.int32)
        self.array = lc.llama_token_data_array(
            data=self.data.ctypes.data_as(lc.llama_token_data_p),
            size=n_vocab,
            selected=-1,
            sorted=False,
        )

    def fill(self, logits: np.ndarray) -> Candidates:
        self.data["id"] = self.ids
        self.data["logit"] = logits
        self.data["p"] = 0.0
        self.array.size = len(self.ids)
        self.array.selected = -1
        self.array.sorted = False
        return self

    def selected(self) -> int:
        index = self.array.selected
        if index < 0:
            raise Internal("the sampler chain selected no token")
        return int(self.data["id"][index])


def _plain(params: SamplingParams) -> bool:
    return (
        params.structured is None
        and params.repetition_penalty == 1.0
        and params.presence_penalty == 0.0
        and params.frequency_penalty == 0.0
    )


def _chain(backend: LlamaBackend, params: SamplingParams) -> Any:
    chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
    try:
        for sampler in _stages(backend, params):
            lc.llama_sampler_chain_add(chain, sampler)
    except BaseException:
        lc.llama_sampler_free(chain)
        raise
    return chain


def _stages(backend: LlamaBackend, params: SamplingParams) -> list[Any]:
    stages = []
    penalties = (params.repetition_penalty, params.frequency_penalty, params.presence_penalty)
    if penalties != (1.0, 0.0, 0.0):
        stages.append(
            lc.llama_sampler_init_penalties(backend.n_vocab, params.penalty_last_n, *penalties)
        )
    if params.greedy:
        return [*stages, lc.llama_sampler_init_greedy()]
    if params.top_k > 0:
        stages.append(lc.llama_sampler_init_top_k(params.top_k))
    if params.typical_p < 1.0:
        stages.append(lc.llama_sampler_init_typical(params.typical_p, 1))
    if params.top_p < 1.0:
        stages.append(lc.llama_sampler_init_top_p(params.top_p, 1))
    if params.min_p > 0.0:
        stages.append(lc.llama_sampler_init_min_p(params.min_p, 1))
    stages.append(lc.llama_sampler_init_temp(params.temperature))
    seed = params.seed if params.seed is not None else random.getrandbits(32)
    stages.append(lc.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return stages


def _grammar(backend: LlamaBackend, grammar: str) -> Any:
    sampler = lc.llama_sampler_init_grammar(backend.vocab, grammar.encode(), b"root")
    if not sampler:
        raise InvalidArgument("the structured-output grammar does not parse")
    return sampler


def _piece(vocab: Any, token: int) -> bytes:
    size = 64
    while True:
        buffer = ctypes.create_string_buffer(size)
        n = lc.llama_token_to_piece(vocab, token, buffer, size, 0, False)
        if n >= 0:
            return buffer.raw[:n]
        size = -n
