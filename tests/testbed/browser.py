"""Headless Chromium for tests: render a page, take a screenshot, measure its layout.

Mails and reports are HTML that people open in real browsers and mail clients; these
helpers render them in Chromium (Debian package ``chromium``, installed by
scripts/ensure-test-packages.sh) and measure the result.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import pytest


def chromium() -> str:
    """Return the Chromium binary (Debian package `chromium`, scripts/ensure-test-packages.sh)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: run scripts/ensure-test-packages.sh as root")
    return found


def _run(page: Path, profile: Path, *output: str) -> str:
    return subprocess.run(
        [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", *output, page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout  # fmt: skip


def render(page: Path, profile: Path, *output: str) -> None:
    """Open ``page`` in headless Chromium with ``output`` options (screenshot, PDF)."""
    _run(page, profile, *output)


@dataclass(frozen=True)
class Layout:
    """How wide a page came out in a window, and where one table's columns end."""

    window: int
    page: int  # the document's scroll width: above ``window`` means a horizontal scroll
    columns_end: list[int]  # the right edge of each cell of the table's first body row


def layout(page: Path, profile: Path, width: int, table: str) -> Layout:
    """Lay ``page`` out in a window ``width`` pixels wide; measure the ``table`` selector's."""
    script = (
        f"var row = document.querySelector({json.dumps(table + ' tbody tr')}), ends = [];"
        "for (var i = 0; i < row.cells.length; i++) {"
        "  ends.push(Math.ceil(row.cells[i].getBoundingClientRect().right)); }"
        "return [window.innerWidth, document.documentElement.scrollWidth, ends];"
    )
    window, scroll, ends = laid_out(page, profile, script, width)
    return Layout(window, scroll, ends)


def ink(png_bytes: bytes) -> float:
    """Return the share of RGB samples of a PNG that are not white (0: a blank page)."""
    assert png_bytes.startswith(b"\x89PNG\r\n\x1a\n")
    pos, idat, width, height, channels = 8, b"", 0, 0, 3
    while pos < len(png_bytes):
        (length,) = struct.unpack(">I", png_bytes[pos : pos + 4])
        kind = png_bytes[pos + 4 : pos + 8]
        data = png_bytes[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, _depth, color = struct.unpack(">IIBB", data[:10])
            channels = {2: 3, 6: 4}[color]
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels + 1
    # Unfiltered, a white row is all 255; any filter leaves mostly zeros on white. Count
    # bytes that are neither, per row, which only ink produces.
    busy = sum(
        1
        for y in range(height)
        for b in raw[y * stride + 1 : (y + 1) * stride]
        if b not in (0, 255)
    )
    return busy / (width * height * channels)


def laid_out(page: Path, profile: Path, script: str, width: int = 600) -> Any:
    """Render ``page`` at ``width`` pixels and return what ``script`` measured (JSON).

    ``script`` is JavaScript whose last expression is a JSON-serializable value; it runs
    after layout, and its result is read back from the rendered DOM (``--dump-dom``).
    """
    probe = page.with_name(page.stem + ".probe.html")
    code = (
        "<script>document.body.setAttribute('data-probe', "
        f"JSON.stringify((() => {{ {script} }})()));</script>"
    )
    html = page.read_text(encoding="utf-8")
    probe.write_text(html.replace("</body>", code + "</body>"), encoding="utf-8")
    try:
        dom = _run(probe, profile, f"--window-size={width},2000", "--dump-dom")
    finally:
        probe.unlink()
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found is not None, dom[-2000:]
    return json.loads(unescape(found.group(1)))
