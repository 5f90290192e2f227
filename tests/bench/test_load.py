"""The load loops and the progress bar with a client of our own on the `Client` seam: an open
loop keeps its schedule when the server falls behind, and counts the wait in the latency."""

from __future__ import annotations

import asyncio
import io

from modelyard.bench.clients import Outcome
from modelyard.bench.load import run_step
from modelyard.bench.options import Step
from modelyard.cli_progress import StepBar


class OneAtATime:
    """A server that answers one request at a time, each in `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = asyncio.Lock()
        self.sent = 0

    async def send(self, index: int) -> Outcome:
        self.sent += 1
        async with self.lock:
            await asyncio.sleep(self.seconds)
        return Outcome()

    async def close(self) -> None:
        return None


def test_open_loop_latency_counts_from_the_scheduled_time() -> None:
    async def go() -> tuple[list[float], int]:
        client = OneAtATime(0.04)  # 25/s at most, asked for 100/s
        result = await run_step(client, Step("rate", 100), 0.5, 0, poisson=False)
        return sorted(s.latency for s in result.samples), client.sent

    latencies, sent = asyncio.run(go())
    assert sent in (50, 51)  # every scheduled request went out, answered or not
    assert latencies[0] < 0.3
    # 2 s of work scheduled within 0.5 s: the last request, due at 0.49 s, is answered near
    # 2 s, and its latency counts all of that wait
    assert latencies[-1] > 1.2


def test_closed_loop_keeps_c_in_flight_and_stops_at_the_count() -> None:
    async def go() -> tuple[int, float]:
        client = OneAtATime(0.01)
        result = await run_step(client, Step("concurrency", 4), 10, 12)
        return len(result.samples), max(s.latency for s in result.samples)

    count, worst = asyncio.run(go())
    assert count == 12
    assert worst >= 0.035  # with 4 in flight a request waits behind the 3 others


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_step_bar_draws_on_a_terminal_only() -> None:
    screen = Terminal()
    bar = StepBar("c=4", 10, "s", stream=screen)
    bar.show(5.0, 1234, 246.8, 2)
    bar.done()
    drawn = screen.getvalue()
    assert "c=4 ▕████████████            ▏ 5.0/10 s  1,234 requests  247/s  2 errors" in drawn
    assert drawn.endswith("\r\x1b[K")
    pipe = io.StringIO()
    quiet = StepBar("c=4", 100, "req", stream=pipe)
    quiet.show(50, 50, 10.0, 0)
    quiet.done()
    assert pipe.getvalue() == ""
