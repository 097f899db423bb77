"""The bench's table: one :class:`Row` per figure, written as Markdown."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    section: str
    what: str
    value: float | str
    unit: str
    ratio: str = ""
    target: str = ""


def _shown(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.3g}"


def markdown(rows: list[Row]) -> str:
    lines = ["| section | what | value | unit | ratio | target |", "|---|---|---:|---|---|---|"]
    lines += [
        f"| {r.section} | {r.what} | {_shown(r.value)} | {r.unit} | {r.ratio} | {r.target} |"
        for r in rows
    ]
    return "\n".join(lines)
