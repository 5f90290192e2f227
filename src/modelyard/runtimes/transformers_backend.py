"""The engine's `Backend` over one Hugging Face causal LM (torch, CPU): every step is ONE
forward pass over a packed batch of (slot, position, token) rows, whatever sequences they
belong to.

The KV cache is transformers' own `Cache` with one `SlotLayer` per attention layer: a tensor
of `n_slots x n_ctx` cells, slot `s` owning cells `s*n_ctx ...`. A step writes each row's key
and value at its cell (`index_copy_`, where transformers' `StaticLayer` writes at its running
length). Attention is a function registered with transformers' `AttentionInterface`
(`slot_attention`, the library's seam for attention kernels, as its own paged attention uses):
the model calls it in every layer with the step's `slot_groups` (each slot's run of rows), and
each group attends to its own slot's cells only — a decode row to every cell up to its
position (within the sliding window on sliding layers), a prompt chunk causally within itself.
The cache keeps every position, so a prefix can be cut or shared anywhere. Positions go in as
`position_ids` (rotary embeddings per row), and only the rows that want logits reach the LM
head (`logits_to_keep` as indices).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, CacheLayerMixin

from modelyard.errors import Internal
from modelyard.runtimes.transformers_grammar import guide_tokenizer
from modelyard.runtimes.transformers_sampling import TorchSampler
from modelyard.spec.generation import SamplingParams, TokenLogprob

ATTENTION = "modelyard_slots"
#: Attention inputs some architectures pass (soft-capping, attention sinks, ALiBi-like
#: biases) that slot_attention does not apply: a model that passes one fails its first step.
_UNSUPPORTED = ("softcap", "s_aux", "sinks", "position_bias")


@dataclass(frozen=True, slots=True)
class Group:
    """One slot's rows in a step: batch rows [row, row + n) at positions [pos, pos + n), its
    cells starting at `base` (cell of position 0)."""

    row: int
    n: int
    pos: int
    base: int


def slot_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    slot_groups: Sequence[Group] = (),
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention for a packed step, registered with transformers' `AttentionInterface`: each
    slot's rows attend to that slot's cells only (torch's sdpa per slot, GQA without copying
    keys; a mask only for a prompt chunk, which is causal within itself)."""
    unsupported = [k for k in _UNSUPPORTED if kwargs.get(k) is not None]
    if unsupported:  # never attend differently from the model's own kernels in silence
        raise ValueError(f"this model's attention needs {unsupported}, which slot_attention lacks")
    out = query.new_empty(query.shape)
    gqa = query.shape[1] != key.shape[1]
    for g in slot_groups:
        end = g.pos + g.n  # cells [.., end) hold the slot's positions before and in the step
        start = max(0, end - g.n - sliding_window + 1) if sliding_window else 0
        q = query[:, :, g.row : g.row + g.n]
        k = key[:, :, g.base + start : g.base + end]
        v = value[:, :, g.base + start : g.base + end]
        if g.n == 1:  # a decode row: plain matmuls beat sdpa's CPU kernel at one query
            out[:, :, g.row : g.row + 1] = _one_query(q, k, v, scaling)
            continue
        positions = torch.arange(g.pos, end)[:, None]
        cells = torch.arange(start, end)[None]
        mask = cells <= positions
        if sliding_window:
            mask &= cells > positions - sliding_window
        out[:, :, g.row : g.row + g.n] = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=scaling, enable_gqa=gqa
        )
    return out.transpose(1, 2).contiguous(), None


