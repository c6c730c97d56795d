"""Headless Chromium for the reports' tests: render a page, or measure how it is laid out.

Chromium comes from the Debian package `chromium` (scripts/ensure-test-packages.sh).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

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


# Written into a copy of the page: after layout it puts the measures in the title, which
# --dump-dom prints. The page itself is not changed.
_PROBE = """<script>window.addEventListener("load", function () {
  var row = document.querySelector("%s tbody tr"), ends = [];
  for (var i = 0; i < row.cells.length; i++) {
    var box = row.cells[i].getBoundingClientRect(); ends.push(Math.ceil(box.right));
  }
  document.title = "layout:" + window.innerWidth + ":" +
    document.documentElement.scrollWidth + ":" + ends.join(",");
});</script>"""


def layout(page: Path, profile: Path, width: int, table: str) -> Layout:
    """Lay ``page`` out in a window ``width`` pixels wide; measure the ``table`` selector's."""
    probe = page.with_name(f".probe-{page.name}")
    html = page.read_text(encoding="utf-8")
    probe.write_text(html.replace("</body>", _PROBE % table + "</body>"), encoding="utf-8")
    try:
        dom = _run(probe, profile, f"--window-size={width},900", "--dump-dom")
    finally:
        probe.unlink()
    found = re.search(r"<title>layout:(\d+):(\d+):([\d,]+)</title>", dom)
    assert found is not None, dom[:500]
    return Layout(int(found[1]), int(found[2]), [int(x) for x in found[3].split(",")])
