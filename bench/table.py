"""Print the one table: measure | SQLite | PostgreSQL | baseline | ratio | target | ok?"""

from __future__ import annotations

from dataclasses import dataclass

HEADER = ("measure", "SQLite", "PostgreSQL", "baseline", "ratio", "target", "ok?")


@dataclass(frozen=True)
class Row:
    """One line of the table; ``ok`` is None where there is no target to meet."""

    measure: str
    sqlite: str
    postgresql: str
    baseline: str = "—"
    ratio: str = "—"
    target: str = "—"
    ok: bool | None = None

    def cells(self) -> tuple[str, ...]:
        """Return the row's text, left to right."""
        verdict = "—" if self.ok is None else ("yes" if self.ok else "NO")
        return (
            self.measure,
            self.sqlite,
            self.postgresql,
            self.baseline,
            self.ratio,
            self.target,
            verdict,
        )


def render(rows: list[Row]) -> str:
    """Return the rows as an aligned markdown table."""
    lines = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]

    def fmt(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(HEADER), rule, *(fmt(cells) for cells in lines[1:])])
