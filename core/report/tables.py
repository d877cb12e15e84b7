"""One table, two renderings: HTML for the report page, Markdown for the README
(``python -m core.report --table NAME`` prints it, so README tables are pasted from real
output)."""
from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in self.rows)
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f"<table>{cap}<tr>{head}</tr>{body}</table>"

    def markdown(self) -> str:
        def cell(c: str) -> str:
            return c.replace("|", "\\|").replace("\n", " ")
        lines = ["| " + " | ".join(cell(h) for h in self.header) + " |",
                 "| " + " | ".join("---" for _ in self.header) + " |"]
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in self.rows]
        return ("\n".join(lines) + (f"\n\n{self.caption}" if self.caption else "")) + "\n"
