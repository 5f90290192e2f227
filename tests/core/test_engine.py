"""The continuous-batching engine over a fake backend (no llama.cpp): scheduling, stop
conditions, aborts, the waiting limit and prefix reuse."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TypedDict, Unpack

import pytest

from modelyard.core.engine import Engine
from modelyard.errors import InvalidArgument, ResourceExhausted
from modelyard.spec.generation import (
    Delta,
    Finish,
    GenerationRequest,
    SamplingParams,
    TokenLogprob,
)

END = 0


class Sampling(TypedDict, total=False):
    """The SamplingParams fields these tests set."""

    max_tokens: int | None
    stop: tuple[str, ...]
    stop_token_ids: frozenset[int]
    ignore_eos: bool
    min_tokens: int


class FakeSampler:
    """Next token = previous token + 1 (wrapping before END unless the end is allowed)."""

    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend
        self.end_allowed = True

    def sample(self, row: int) -> int:
        token = self.backend.last_rows[row][2] + 1
        if token >= self.backend.end_at:
            return END if self.end_allowed else 1
        return token

    def allow_end(self, allowed: bool) -> None:
        self.end_allowed = allowed

    def close(self) -> None:
        pass


class FakeBackend:
    n_ctx = 64

    def __init__(
        self,
        n_slots: int = 2,
        n_batch: int = 8,
        end_at: int = 1000,
        gate: threading.Event | None = None,
    ) -> None:
        self.n_slots = n_slots
        self.n_cells = self.n_ctx * n_slots
        self.n_batch = n_batch
        self.end_at = end_at
        self.gate = gate
        self.steps: list[list[tuple[int, int, int, bool]]] = []
        self.last_rows: list[tuple[int, int, int, bool]] = []
        self.kept: list[tuple[int, int]] = []
        self.shared: list[tuple[int, int, int]] = []
        #: cells each slot holds, and the most held at once after any decode
        self.cells: dict[int, int] = {}
        self.most_cells = 0

    def decode(self, rows: Sequence[tuple[int, int, int, bool]]) -> None:
        if self.gate is not None:
            self.gate.wait(5)
        self.last_rows = list(rows)
        self.steps.append(list(rows))
        for slot, position, _, _ in rows:
            self.cells[slot] = max(self.cells.get(slot, 0), position + 1)
        self.most_cells = max(self.most_cells, sum(self.cells.values()))

    def new_sampler(self, params: SamplingParams) -> FakeSampler:
        return FakeSampler(self)

    def logprobs(self, row: int, token: int, top: int) -> TokenLogprob:
        return TokenLogprob(token, b"x", -0.5)

    def is_end(self, token: int) -> bool:
        return token == END

    def piece(self, token: int) -> bytes:
        return chr(ord("a") + token % 26).encode()

    def keep(self, slot: int, n: int) -> int:
        self.kept.append((slot, n))
        self.cells[slot] = min(self.cells.get(slot, 0), n)
        return n

    def share(self, source: int, slot: int, n: int) -> int:
        self.shared.append((source, slot, n))
        self.cells[slot] = n
        return n

    def close(self) -> None:
        pass


def run(
    engine: Engine, prompt: list[int], request_id: str = "r", **params: Unpack[Sampling]
) -> list[Delta]:
    deltas: queue.SimpleQueue[Delta] = queue.SimpleQueue()
    engine.submit(GenerationRequest(request_id, prompt, SamplingParams(**params)), deltas.put)
    out: list[Delta] = []
    while not out or out[-1].finish is None:
        out.append(deltas.get(timeout=5))
    return out


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def engine(backend: FakeBackend) -> Iterator[Engine]:
    engine = Engine(backend, name="fake")
    yield engine
    engine.close()


def test_generates_until_max_tokens(engine: Engine) -> None:
    deltas = run(engine, [1, 2, 3], max_tokens=5)
    assert [d.tokens for d in deltas] == [[4], [5], [6], [7], [8]]
    assert "".join(d.text for d in deltas) == "efghi"
    assert deltas[-1].finish is Finish.LENGTH
    assert deltas[-1].completion_tokens == 5 and deltas[-1].prompt_tokens == 3


def test_end_token_stops_unless_ignored(backend: FakeBackend, engine: Engine) -> None:
    backend.end_at = 6
    assert run(engine, [3], max_tokens=10)[-1].finish is Finish.STOP
    assert len(run(engine, [3], max_tokens=10, ignore_eos=True)) == 10
    assert len(run(engine, [3], max_tokens=10, min_tokens=4)) >= 4


def test_stop_string_across_tokens(engine: Engine) -> None:
    deltas = run(engine, [1], max_tokens=20, stop=("fgh",))
    assert "".join(d.text for d in deltas) == "cde"
    assert deltas[-1].finish is Finish.STOP


def test_stop_token_ids(engine: Engine) -> None:
    deltas = run(engine, [1], max_tokens=20, stop_token_ids=frozenset({5}))
    assert deltas[-1].finish is Finish.STOP and deltas[-1].tokens == [5]


def test_sequences_share_steps_and_prompts_are_chunked(backend: FakeBackend) -> None:
    gate = threading.Event()
    backend.gate = gate
    engine = Engine(backend, name="fake")
    try:
        sinks: list[queue.SimpleQueue[Delta]] = [queue.SimpleQueue(), queue.SimpleQueue()]
        engine.submit(
            GenerationRequest("a", list(range(1, 13)), SamplingParams(max_tokens=3)), sinks[0].put
        )
        engine.submit(GenerationRequest("b", [1, 2], SamplingParams(max_tokens=3)), sinks[1].put)
        gate.set()
        for sink in sinks:
            while sink.get(timeout=5).finish is None:
                pass
    finally:
        engine.close()
    assert all(len(step) <= backend.n_batch for step in backend.steps)
    assert any(len({row[0] for row in step}) == 2 for step in backend.steps)


def test_prompt_prefix_is_reused(backend: FakeBackend, engine: Engine) -> None:
    run(engine, [1, 2, 3, 4], max_tokens=2)
    deltas = run(engine, [1, 2, 3, 9], max_tokens=2)
    assert deltas[-1].cached_tokens == 3
    assert backend.kept[-1][1] == 3


def _together(
    engine: Engine, prompts: dict[str, list[int]], gate: threading.Event
) -> dict[str, list[Delta]]:
    """Submit every prompt while the backend is held, then let it go; each one's deltas."""
    sinks = {name: queue.SimpleQueue[Delta]() for name in prompts}
    for name, prompt in prompts.items():
        engine.submit(
            GenerationRequest(name, prompt, SamplingParams(max_tokens=3)), sinks[name].put
        )
    gate.set()
    out: dict[str, list[Delta]] = {}
    for name, sink in sinks.items():
        out[name] = [sink.get(timeout=5)]
        while out[name][-1].finish is None:
            out[name].append(sink.get(timeout=5))
    return out


