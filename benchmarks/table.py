"""The results table: one row per measurement, its ratio to the same run's baseline, the
target (issue 8) and whether it is met."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    measurement: str
    value: str
    ratio: float | None = None
    ratio_of: str = ""  # what the ratio is to, e.g. "x no-op"
    target: str = ""
    met: bool | None = None
    detail: str = ""


def render(rows: list[Row]) -> str:
    header = ("Measurement", "Value", "Ratio", "Target", "Met")
    lines = [
        (
            row.measurement,
            row.value,
            f"{row.ratio:.2f}{row.ratio_of}" if row.ratio is not None else "",
            row.target,
            "" if row.met is None else "yes" if row.met else "NO",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) for cell, width in zip(cells, widths, strict=True)
        ).rstrip()

    out = [fmt(header), fmt(tuple("-" * w for w in widths))]
    for row, line in zip(rows, lines, strict=True):
        out.append(fmt(line))
        if row.detail:
            out.append("    " + row.detail)
    return "\n".join(out)
