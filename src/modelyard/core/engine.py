"""The continuous-batching LLM engine: many sequences share one model context, and every step
is schedule -> execute -> update.

- schedule: take new requests and aborts; admit waiting requests into free slots, reusing the
  longest cached prompt prefix any free slot holds, or sharing it with a running sequence:
  a request whose prompt starts like a running sequence's (a long system prompt, few-shot
  examples, a chat's earlier turns) waits until that sequence has read the common part, then
  takes its cells (`Backend.share`) instead of reading the prefix again (SGLang's
  RadixAttention idea, across live requests; the leader's prompt is read in chunks that end
  at the shared boundary, so a sliding-window cache still holds the window before it).
- execute: ONE `Backend.decode` call carrying one token for every sequence that is generating
  plus chunks of prompts still being read, up to `n_batch` tokens (generating rows first, so
  a long prompt never stalls running streams for more than one chunk).
- update: sample each sequence whose row has logits, detokenize, check stop conditions, send
  a `Delta` to its sink; finished sequences give their slot back at once.

Slots and cells are separate: the backend has `n_slots` sequence slots and one KV cache of
`n_cells` token cells that every slot draws on (llama.cpp's unified cache), each sequence up to
`n_ctx` tokens. A request is admitted when a slot is free and the cells its prompt needs (plus
a little room to generate) are free, idle slots' prefix caches being dropped, oldest first, to
make room. When running sequences would overflow the cells, the one admitted last is preempted:
its cells are freed and it goes back to the head of the queue, to read its prompt and what it
generated again when there is room (vLLM's recompute preemption); its client sees only a pause.

The loop runs on its own thread, never on an event loop; sinks are called on that thread
(an asyncio caller passes one that hops over with `loop.call_soon_threadsafe`). The engine
knows nothing of llama.cpp or HTTP: a runtime implements `Backend`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from modelyard.core.textstream import TextStream
from modelyard.errors import InvalidArgument, ResourceExhausted, Unavailable
from modelyard.spec.generation import (
    Backend,
    Delta,
    Finish,
    GenerationRequest,
    Sampler,
    TokenLogprob,
)

log = logging.getLogger("modelyard.engine")

Sink = Callable[[Delta], None]
Row = tuple[int, int, int, bool]
#: Shortest prefix worth waiting for a running sequence to read (shorter: read it alone).
MIN_SHARED_PREFIX = 16
#: Cells a new sequence needs free beyond its prompt to be admitted (room to generate).
ADMIT_HEADROOM = 16


class Observer(Protocol):
    """Receives the engine's measurements (Prometheus metrics implement it)."""

    def on_step(self, tokens: int) -> None:
        """One decode ran, carrying `tokens` rows."""

    def on_admit(self, queue_s: float, prompt_tokens: int, cached_tokens: int) -> None: ...

    def on_token(self, first: bool, seconds: float) -> None:
        """`seconds`: time to first token when `first`, else time since the previous token."""

    def on_finish(
        self, finish: Finish, prompt_tokens: int, generated: int, e2e_s: float
    ) -> None: ...


class NullObserver:
    def on_step(self, tokens: int) -> None:
        pass

    def on_admit(self, queue_s: float, prompt_tokens: int, cached_tokens: int) -> None:
        pass

    def on_token(self, first: bool, seconds: float) -> None:
        pass

    def on_finish(self, finish: Finish, prompt_tokens: int, generated: int, e2e_s: float) -> None:
        pass


@dataclass(eq=False)
class _Seq:
    request: GenerationRequest
    sink: Sink
    slot: int = -1
    sampler: Sampler | None = None
    pending: list[int] = field(default_factory=list)  # tokens still to feed the model
    n_past: int = 0  # tokens of this sequence already in its slot's cache
    generated: int = 0
    max_new: int = 0
    cached: int = 0
    text: TextStream = field(default_factory=TextStream)
    last_token_at: float = 0.0
    done: bool = False
    #: The prompt tokens' log-probabilities as their rows are read (when the request asked).
    prompt_logprobs: list[TokenLogprob] | None = None
    #: A running sequence whose first `share` tokens this one will take once it has read
    #: them (None: reads its own prompt).
    leader: _Seq | None = None
    share: int = 0
    #: The slot it had when it finished (its cells stay there as a prefix cache until reused).
    last_slot: int = -1
    #: Preempted: every token it had (prompt, then generated), to read again when readmitted.
    resume: list[int] = field(default_factory=list)

    @property
    def prompt_len(self) -> int:
        return len(self.request.prompt)


