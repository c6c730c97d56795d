"""Render an HTML mail body as plain text that keeps what mail parsing needs.

Three things survive the conversion on purpose:

* ``<blockquote>`` depth becomes a ``> `` prefix per level, so quoted text in
  HTML-only replies looks like quoted text in ``text/plain`` ones and one
  reply stripper serves both;
* table rows become one line with cells separated by a tab, so an intake form
  sent as ``<td>Título</td><td>…</td>`` reads as a labelled line (Outlook wraps each
  cell's text in a ``<p>``: a paragraph opens a new line only after text in the cell);
* link targets that differ from the link text are kept after it, so a
  ``PUBLICADO`` reply whose URL hides behind "ver publicación" still has it.

The input is truncated to :data:`MAX_HTML_CHARS` first: mail HTML larger than
that is not a human reply, and the bound keeps parse time predictable.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

MAX_HTML_CHARS = 512 * 1024

_SKIP = frozenset({"script", "style", "head", "title", "template", "xml"})
# fmt: off
_BLOCK = frozenset(
    {
        "address", "article", "aside", "dd", "div", "dl", "dt", "footer", "form",
        "h1", "h2", "h3", "h4", "h5", "h6", "header", "li", "main", "nav", "ol",
        "p", "pre", "section", "table", "tbody", "thead", "tfoot", "ul",
    }
)
# fmt: on
_CELL = frozenset({"td", "th"})
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0\u200b]+")
_HR_LINE = "_" * 32
# A "<" with no ">" before the next "<" opens no tag. html.parser rescans the rest of the
# input for the end of each such would-be tag: 8,000 "<div " took 11 s, 100 kB hours.
_LONE_LT = re.compile(r"<(?=[^<>]*(?:<|\Z))")


class _Renderer(HTMLParser):
    """Collect text lines from HTML events; see the module docstring."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._line_depth = 0
        self._quote_depth = 0
        self._skip_depth = 0
        self._pre_depth = 0
        self._cells_in_row = 0
        self._cell_depth = 0
        self._cell_has_text = False
        self._href: list[str] = []
        self._nbsp = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip_depth += 1
        elif tag == "br":
            self._newline(force=True)
        elif tag == "hr":
            self._newline()
            self._emit(_HR_LINE)
            self._newline()
        elif tag == "blockquote":
            self._newline()
            self._quote_depth += 1
        elif tag == "tr":
            self._newline()
            self._cells_in_row = 0
        elif tag in _CELL:
            if self._cells_in_row:
                self._line.append("\t")
            self._cells_in_row += 1
            self._cell_depth += 1
            self._cell_has_text = False
        elif tag == "a":
            self._href.append(dict(attrs).get("href") or "")
        elif tag in _BLOCK:
            if not self._cell_depth or self._cell_has_text:
                self._newline()
            self._pre_depth += tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "blockquote":
            self._newline()
            self._quote_depth = max(0, self._quote_depth - 1)
        elif tag == "tr":
            self._newline()
            self._cell_depth = 0
        elif tag in _CELL:
            self._cell_depth = max(0, self._cell_depth - 1)
        elif tag == "a" and self._href:
            href = self._href.pop()
            if href.startswith(("http://", "https://")) and href not in "".join(self._line):
                self._emit(f" <{href}>")
        elif tag in _BLOCK:
            self._pre_depth = max(0, self._pre_depth - (tag == "pre"))
            if not self._cell_depth:
                self._newline()

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre_depth:
            parts = data.split("\n")
            for index, part in enumerate(parts):
                if index:
                    self._newline(force=True)
                self._emit(part)
            return
        if "\u00a0" in data and not data.strip():
            self._nbsp = True
        self._emit(_SPACES.sub(" ", data))

    def close(self) -> None:
        super().close()
        self._newline()

    def _emit(self, text: str) -> None:
        if not text:
            return
        if self._cell_depth and text.strip():
            self._cell_has_text = True
        if not "".join(self._line).strip():
            self._line_depth = self._quote_depth
        self._line.append(text)

    def _newline(self, *, force: bool = False) -> None:
        text = "".join(self._line).strip(" ")
        self._line = []
        if text or force or self._nbsp:
            depth = self._line_depth if text else self._quote_depth
            self.lines.append("> " * depth + text)
        self._nbsp = False
        self._line_depth = self._quote_depth


def _tame(html: str) -> str:
    """Remove what makes html.parser quadratic: comments and lone ``<``, in linear time.

    An unclosed comment hides the rest of the document, as in a browser; each lone
    ``<`` becomes ``&lt;`` text.
    """
    kept: list[str] = []
    start = 0
    while (opening := html.find("<!--", start)) >= 0:
        kept.append(html[start:opening])
        closing = html.find("-->", opening + 4)
        if closing < 0:
            start = len(html)
            break
        start = closing + 3
    kept.append(html[start:])
    return _LONE_LT.sub("&lt;", "".join(kept))


def html_to_text(html: str) -> str:
    """Convert an HTML body to plain text with quote prefixes and tab-separated cells."""
    renderer = _Renderer()
    try:
        renderer.feed(_tame(html[:MAX_HTML_CHARS]))
        renderer.close()
    except (AssertionError, ValueError):  # pragma: no cover - html.parser on odd markup
        pass
    lines = [line.rstrip() for line in renderer.lines]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")
