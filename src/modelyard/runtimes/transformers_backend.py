"""The engine's `Backend` over one Hugging Face causal LM (torch, CPU): every step is ONE
forward pass over a packed batch of (slot, position, token) rows, whatever sequences they
belong to.

The KV cache is transformers' own `Cache` with one `SlotLayer` per attention layer: a tensor
of `n_slots x n_ctx` cells, slot `s` owning cells `s*n_ctx ...`. A step writes each row's key
and value at its cell (`index_copy_`, where transformers' `StaticLayer` writes at its running
length), and each row attends only to its own slot's cells up to its position through a 4-D
attention mask the model takes as it is (a dict of masks for models with sliding-window
layers: the window is applied in the mask, the cache keeps every position, so a prefix can be
cut or shared anywhere). Attention reads only the span of cells from the step's lowest slot to
its furthest cell (a view of the cache, no copy). Positions go in as `position_ids` (rotary embeddings per row), and
only the rows that want logits reach the LM head (`logits_to_keep` as indices).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from modelyard.errors import Internal
from modelyard.runtimes.transformers_sampling import TorchSampler
from modelyard.spec.generation import SamplingParams, TokenLogprob


class SlotLayer(CacheLayerMixin):  # type: ignore[no-untyped-call]
    """One attention layer's keys and values for every slot, written at the cells `index`
    names (set by the backend before each forward)."""

    is_compileable = False
    is_sliding = False

    def __init__(self, cells: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.cells = cells
        self.index = torch.zeros(0, dtype=torch.long)
        #: The cells this step's rows may attend to (a view: the slots from the lowest to
        #: the highest one in the step, up to the furthest position).
        self.window = slice(0, cells)

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
        return keys[:, :, self.window], values[:, :, self.window]

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
    ) -> None:
        self.model = model
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
        layer_types = list(getattr(config, "layer_types", None) or [])
        self.sliding_window = int(getattr(config, "sliding_window", 0) or 0)
        self.sliding = "sliding_attention" in layer_types and self.sliding_window > 0
        self.dtype = next(model.parameters()).dtype
        self._cell_slot = torch.arange(self.n_cells) // n_ctx
        self._cell_pos = torch.arange(self.n_cells) % n_ctx
        self._logits = torch.zeros(0)
        self._rows: dict[int, int] = {}
        #: Forward passes run (one per engine step).
        self.forwards = 0

    # ---- Backend ---------------------------------------------------------------------------

    def decode(self, rows: Sequence[tuple[int, int, int, bool]]) -> None:
        slots = torch.tensor([r[0] for r in rows], dtype=torch.long)
        positions = torch.tensor([r[1] for r in rows], dtype=torch.long)
        tokens = torch.tensor([r[2] for r in rows], dtype=torch.long)
        keep = [i for i, r in enumerate(rows) if r[3]]
        if int(positions.max()) >= self.n_ctx:
            raise Internal(f"a position is beyond the context ({self.n_ctx} tokens)")
        cells = slots * self.n_ctx + positions
        window = slice(int(slots.min()) * self.n_ctx, int(cells.max()) + 1)
        for layer in self.layers:
            layer.index, layer.window = cells, window
        try:
            with torch.inference_mode():
                out = self.model(
                    input_ids=tokens[None],
                    position_ids=positions[None],
                    attention_mask=self._mask(slots, positions, window),
                    cache=self.cache,
                    use_cache=True,
                    logits_to_keep=torch.tensor(keep or [0], dtype=torch.long),
                )
        except (RuntimeError, ValueError, IndexError) as exc:
            raise Internal(f"the model's forward pass failed on {len(rows)} rows: {exc}") from exc
        self.forwards += 1
        self._logits = out.logits[0].float()
        self._rows = {row: i for i, row in enumerate(keep)}

    def _mask(self, slots: torch.Tensor, positions: torch.Tensor, window: slice) -> Any:
        cell_slot, cell_pos = self._cell_slot[window], self._cell_pos[window]
        allowed = (cell_slot[None] == slots[:, None]) & (cell_pos[None] <= positions[:, None])
        full = self._additive(allowed)
        if not self.sliding:
            return full
        recent = cell_pos[None] > positions[:, None] - self.sliding_window
        return {"full_attention": full, "sliding_attention": self._additive(allowed & recent)}

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(allowed.shape, dtype=self.dtype)
        return mask.masked_fill_(~allowed, torch.finfo(self.dtype).min)[None, None]

    def row_logits(self, row: int) -> torch.Tensor:
        index = self._rows.get(row)
        if index is None:
            raise Internal(f"no logits for batch row {row}")
        return self._logits[index]

    def new_sampler(self, params: SamplingParams) -> TorchSampler:
        return TorchSampler(self, params)

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
