"""What every bench script prints the same way: tables (plain or Markdown) and the load."""

from __future__ import annotations

import os
from collections.abc import Sequence


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