def test_live_sequences_share_a_prompt_prefix(backend: FakeBackend) -> None:
    """b starts like a (20 tokens): it waits for a to read them (in chunks that end at the
    boundary), takes a's cells, and reads only its own tail."""
    backend.gate = threading.Event()
    engine = Engine(backend, name="fake")
    prefix = list(range(1, 21))
    try:
        out = _together(engine, {"a": [*prefix, 30], "b": [*prefix, 40]}, backend.gate)
    finally:
        engine.close()
    assert out["b"][-1].cached_tokens == 20 and out["a"][-1].cached_tokens == 0
    assert backend.shared == [(0, 1, 20)]
    b_rows = [row for step in backend.steps for row in step if row[0] == 1]
    assert min(position for _, position, _, _ in b_rows) == 20  # the prefix was not read again
    a_chunk_ends = [max(r[1] for r in step if r[0] == 0) for step in backend.steps]
    assert 19 in a_chunk_ends  # a stopped at the boundary before reading on
    assert [d.tokens for d in out["b"]] == [[41], [42], [43]]


def test_without_prefix_cache_live_sequences_read_their_own_prompts(backend: FakeBackend) -> None:
    backend.gate = threading.Event()
    engine = Engine(backend, name="fake", prefix_cache=False)
    prefix = list(range(1, 21))
    try:
        out = _together(engine, {"a": [*prefix, 30], "b": [*prefix, 40]}, backend.gate)
    finally:
        engine.close()
    assert backend.shared == [] and out["b"][-1].cached_tokens == 0


