"""The printed report: the table, modelyard's ratios to the peers, and the limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from load import Cell
from targets import Target


@dataclass
class Outcome:
    target: Target
    cells: dict[int, Cell] = field(default_factory=dict)
    ready_s: float | None = None
    rss_mib: float | None = None
    error: str | None = None


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _rps(cell: Cell) -> str:
    text = f"{cell.rps:,.0f}"
    return f"{text} ({cell.errors} err)" if cell.errors else text


def table(outcomes: list[Outcome], levels: list[int]) -> list[str]:
    head = ["target"] + [f"c={c} {k}" for c in levels for k in ("req/s", "p50 ms", "p99 ms")]
    head += ["ready s", "RSS MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for outcome in outcomes:
        row = [outcome.target.name]
        for c in levels:
            cell = outcome.cells.get(c)
            row += [_rps(cell), _ms(cell.p50_ms), _ms(cell.p99_ms)] if cell else ["—"] * 3
        row.append(f"{outcome.ready_s:.1f}" if outcome.ready_s is not None else "—")
        row.append(f"{outcome.rss_mib:.0f}" if outcome.rss_mib is not None else "—")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _best(outcomes: list[Outcome], group: str, c: int) -> Outcome | None:
    found = [
        o for o in outcomes if o.target.group == group and c in o.cells and not o.cells[c].errors
    ]
    return max(found, key=lambda o: o.cells[c].rps, default=None)


def _versus(mine: Cell, other: Outcome | None, c: int, label: str) -> str:
    if other is None:
        return f"no {label} result"
    theirs = other.cells[c]
    return (
        f"{mine.rps / theirs.rps:.2f}x {label} {other.target.name} "
        f"({theirs.rps:,.0f} req/s, p99 {_ms(theirs.p99_ms)} ms)"
    )


def ratios(outcomes: list[Outcome], levels: list[int]) -> list[str]:
    lines = []
    for outcome in (o for o in outcomes if o.target.group == "modelyard"):
        for c in levels:
            mine = outcome.cells.get(c)
            if mine is None:
                continue
            peer = _versus(mine, _best(outcomes, "python", c), c, "best Python peer")
            triton = _versus(mine, _best(outcomes, "triton", c), c, "Triton")
            lines.append(
                f"{outcome.target.name} c={c}: {mine.rps:,.0f} req/s, p99 "
                f"{_ms(mine.p99_ms)} ms = {peer}; {triton}"
            )
    return lines


def limits(ort: dict[int, float], outcomes: list[Outcome], levels: list[int]) -> list[str]:
    lines = [
        "in-process onnxruntime, rows/s by batch (no HTTP; best of before and after): "
        + ", ".join(f"{b} -> {r:,.0f}" for b, r in ort.items())
    ]
    by_name = {o.target.name: o for o in outcomes}
    floor, inline, mine = (by_name.get(n) for n in ("floor", "inline", "modelyard"))
    top = max(levels)
    if floor and top in floor.cells and 64 in ort:
        composed = 1 / (1 / floor.cells[top].rps + 1 / ort[64])
        lines.append(
            f"composed limit 1/(1/floor@c={top} + 1/ort@64) = 1/(1/"
            f"{floor.cells[top].rps:,.0f} + 1/{ort[64]:,.0f}) = {composed:,.0f} req/s"
        )
        if mine and top in mine.cells:
            lines.append(
                f"modelyard c={top}: {mine.cells[top].rps / composed:.0%} of the composed limit"
            )
    low = min(levels)
    if inline and mine and low in inline.cells and low in mine.cells:
        gap = mine.cells[low].p50_ms - inline.cells[low].p50_ms
        lines.append(
            f"modelyard c={low} p50 {_ms(mine.cells[low].p50_ms)} ms vs inline "
            f"{_ms(inline.cells[low].p50_ms)} ms: {gap:+.2f} ms"
        )
    return lines


def render(outcomes: list[Outcome], levels: list[int], ort: dict[int, float]) -> str:
    lines = table(outcomes, levels)
    failed = [o for o in outcomes if o.error]
    if failed:
        lines += ["", "could not run:"] + [f"- {o.target.name}: {o.error}" for o in failed]
    lines += ["", *ratios(outcomes, levels), "", *limits(ort, outcomes, levels)]
    lines += ["", "targets:"] + [f"- {o.target.name}: {o.target.note}" for o in outcomes]
    return "\n".join(lines)
