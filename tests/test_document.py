"""One document, two renderings: the Markdown and the HTML page hold the same cells."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from nnboundary.reporting import document
from nnboundary.reporting.document import Bullets, Heading, Paragraph, Table


class _Cells(HTMLParser):
    """The text of every <th>/<td>, the <caption> and whether a <script> occurs."""

    def __init__(self):
        super().__init__()
        self.cells, self.caption, self.scripts, self._in = [], "", 0, None

    def handle_starttag(self, tag, attrs):
        if tag in ("th", "td", "caption"):
            self._in = tag
            if tag != "caption":
                self.cells.append("")
        self.scripts += tag == "script"

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "caption":
            self.caption += data
        elif self._in:
            self.cells[-1] += data


BLOCKS = [
    Heading("Findings"),
    Table(["dataset", "|gap to svc|", "verdict"],
          [["blobs", "0.0068", "**holds**"], ["a<b & c", "−1.5e-09", "`x`"]],
          caption="Angles in degrees; |gap| in half gaps."),
    Heading("Claims", 2),
    Bullets(["`direction`: converges.", "two"]),
    Paragraph("None: every seed's final checkpoint is valid."),
]


def test_markdown_rendering():
    text = document.markdown(BLOCKS)
    assert text.startswith("# Findings\n\nAngles in degrees; |gap| in half gaps.\n\n")
    assert "| dataset | \\|gap to svc\\| | verdict |\n|---|---|---|\n" in text
    assert "| blobs | 0.0068 | **holds** |" in text
    assert "\n\n## Claims\n\n- `direction`: converges.\n- two\n\nNone:" in text
    assert text.endswith("valid.\n")


def test_html_holds_the_same_cells_escaped_and_marked_up():
    page = document.html(BLOCKS, "Findings")
    parser = _Cells()
    parser.feed(page)
    assert parser.cells == ["dataset", "|gap to svc|", "verdict", "blobs", "0.0068", "holds",
                            "a<b & c", "−1.5e-09", "x"]
    assert parser.caption == "Angles in degrees; |gap| in half gaps."
    assert parser.scripts == 0
    assert "<strong>holds</strong>" in page and "<code>x</code>" in page
    assert "a&lt;b &amp; c" in page
    assert '<td class="num">0.0068</td>' in page and '<td class="num">−1.5e-09</td>' in page
    assert "<h2>Claims</h2>" in page and "<li><code>direction</code>: converges.</li>" in page
    # Self-contained: nothing is fetched.
    assert not re.search(r"(src|href)=", page)


def test_unknown_block_is_an_error():
    with pytest.raises(TypeError, match="not a document block"):
        document.markdown(["plain string"])