def test_short_common_prefixes_are_read_alone(backend: FakeBackend) -> None:
    backend.gate = threading.Event()
    engine = Engine(backend, name="fake")
    try:
        out = _together(engine, {"a": [1, 2, 3, 4, 5], "b": [1, 2, 3, 9]}, backend.gate)
    finally:
        engine.close()
    assert backend.shared == [] and out["b"][-1].cached_tokens == 0


def test_a_follower_of_a_leader_that_stops_early_takes_what_it_read(backend: FakeBackend) -> None:
    """a is aborted while reading the 20 tokens b shares with it: b takes what a read (a's
    slot keeps it as a prefix cache) and reads the rest itself."""
    gate = threading.Event()
    backend.gate = gate
    engine = Engine(backend, name="fake")
    prefix = list(range(1, 21))
    try:
        first: queue.SimpleQueue[Delta] = queue.SimpleQueue()
        engine.submit(
            GenerationRequest("a", [*prefix, 30], SamplingParams(max_tokens=3)), first.put
        )
        second: queue.SimpleQueue[Delta] = queue.SimpleQueue()
        engine.submit(
            GenerationRequest("b", [*prefix, 40], SamplingParams(max_tokens=3)), second.put
        )
        engine.abort("a")
        gate.set()
        deltas = [second.get(timeout=5)]
        while deltas[-1].finish is None:
            deltas.append(second.get(timeout=5))
    finally:
        engine.close()
    # b took a's 8 cells as a follower, or from a's freed slot (when a was aborted before b
    # was admitted), or nothing (when a was aborted before reading anything)
    assert deltas[-1].cached_tokens in (0, 8)
    assert all(n == 8 for _, _, n in backend.shared)
    assert [d.tokens for d in deltas] == [[41], [42], [43]]


def test_sequences_wait_for_cells_and_the_last_admitted_is_preempted() -> None:
    """Four slots but cells for about two sequences: requests start as cells free up; when
    the running ones outgrow the cells, the last admitted is preempted, reads its tokens
    again later, and every request still gets exactly its own tokens."""
    backend = FakeBackend(n_slots=4, n_batch=16)
    backend.n_cells = 64
    backend.gate = threading.Event()
    engine = Engine(backend, name="fake")
    prompts = {f"r{k}": [k * 100 + i for i in range(1, 11)] for k in range(4)}
    sinks = {name: queue.SimpleQueue[Delta]() for name in prompts}
    try:
        for name, prompt in prompts.items():
            request = GenerationRequest(name, prompt, SamplingParams(max_tokens=24))
            engine.submit(request, sinks[name].put)
        backend.gate.set()
        for name, sink in sinks.items():
            deltas = [sink.get(timeout=5)]
            while deltas[-1].finish is None:
                deltas.append(sink.get(timeout=5))
            start = prompts[name][-1]
            assert [t for d in deltas for t in d.tokens] == list(range(start + 1, start + 25))
        assert engine.preemptions > 0
    finally:
        engine.close()
    assert 32 < backend.most_cells <= 64  # more than one sequence's, never more than there are


def test_abort_frees_the_slot(backend: FakeBackend) -> None:
    backend.n_slots = 1
    engine = Engine(backend, name="fake")
    try:
        got: queue.SimpleQueue[Delta] = queue.SimpleQueue()
        engine.submit(GenerationRequest("long", [1], SamplingParams(max_tokens=60)), got.put)
        got.get(timeout=5)
        engine.abort("long")
        assert run(engine, [1], "next", max_tokens=2)[-1].finish is Finish.LENGTH
        assert engine.running == 0
    finally:
        engine.close()


