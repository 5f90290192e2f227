"""A request's sampler on the transformers runtime: transformers' own logits processors and
warpers (the ones its `generate` uses, in its order: repetition penalty, then temperature,
top-k, top-p, min-p, typical), modelyard's extras (presence/frequency penalties, logit bias,
end tokens held back), a seeded `torch.Generator` per request, and structured output
through llguidance (transformers_grammar.py) masking what the grammar forbids."""

from __future__ import annotations

import collections
import random
from typing import TYPE_CHECKING, cast

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from modelyard.runtimes.transformers_grammar import Guide, compile_grammar
from modelyard.spec.generation import SamplingParams

if TYPE_CHECKING:
    from modelyard.runtimes.transformers_backend import TransformersBackend


class TorchSampler:
    def __init__(self, backend: TransformersBackend, params: SamplingParams) -> None:
        self.backend = backend
        self.params = params
        self.end_allowed = True
        self.history: list[int] = []
        self.warpers = _warpers(params)
        self.penalty = (
            RepetitionPenaltyLogitsProcessor(params.repetition_penalty)
            if params.repetition_penalty != 1.0
            else None
        )
        self.guide: Guide | None = None
        if params.structured is not None:
            grammar = compile_grammar(params.structured)
            self.guide = Guide(backend.guide_tokenizer(), grammar)
        self.generator: torch.Generator | None = None
        if not params.greedy:
            seed = params.seed if params.seed is not None else random.getrandbits(63)
            self.generator = torch.Generator().manual_seed(seed)

    def allow_end(self, allowed: bool) -> None:
        self.end_allowed = allowed

    def sample(self, row: int) -> int:
        scores = self._scores(self.backend.row_logits(row))
        if self.guide is not None:
            self.guide.mask(scores)
        if self.generator is None:
            token = int(torch.argmax(scores))
        else:
            ids = cast(torch.LongTensor, torch.tensor([self.history[-64:]], dtype=torch.long))
            scores = self.warpers(ids, scores[None])[0]
            probs = torch.softmax(scores, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=self.generator))
        if self.guide is not None:
            self.guide.accept(token)
        self.history.append(token)
        return token

    def _scores(self, logits: torch.Tensor) -> torch.Tensor:
        scores = logits.clone()
        params = self.params
        if not self.end_allowed and len(self.backend.end_list):
            scores[self.backend.end_list] = -torch.inf
        for token, bias in params.logit_bias.items():
            if 0 <= int(token) < scores.numel():
                scores[int(token)] += float(bias)
        recent = _recent(self.history, params.penalty_last_n)
        if recent and self.penalty is not None:
            ids = cast(torch.LongTensor, torch.tensor([recent], dtype=torch.long))
            scores = self.penalty(ids, scores[None])[0]
        if recent and (params.presence_penalty or params.frequency_penalty):
            for token, count in collections.Counter(recent).items():
                scores[token] -= params.presence_penalty + params.frequency_penalty * count
        return scores

    def close(self) -> None:
        self.history = []


def _warpers(params: SamplingParams) -> LogitsProcessorList:
    warpers = LogitsProcessorList()
    if params.greedy:
        return warpers
    if params.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(params.temperature))
    if params.top_k > 0:
        warpers.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        warpers.append(TopPLogitsWarper(params.top_p))
    if params.min_p > 0.0:
        warpers.append(MinPLogitsWarper(params.min_p))
    if params.typical_p < 1.0:
        warpers.append(TypicalLogitsWarper(params.typical_p))
    return warpers


def _recent(history: list[int], last_n: int) -> list[int]:
    """The tokens penalties look at: the last `last_n` generated (-1: all of them; 0: none)."""
    if last_n < 0:
        return history
    return history[-last_n:] if last_n > 0 else []
