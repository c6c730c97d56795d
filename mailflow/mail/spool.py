"""Keep a large message in a file instead of memory: written once, hashed while writing.

A fetched message is either ``bytes`` (small mail, the cheap path) or a :class:`Spooled`
file (large mail). :data:`RawMail` names both; the helpers below read either without
loading a spooled file whole.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from mailflow.errors import ArchiveError

CHUNK = 256 * 1024
# A message at least this big is spooled to a file; a smaller one is held as bytes.
LARGE_MESSAGE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class Spooled:
    """A message (or a decoded part) kept in a file: where, how many bytes, its SHA-256."""

    path: Path
    size: int
    sha256: str

    def open(self) -> BinaryIO:
        """Open the file for reading."""
        return self.path.open("rb")

    def chunks(self) -> Iterator[bytes]:
        """Yield the file's bytes piece by piece."""
        with self.open() as handle:
            while block := handle.read(CHUNK):
                yield block

    def head(self, limit: int) -> bytes:
        """Return the first ``limit`` bytes."""
        with self.open() as handle:
            return handle.read(limit)

    def discard(self) -> None:
        """Delete the file; a spool file is never needed after its message is handled."""
        self.path.unlink(missing_ok=True)


RawMail = bytes | Spooled


class SpoolWriter:
    """Write a file piece by piece, counting and hashing; ``finish()`` gives the :class:`Spooled`.

    Used as a context manager: leaving it without ``finish()`` (an error) deletes the file.
    """

    def __init__(self, directory: Path | None = None, suffix: str = ".spool") -> None:
        folder = directory or Path(tempfile.gettempdir())
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="mailflow-", suffix=suffix, dir=folder)
        except OSError as exc:
            raise _spool_error(folder, exc) from exc
        self.path = Path(name)
        self._handle = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self._size = 0
        self._done: Spooled | None = None

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        self._digest.update(data)
        try:
            self._handle.write(data)
        except OSError as exc:  # a full disk is passing trouble, not a broken message
            raise _spool_error(self.path.parent, exc) from exc
        self._size += len(data)

    def finish(self) -> Spooled:
        """Close the file and return what it holds."""
        if self._done is None:
            try:
                self._handle.close()
            except OSError as exc:
                raise _spool_error(self.path.parent, exc) from exc
            self._done = Spooled(self.path, self._size, self._digest.hexdigest())
        return self._done

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._done is None:
            self._handle.close()
            self.path.unlink(missing_ok=True)


def digest_of(raw: RawMail) -> str:
    """Return the SHA-256 of a message's bytes."""
    return raw.sha256 if isinstance(raw, Spooled) else hashlib.sha256(raw).hexdigest()


def size_of(raw: RawMail) -> int:
    """Return a message's size in bytes."""
    return raw.size if isinstance(raw, Spooled) else len(raw)


def head_of(raw: RawMail, limit: int) -> bytes:
    """Return the first ``limit`` bytes of a message (enough for its header block)."""
    return raw.head(limit) if isinstance(raw, Spooled) else raw[:limit]


def header_block(head: bytes) -> bytes:
    """Return the header block of a message's first bytes (with its blank line), no body."""
    for blank in (b"\r\n\r\n", b"\n\n"):
        if blank in head:
            return head.split(blank, 1)[0] + blank
    return head


def read_file(path: Path, directory: Path | None = None) -> RawMail:
    """Return a file's bytes, or for a large file a spooled copy (never the file itself)."""
    if path.stat().st_size < LARGE_MESSAGE_BYTES:
        return path.read_bytes()
    with SpoolWriter(directory) as writer, path.open("rb") as handle:
        while block := handle.read(CHUNK):
            writer.write(block)
        return writer.finish()


def _spool_error(folder: Path, exc: OSError) -> ArchiveError:
    """Say that spooling failed the way the archive does, so the loop waits and retries.

    The spool lives next to the archive: a full disk there must leave the message on the
    server (as a full archive does), not crash the daemon nor quarantine the message.
    """
    return ArchiveError(f"cannot spool a large mail into {folder}: {exc.strerror or exc}")
