"""A results document written once and rendered twice: as Markdown (``findings.md``, for the
repository and the README) and as one self-contained HTML page (``findings.html``, shown inside
the Snakemake report, where a CSV would only get a download button).

A document is a list of blocks: :class:`Heading`, :class:`Paragraph`, :class:`Bullets` and
:class:`Table` (a header, rows of cells and an optional caption). Text may use two inline marks,
``**bold**`` and ```code```; Markdown keeps them, HTML turns them into ``<strong>`` and
``<code>`` after escaping everything else. The HTML page has its style inline and loads nothing,
so it displays offline and inside the report's frame.
"""

from __future__ import annotations

import html as html_module
import re
from dataclasses import dataclass
from typing import Sequence, Union


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 1


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[object]]
    caption: str | None = None


Block = Union[Heading, Paragraph, Bullets, Table]


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def titled_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]],
                 caption: str = "", empty: str = "No runs.") -> list[Block]:
    """A page of one table: its heading and the table, or the heading and ``empty`` where
    there are no rows."""
    if not rows:
        return [Heading(title), Paragraph(empty)]
    return [Heading(title), Table(list(header), [list(r) for r in rows], caption=caption)]


def md_cell(text) -> str:
    """A Markdown table cell: a '|' inside it (as in |bias gap|) would end the cell."""
    return str(text).replace("|", "\\|")


def md_row(cells) -> str:
    return "| " + " | ".join(md_cell(c) for c in cells) + " |"


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return [md_row(header), "|" + "---|" * len(header)] + [md_row(r) for r in rows]


def markdown(blocks: Sequence[Block]) -> str:
    """The document as Markdown: a blank line between blocks; a table's caption is the
    paragraph before it."""
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            if block.caption:
                parts.append(block.caption)
            parts.append("\n".join(md_table(block.header, block.rows)))
        else:
            raise TypeError(f"not a document block: {block!r}")
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_INLINE = re.compile(r"\*\*(.+?)\*\*|`(.+?)`")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 14px;
       color: #1e293b; margin: 1.2em; line-height: 1.45; }
h1 { font-size: 1.35em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
p, li { max-width: 75em; }
.scroll { overflow-x: auto; margin: 0.6em 0 1.2em 0; }
table { border-collapse: collapse; font-size: 12.5px; }
caption { caption-side: top; text-align: left; padding: 0 0 0.6em 0; max-width: 75em;
          color: #334155; }
th, td { border: 1px solid #cbd5e1; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #e2e8f0; position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #f8fafc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { background: #f1f5f9; padding: 0 3px; border-radius: 3px; }
"""

_NUMBER = re.compile(r"^[-+−]?[\d.]+(e[-+]?\d+)?$")


def inline_html(text) -> str:
    """Escape ``text`` for HTML and turn its ``**bold**`` and ```code``` marks into tags."""
    escaped = html_module.escape(str(text), quote=False)
    return _INLINE.sub(lambda m: f"<strong>{m.group(1)}</strong>" if m.group(1) is not None
                       else f"<code>{m.group(2)}</code>", escaped)


def _html_table(table: Table) -> str:
    lines = ['<div class="scroll"><table>']
    if table.caption:
        lines.append(f"<caption>{inline_html(table.caption)}</caption>")
    lines.append("<thead><tr>" + "".join(f'<th scope="col">{inline_html(h)}</th>'
                                        for h in table.header) + "</tr></thead>")
    lines.append("<tbody>")
    for row in table.rows:
        cells = []
        for cell in row:
            css = ' class="num"' if _NUMBER.match(str(cell)) else ""
            cells.append(f"<td{css}>{inline_html(cell)}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def html(blocks: Sequence[Block], title: str) -> str:
    """The document as one HTML page with its style inline and no script."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            body.append(f"<h{level}>{inline_html(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in block.items)
                        + "</ul>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        else:
            raise TypeError(f"not a document block: {block!r}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html_module.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
            "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def write(blocks: Sequence[Block], markdown_path=None, html_path=None, title: str = "") -> None:
    """The document as Markdown and/or HTML, each written atomically where a path is given."""
    from ..formats.atomic import write_text

    if markdown_path is not None:
        write_text(markdown_path, markdown(blocks))
    if html_path is not None:
        write_text(html_path, html(blocks, title))