class Engine:
    """Serve generation requests for one `Backend` on a dedicated thread."""

    def __init__(
        self,
        backend: Backend,
        *,
        name: str = "llm",
        max_waiting: int = 256,
        observer: Observer | None = None,
        prefix_cache: bool = True,
    ) -> None:
        self.backend = backend
        self.name = name
        self.max_waiting = max_waiting
        #: Keep a finished sequence's cells as its slot's prefix cache (else free them at once),
        #: and share prefixes between live sequences.
        self.prefix_cache = prefix_cache
        self.observer: Observer = observer or NullObserver()
        self._cond = threading.Condition()
        self._waiting: collections.deque[_Seq] = collections.deque()
        self._aborts: set[str] = set()
        self._running: list[_Seq] = []
        self._free: list[int] = list(range(backend.n_slots))
        self._cache: list[list[int]] = [[] for _ in range(backend.n_slots)]
        #: Token cells of the shared KV cache.
        self.n_cells = max(backend.n_cells, backend.n_ctx)
        #: Sequences preempted for room, oldest first.
        self.preemptions = 0
        self._closed = False
        self._thread = threading.Thread(
            target=self._loop, name=f"modelyard-engine-{name}", daemon=True
        )
        self._thread.start()

    # ---- called from any thread ------------------------------------------------------------

    def submit(self, request: GenerationRequest, sink: Sink) -> None:
        """Queue a request; its deltas go to `sink` (called on the engine thread)."""
        self._check_fits(request)
        with self._cond:
            if self._closed:
                raise Unavailable(f"model {self.name!r} is unloading")
            if len(self._waiting) >= self.max_waiting:
                raise ResourceExhausted(
                    f"model {self.name!r} has {len(self._waiting)} requests waiting, its limit "
                    "(max_queue); retry later"
                )
            request.arrival = request.arrival or time.monotonic()
            self._waiting.append(_Seq(request, sink))
            self._cond.notify()

    def abort(self, request_id: str) -> None:
        """Stop a request (its client went away); its slot is freed before the next step."""
        with self._cond:
            self._aborts.add(request_id)
            self._cond.notify()

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(30)

    def _check_fits(self, request: GenerationRequest) -> None:
        n_ctx = self.backend.n_ctx
        if not request.prompt:
            raise InvalidArgument("the prompt is empty")
        if len(request.prompt) >= n_ctx:
            raise InvalidArgument(
                f"the prompt has {len(request.prompt)} tokens; model {self.name!r} takes at "
                f"most {n_ctx - 1} (its context is {n_ctx} tokens, n_ctx)"
            )

    # ---- the engine thread -----------------------------------------------------------------

    def _loop(self) -> None:
        while self._wait_for_work():
            try:
                self.step()
            except Exception as exc:  # a bug: fail what is running, keep serving
                log.exception("engine step of %s failed", self.name)
                for seq in list(self._running):
                    self._finish(seq, Finish.ERROR, error=exc)
        self._shutdown()

    def _wait_for_work(self) -> bool:
        with self._cond:
            while not self._closed and not (self._waiting or self._running or self._aborts):
                self._cond.wait()
            return not self._closed

    def step(self) -> None:
        """One schedule -> execute -> update round."""
        self._schedule()
        rows, owners = self._plan()
        while rows and not self._drop_idle_caches(len(rows), []) and len(self._running) > 1:
            self._preempt_last()  # the cells are full: the sequence admitted last waits
            rows, owners = self._plan()
        if not rows:
            return
        self.observer.on_step(len(rows))
        try:
            self.backend.decode(rows)
        except Exception as exc:
            self._isolate(rows, owners, exc)
            return
        self._update(rows, owners)

    def _isolate(self, rows: list[Row], owners: list[_Seq], error: Exception) -> None:
        """A decode failed: decode each sequence's rows alone, so only the sequence whose
        rows break it fails, never its neighbours. What the failed call may have written for
        this step is cut from each slot first."""
        sequences = list({id(s): s for s in owners}.values())
        log.error("decode failed on %s (%d sequences): %s", self.name, len(sequences), error)
        if len(sequences) == 1:
            self._finish(sequences[0], Finish.ERROR, error=error)
            return
        for seq in sequences:
            own = [row for row, owner in zip(rows, owners, strict=True) if owner is seq]
            if self.backend.keep(seq.slot, seq.n_past) < seq.n_past:
                self._finish(seq, Finish.ERROR, error=error)  # its cache cannot be restored
                continue
            try:
                self.backend.decode(own)
            except Exception as exc:
                self._finish(seq, Finish.ERROR, error=exc)
                continue
            self._update(own, [seq] * len(own))

    # ---- schedule ----------------------------------------------------------------------------

    def _schedule(self) -> None:
        with self._cond:
            aborts, self._aborts = self._aborts, set()
            if aborts:
                kept = [s for s in self._waiting if s.request.id not in aborts]
                self._waiting = collections.deque(kept)
        for seq in [s for s in self._running if s.request.id in aborts]:
            self._finish(seq, Finish.ABORT)
        # before any admission: a finished leader's slot still holds what its followers take
        self._take_shared_prefixes()
        while self._free:
            with self._cond:
                if not self._waiting or not self._room_for(self._waiting[0]):
                    break
                seq = self._waiting.popleft()
            self._admit(seq)
        self._take_shared_prefixes()  # leaders that had read the prefix already

    def _used_cells(self) -> int:
        """Cells the slots hold (a prefix shared between sequences counted for each: safe)."""
        return sum(len(tokens) for tokens in self._cache)

    def _room_for(self, seq: _Seq) -> bool:
        """Whether the cells `seq` needs to start are free (after dropping idle slots' prefix
        caches, those sharing least with it first); a sequence alone always starts."""
        tokens = seq.resume or seq.request.prompt
        need = len(tokens) + ADMIT_HEADROOM
        return self._drop_idle_caches(need, tokens) or not self._running

    def _drop_idle_caches(self, need: int, tokens: list[int]) -> bool:
        """Drop idle slots' prefix caches until `need` more cells are free; whether they are."""
        idle = sorted(
            (s for s in self._free if self._cache[s]),
            key=lambda s: _common_prefix(self._cache[s], tokens, len(tokens)),
        )
        while self._used_cells() + need > self.n_cells and idle:
            slot = idle.pop(0)
            self.backend.keep(slot, 0)
            self._cache[slot].clear()
        return self._used_cells() + need <= self.n_cells

    def _admit(self, seq: _Seq) -> None:
        if seq.resume:
            self._readmit(seq)
            return
        request = seq.request
        params = request.params
        slot, shared = self._best_slot(request.prompt)
        leader, lead = self._best_leader(request.prompt)
        if params.prompt_logprobs is not None:
            shared = lead = 0  # every prompt row must be read to score it
            seq.prompt_logprobs = []
        self._free.remove(slot)
        seq.slot = slot
        seq.text = TextStream(params.stop)
        room = self.backend.n_ctx - seq.prompt_len
        seq.max_new = min(params.max_tokens, room) if params.max_tokens is not None else room
        self._running.append(seq)
        if leader is not None and lead >= max(shared + 1, MIN_SHARED_PREFIX):
            seq.leader, seq.share = leader, lead  # starts once the leader has read it
            self.backend.keep(slot, 0)
            self._cache[slot].clear()
        else:
            self._start(seq, self.backend.keep(slot, shared))
        try:
            seq.sampler = self.backend.new_sampler(params)
            seq.sampler.allow_end(not params.ignore_eos and params.min_tokens <= 0)
        except Exception as exc:
            self._finish(seq, Finish.ERROR, error=exc)

    def _readmit(self, seq: _Seq) -> None:
        """A preempted sequence back in a slot: it reads what it had again (what a free slot
        still caches of it excepted) and goes on generating; its sampler and text kept."""
        slot, shared = self._best_slot(seq.resume)
        if seq.prompt_logprobs is not None:
            shared = 0
        self._free.remove(slot)
        kept = self.backend.keep(slot, shared)
        del self._cache[slot][kept:]
        seq.slot, seq.n_past = slot, kept
        seq.pending, seq.resume = seq.resume[kept:], []
        self._running.append(seq)

    def _preempt_last(self) -> None:
        """Free the cells of the sequence admitted last and queue it first again: it reads
        its tokens again when readmitted (a follower that had read nothing starts over)."""
        victim = self._running.pop()
        tokens = self._cache[victim.slot] + victim.pending
        self.backend.keep(victim.slot, 0)
        self._cache[victim.slot].clear()
        self._free.append(victim.slot)
        victim.slot = -1
        if victim.leader is not None:
            victim.leader = None
            if victim.sampler is not None:
                victim.sampler.close()
                victim.sampler = None
        else:
            victim.resume = tokens
            if victim.prompt_logprobs is not None:
                victim.prompt_logprobs = []  # scored again from the first token
        for follower in self._running:
            if follower.leader is victim:  # it reads the prefix itself
                follower.leader = None
                self._start(follower, 0)
        self.preemptions += 1
        log.info(
            "%s: preempted %s (%d tokens) to free KV cells; it resumes when there is room",
            self.name,
            victim.request.id,
            len(tokens),
        )
        with self._cond:
            self._waiting.appendleft(victim)

    def _start(self, seq: _Seq, kept: int) -> None:
        """The sequence reads its prompt from token `kept` on (those before are cached)."""
        del self._cache[seq.slot][kept:]
        seq.n_past, seq.cached = kept, kept
        seq.pending = list(seq.request.prompt[kept:])
        queued = time.monotonic() - seq.request.arrival
        self.observer.on_admit(queued, seq.prompt_len, kept)
        log.debug(
            "%s: %s starts in slot %d after %.3f s; %d of %d prompt tokens cached",
            self.name,
            seq.request.id,
            seq.slot,
            queued,
            kept,
            seq.prompt_len,
        )

    def _best_leader(self, prompt: list[int]) -> tuple[_Seq | None, int]:
        """The running sequence whose tokens (read, or still to read) share the longest
        prefix with `prompt` (at most all but its last token)."""
        best, best_len = None, 0
        for seq in self._running if self.prefix_cache else []:
            if seq.leader is not None or seq.slot < 0 or seq.prompt_logprobs is not None:
                continue
            tokens = self._cache[seq.slot] + seq.pending
            n = _common_prefix(tokens, prompt, len(prompt) - 1)
            if n > best_len:
                best, best_len = seq, n
        return best, best_len

    def _take_shared_prefixes(self) -> None:
        """Followers whose leader has read the shared prefix (or stopped) take its cells."""
        for seq in self._running:
            leader = seq.leader
            if leader is None or (not leader.done and leader.n_past < seq.share):
                continue
            seq.leader = None
            # a finished leader's slot is free, its cells kept as a prefix cache until reused
            source = leader.last_slot if leader.done else leader.slot
            usable = source >= 0 and (not leader.done or source in self._free)
            cached = self._cache[source] if usable else []
            n = _common_prefix(cached, seq.request.prompt, seq.share)
            kept = self.backend.share(source, seq.slot, n) if n > 0 else 0
            self._cache[seq.slot] = list(cached[:kept])
            self._start(seq, kept)

    def _best_slot(self, prompt: list[int]) -> tuple[int, int]:
        """The free slot whose cache shares the longest prefix with `prompt` (at most all but
        its last token, whose logits must be computed)."""
        best, best_len = self._free[0], -1
        for slot in self._free:
            n = _common_prefix(self._cache[slot], prompt, len(prompt) - 1)
            if n > best_len:
                best, best_len = slot, n
        return best, max(best_len, 0)

    # ---- execute -------------------------------------------------------------------------------

    def _plan(self) -> tuple[list[Row], list[_Seq]]:
        """Rows for one decode: the generating sequences' next tokens, then prompt chunks."""
        rows: list[Row] = []
        owners: list[_Seq] = []
        budget = self.backend.n_batch
        prefill = []
        for seq in self._running:
            if seq.leader is not None:
                continue  # waits for its leader to read the prefix they share
            if len(seq.pending) == 1 and seq.n_past >= seq.prompt_len - 1:
                rows.append((seq.slot, seq.n_past, seq.pending[0], True))
                owners.append(seq)
            else:
                prefill.append(seq)
        budget -= len(rows)
        for seq in prefill:
            if budget <= 0:
                break
            chunk = seq.pending[: min(budget, self._until_shared(seq))]
            last = len(chunk) == len(seq.pending)
            scored = seq.prompt_logprobs is not None
            for i, token in enumerate(chunk):
                want = scored or (last and i == len(chunk) - 1)
                rows.append((seq.slot, seq.n_past + i, token, want))
                owners.append(seq)
            budget -= len(chunk)
        return rows, owners

    def _until_shared(self, seq: _Seq) -> int:
        """Tokens `seq` may read before a follower's shared boundary (the chunk ends there, so
        the follower takes the cells before the leader reads past them)."""
        ahead = [
            f.share - seq.n_past
            for f in self._running
            if f.leader is seq and f.share > seq.n_past
        ]
        return min(ahead, default=len(seq.pending))

    # ---- update ---------------------------------------------------------------------------------

    def _update(self, rows: list[Row], owners: list[_Seq]) -> None:
        fed: dict[int, int] = collections.Counter(id(s) for s in owners)
        seen: set[int] = set()
        for index, (row, seq) in enumerate(zip(rows, owners, strict=True)):
            if id(seq) not in seen:
                seen.add(id(seq))
                self._advance(seq, fed[id(seq)])
            if not row[3] or seq.slot < 0:
                continue
            if row[1] < seq.prompt_len - 1:
                self._score_prompt(seq, index, row[1])
            else:
                self._sample_one(seq, index)

    def _score_prompt(self, seq: _Seq, row: int, position: int) -> None:
        """Row `row` holds the logits after prompt token `position`: score the next one."""
        assert seq.prompt_logprobs is not None
        top = seq.request.params.prompt_logprobs or 0
        try:
            next_token = seq.request.prompt[position + 1]
            seq.prompt_logprobs.append(self.backend.logprobs(row, next_token, top))
        except Exception as exc:
            log.exception("scoring the prompt of %s on %s failed", seq.request.id, self.name)
            self._finish(seq, Finish.ERROR, error=exc)

    def _sample_one(self, seq: _Seq, row: int) -> None:
        """Sample for one sequence; a failure (a sampler that cannot go on) ends only it."""
        try:
            self._sample(seq, row)
        except Exception as exc:
            log.exception("sampling for %s on %s failed", seq.request.id, self.name)
            self._finish(seq, Finish.ERROR, error=exc)

    def _advance(self, seq: _Seq, n: int) -> None:
        self._cache[seq.slot].extend(seq.pending[:n])
        seq.n_past += n
        del seq.pending[:n]

    def _sample(self, seq: _Seq, row: int) -> None:
        assert seq.sampler is not None
        if seq.max_new <= 0:  # the prompt only, scored (max_tokens 0)
            self._finish(seq, Finish.LENGTH)
            return
        params = seq.request.params
        token = seq.sampler.sample(row)
        logprobs = []
        if params.logprobs is not None:
            logprobs.append(self.backend.logprobs(row, token, params.logprobs))
        seq.generated += 1
        seq.pending = [token]
        now = time.monotonic()
        first = seq.generated == 1
        self.observer.on_token(first, now - (seq.request.arrival if first else seq.last_token_at))
        seq.last_token_at = now
        if seq.generated == params.min_tokens and not params.ignore_eos:
            seq.sampler.allow_end(True)
        finish, text = self._judge(seq, token)
        if finish is not None and finish is not Finish.STOP:
            text += seq.text.flush()
        self._emit(
            seq,
            Delta(
                text,
                [token],
                seq.prompt_len,
                seq.generated,
                logprobs,
                finish,
                cached_tokens=seq.cached,
            ),
        )
        if finish is not None:
            self._release(seq, finish)

    def _judge(self, seq: _Seq, token: int) -> tuple[Finish | None, str]:
        params = seq.request.params
        if token in params.stop_token_ids:
            return Finish.STOP, seq.text.flush()
        if self.backend.is_end(token) and not params.ignore_eos:
            return Finish.STOP, seq.text.flush()
        text, stopped = seq.text.push(self.backend.piece(token))
        if stopped:
            return Finish.STOP, text
        if seq.generated >= seq.max_new or seq.n_past + 1 >= self.backend.n_ctx:
            return Finish.LENGTH, text
        return None, text

    def _emit(self, seq: _Seq, delta: Delta) -> None:
        if seq.prompt_logprobs is not None and delta.error is None:
            delta.prompt_logprobs, seq.prompt_logprobs = seq.prompt_logprobs, None
        try:
            seq.sink(delta)
        except Exception:  # the consumer is gone (its event loop closed)
            log.debug("sink of %s failed; aborting it", seq.request.id, exc_info=True)
            if delta.finish is None:
                self._release(seq, Finish.ABORT)

    def _finish(self, seq: _Seq, finish: Finish, error: Exception | None = None) -> None:
        if seq.done:
            return
        if finish is not Finish.ABORT:
            delta = Delta(
                seq.text.flush() if error is None else "",
                [],
                seq.prompt_len,
                seq.generated,
                finish=finish,
                error=error,
            )
            self._emit(seq, delta)
        self._release(seq, finish)

    def _release(self, seq: _Seq, finish: Finish) -> None:
        if seq.done:
            return
        seq.done = True
        if seq in self._running:
            self._running.remove(seq)
        if seq.sampler is not None:
            seq.sampler.close()
            seq.sampler = None
        if seq.slot >= 0:
            if not self.prefix_cache:
                self.backend.keep(seq.slot, 0)
                self._cache[seq.slot].clear()
            self._free.append(seq.slot)
            seq.last_slot, seq.slot = seq.slot, -1
        e2e = time.monotonic() - seq.request.arrival
        self.observer.on_finish(finish, seq.prompt_len, seq.generated, e2e)

    def _shutdown(self) -> None:
        gone = Unavailable(f"model {self.name!r} was unloaded")
        with self._cond:
            waiting, self._waiting = list(self._waiting), collections.deque()
        for seq in [*self._running, *waiting]:
            self._finish(seq, Finish.ERROR, error=gone)


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
