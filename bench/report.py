"""What every bench script does the same way: latency timing, tables (plain or Markdown),
the load average."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence


def render_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool, numeric_from: int = 1
) -> str:
    """Columns from ``numeric_from`` on are right-aligned (numbers); the others left."""
    if markdown:
        rule = ["---:" if k >= numeric_from else "---" for k in range(len(header))]
        lines = [f"| {' | '.join(header)} |", f"| {' | '.join(rule)} |"]
        lines += [f"| {' | '.join(row)} |" for row in rows]
        return "\n".join(lines)
    table = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[k]) for row in table) for k in range(len(header))]

    def line(row: list[str]) -> str:
        cells = [
            cell.rjust(w) if k >= numeric_from else cell.ljust(w)
            for k, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    out = [line(table[0]), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in table[1:]]
    return "\n".join(out)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine slows everything."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(
    fns: Sequence[Callable[[], object]], runs: int, warmup: int = 10
) -> list[tuple[float, float]]:
    """(median, p90) wall milliseconds of each of ``fns``, called in turn run after run so
    that the load of other processes weighs on all of them alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            out.append((time.perf_counter() - start) * 1000.0)
    return [(statistics.median(t), percentile(t, 0.9)) for t in times]
