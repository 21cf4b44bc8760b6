"""Plain-text output for people: aligned tables that fit the terminal."""

from __future__ import annotations

import shutil
import sys


def table(headers: list[str], rows: list[list[str]], *, max_width: int | None = None) -> str:
    """Columns aligned; the last column is cut to the terminal's width."""
    width = max_width or shutil.get_terminal_size((120, 24)).columns
    cells = [headers, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    fixed = sum(widths[:-1]) + 2 * (len(widths) - 1)
    widths[-1] = max(20, min(widths[-1], width - fixed))
    lines = []
    for index, row in enumerate(cells):
        parts = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        last = row[-1]
        if len(last) > widths[-1]:
            last = last[: widths[-1] - 1] + "…"
        lines.append("  ".join([*parts, last]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_stderr(text: str) -> None:
    """Progress output: to stderr (stdout stays for results and --json), unbuffered."""
    sys.stderr.write(text)
    sys.stderr.flush()