def test_waiting_limit_and_context_limit(backend: FakeBackend) -> None:
    gate = threading.Event()
    backend.gate = gate
    backend.n_slots = 1
    engine = Engine(backend, name="fake", max_waiting=1)
    try:
        sink: queue.SimpleQueue[Delta] = queue.SimpleQueue()
        engine.submit(GenerationRequest("a", [1], SamplingParams(max_tokens=2)), sink.put)
        deadline = time.monotonic() + 5
        while engine.running == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        engine.submit(GenerationRequest("b", [1], SamplingParams(max_tokens=2)), sink.put)
        with pytest.raises(ResourceExhausted):
            engine.submit(GenerationRequest("c", [1], SamplingParams()), sink.put)
        with pytest.raises(InvalidArgument, match="at most 63"):
            engine.submit(GenerationRequest("d", [1] * 64, SamplingParams()), sink.put)
    finally:
        gate.set()
        engine.close()


def test_context_full_ends_with_length(engine: Engine) -> None:
    deltas = run(engine, [1] * 60, ignore_eos=True)
    assert deltas[-1].finish is Finish.LENGTH
    assert deltas[-1].completion_tokens == 4


def test_close_fails_waiting_requests(backend: FakeBackend) -> None:
    gate = threading.Event()
    backend.gate = gate
    engine = Engine(backend, name="fake")
    sink: queue.SimpleQueue[Delta] = queue.SimpleQueue()
    engine.submit(GenerationRequest("a", [1], SamplingParams(max_tokens=50)), sink.put)
    closer = threading.Thread(target=engine.close)
    closer.start()
    gate.set()
    closer.join(5)
    last = None
    while not sink.empty():
        last = sink.get()
    assert last is not None and last.finish is not None


def test_without_prefix_cache_cells_are_freed_at_once(backend: FakeBackend) -> None:
    engine = Engine(backend, name="fake", prefix_cache=False)
    try:
        run(engine, [1, 2, 3, 4], max_tokens=2)
        assert backend.kept[-1][1] == 0
        assert run(engine, [1, 2, 3, 9], max_tokens=2)[-1].cached_tokens == 0
    finally:
        engine.close()


def test_a_failing_sampler_ends_only_its_request(backend: FakeBackend) -> None:
    class Broken(FakeSampler):
        def sample(self, row: int) -> int:
            raise RuntimeError("no token")

    samplers = iter([Broken(backend)])
    backend.new_sampler = lambda params: next(samplers, FakeSampler(backend))  # type: ignore[method-assign]
    engine = Engine(backend, name="fake")
    try:
        broken = run(engine, [1], "broken", max_tokens=3)
        assert broken[-1].finish is Finish.ERROR and isinstance(broken[-1].error, RuntimeError)
        assert run(engine, [1], "fine", max_tokens=3)[-1].finish is Finish.LENGTH
    finally:
        engine.close()


class PoisonBackend(FakeBackend):
    """Fails any decode whose rows hold the token POISON."""

    POISON = 999

    def decode(self, rows: Sequence[tuple[int, int, int, bool]]) -> None:
        if any(row[2] == self.POISON for row in rows):
            raise RuntimeError("llama_decode failed")
        super().decode(rows)


def test_a_row_that_breaks_a_step_fails_only_its_sequence() -> None:
    backend = PoisonBackend(n_slots=2, gate=threading.Event())
    engine = Engine(backend, name="poison")
    try:
        good: queue.SimpleQueue[Delta] = queue.SimpleQueue()
        bad: queue.SimpleQueue[Delta] = queue.SimpleQueue()
        engine.submit(GenerationRequest("good", [1, 2], SamplingParams(max_tokens=4)), good.put)
        engine.submit(GenerationRequest("bad", [1, backend.POISON], SamplingParams()), bad.put)
        assert backend.gate is not None
        backend.gate.set()  # both are admitted and decoded in one step
        failed = bad.get(timeout=5)
        assert failed.finish is Finish.ERROR and "llama_decode" in str(failed.error)
        deltas = [good.get(timeout=5) for _ in range(4)]
        assert [d.tokens for d in deltas] == [[3], [4], [5], [6]]
        assert deltas[-1].finish is Finish.LENGTH and deltas[-1].error is None
        assert (0, 0) in backend.kept or (1, 0) in backend.kept  # its step was cut first
    finally:
        engine.close()