def _one_query(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaling: float | None
) -> torch.Tensor:
    """Attention of one query row (1, heads, 1, d) over (1, kv_heads, n, d): query heads
    grouped onto their key/value head (head h reads kv head h // group), no copies."""
    heads, kv_heads, d = q.shape[1], k.shape[1], q.shape[-1]
    grouped = q.reshape(1, kv_heads, heads // kv_heads, d)
    scale = scaling if scaling is not None else d**-0.5
    weights = torch.softmax((grouped @ k.transpose(-1, -2)) * scale, dim=-1)
    return (weights @ v).reshape(1, heads, 1, v.shape[-1])


AttentionInterface.register(ATTENTION, slot_attention)


class SlotLayer(CacheLayerMixin):  # type: ignore[no-untyped-call]
    """One attention layer's keys and values for every slot, written at the cells `index`
    names (set by the backend before each forward)."""

    is_compileable = False
    is_sliding = False

    def __init__(self, cells: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.cells = cells
        self.index = torch.zeros(0, dtype=torch.long)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        heads = key_states.shape[1]
        self.keys = key_states.new_zeros((1, heads, self.cells, key_states.shape[-1]))
        self.values = value_states.new_zeros((1, heads, self.cells, value_states.shape[-1]))
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        keys, values = self.keys, self.values
        assert keys is not None and values is not None
        keys.index_copy_(2, self.index, key_states)
        values.index_copy_(2, self.index, value_states)
        return keys, values

    def copy(self, source: slice, target: slice) -> None:
        keys, values = self.keys, self.values
        if keys is None or values is None:
            return
        with torch.inference_mode():  # the cache's tensors are inference tensors
            keys[:, :, target] = keys[:, :, source]
            values[:, :, target] = values[:, :, source]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.cells, 0

    def get_seq_length(self) -> int:
        return 0

    def get_max_length(self) -> int:
        return self.cells


class TransformersBackend:
    """`n_slots` sequences of up to `n_ctx` tokens over one model."""

    def __init__(
        self,
        model: Any,
        *,
        n_slots: int,
        n_ctx: int,
        n_batch: int,
        end_tokens: set[int],
        piece: Any,
        tokenizer: Any = None,
    ) -> None:
        self.model = model
        #: The Hugging Face tokenizer, and llguidance's view of it (built at the first
        #: structured request, on the engine thread).
        self.tokenizer = tokenizer
        self._guide_tokenizer: Any = None
        self.n_slots = n_slots
        self.n_ctx = n_ctx
        self.n_cells = n_slots * n_ctx
        self.n_batch = n_batch
        self.end_tokens = end_tokens
        self.end_list = torch.tensor(sorted(end_tokens), dtype=torch.long)
        self._piece = piece
        config = model.config
        self.n_layers = int(config.num_hidden_layers)
        self.layers = [SlotLayer(self.n_cells) for _ in range(self.n_layers)]
        layers: list[Any] = list(self.layers)
        self.cache: Cache | None = Cache(layers=layers)
        model.set_attn_implementation(ATTENTION)
        # a 4-D mask makes the model skip building its own (slot_attention needs none); models
        # with sliding-window layers take one per kind of layer
        dummy = torch.zeros((1, 1, 1, 1))
        sliding = "sliding_attention" in list(getattr(config, "layer_types", None) or [])
        self._no_mask: Any = (
            {"full_attention": dummy, "sliding_attention": dummy} if sliding else dummy
        )
        self._logits = torch.zeros(0)
        self._rows: dict[int, int] = {}
        #: Forward passes run (one per engine step).
        self.forwards = 0

    # ---- Backend ---------------------------------------------------------------------------

    def decode(self, rows: Sequence[tuple[int, int, int, bool]]) -> None:
        positions = [r[1] for r in rows]
        if max(positions) >= self.n_ctx:
            raise Internal(f"a position is beyond the context ({self.n_ctx} tokens)")
        cells = torch.tensor([r[0] * self.n_ctx + r[1] for r in rows], dtype=torch.long)
        for layer in self.layers:
            layer.index = cells
        keep = [i for i, r in enumerate(rows) if r[3]]
        try:
            with torch.inference_mode():
                out = self.model(
                    input_ids=torch.tensor([[r[2] for r in rows]], dtype=torch.long),
                    position_ids=torch.tensor([positions], dtype=torch.long),
                    attention_mask=self._no_mask,  # slot_attention reads slot_groups instead
                    cache=self.cache,
                    use_cache=True,
                    logits_to_keep=torch.tensor(keep or [0], dtype=torch.long),
                    slot_groups=self._groups(rows),
                )
        except (RuntimeError, ValueError, IndexError) as exc:
            raise Internal(f"the model's forward pass failed on {len(rows)} rows: {exc}") from exc
        self.forwards += 1
        self._logits = out.logits[0].float()
        self._rows = {row: i for i, row in enumerate(keep)}

    def _groups(self, rows: Sequence[tuple[int, int, int, bool]]) -> list[Group]:
        """Runs of rows of one slot at consecutive positions (a decode row, a prompt chunk)."""
        groups: list[Group] = []
        for i, (slot, pos, _, _) in enumerate(rows):
            last = groups[-1] if groups else None
            if last is not None and last.base == slot * self.n_ctx and last.pos + last.n == pos:
                groups[-1] = Group(last.row, last.n + 1, last.pos, last.base)
            else:
                groups.append(Group(i, 1, pos, slot * self.n_ctx))
        return groups

    def row_logits(self, row: int) -> torch.Tensor:
        index = self._rows.get(row)
        if index is None:
            raise Internal(f"no logits for batch row {row}")
        return self._logits[index]

    def new_sampler(self, params: SamplingParams) -> TorchSampler:
        return TorchSampler(self, params)

    def guide_tokenizer(self) -> Any:
        if self._guide_tokenizer is None:
            self._guide_tokenizer = guide_tokenizer(self.tokenizer)
        return self._guide_tokenizer

    def logprobs(self, row: int, token: int, top: int) -> TokenLogprob:
        logits = self.row_logits(row).double()
        logp = torch.log_softmax(logits, dim=-1)
        alternatives: list[tuple[int, bytes, float]] = []
        if top > 0:
            values, ids = torch.topk(logp, min(top, logp.numel()))
            alternatives = [
                (int(t), self.piece(int(t)), float(v))
                for t, v in zip(ids.tolist(), values.tolist(), strict=True)
            ]
        rank = int((logits > logits[token]).sum()) + 1
        value = float(logp[token])
        return TokenLogprob(
            token, self.piece(token), value if math.isfinite(value) else -1e9, alternatives, rank
        )

    def is_end(self, token: int) -> bool:
        return token in self.end_tokens

    def piece(self, token: int) -> bytes:
        found: bytes = self._piece(token)
        return found

    def keep(self, slot: int, n: int) -> int:
        """Cells past a sequence's position are never attended (the mask), so cutting is
        only forgetting: the next rows overwrite them."""
        return max(0, min(n, self.n_ctx))

    def share(self, source: int, slot: int, n: int) -> int:
        if n <= 0:
            return 0
        n = min(n, self.n_ctx)
        start = source * self.n_ctx
        target = slot * self.n_ctx
        for layer in self.layers:
            layer.copy(slice(start, start + n), slice(target, target + n))
        return n

    def close(self) -> None:
        self.layers = []
        self.cache = None
