"""Content-addressed archive: every message and attachment stored once, never rewritten.

A blob lives at ``root/ab/abcdef….ext``, named by the SHA-256 of its bytes. It is written
to a temporary file, fsynced, made read-only and renamed into place, and the folder is
fsynced, so a file that has its final name is complete and survives a power cut. Callers
store a blob before the database commit that refers to it; a rolled-back transaction
leaves an unreferenced blob behind, which is harmless (`archive verify` counts them).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mailflow.errors import MailflowError

CHUNK = 256 * 1024
_READ_ONLY = 0o444
_TMP = ".tmp"


class ArchiveError(MailflowError):
    """The archive cannot take a file (disk full, permissions): stop taking new mail."""


@dataclass(frozen=True)
class Stored:
    """Say where a blob went: its SHA-256 and its size in bytes."""

    sha256: str
    size: int


@dataclass
class Verification:
    """Collect what `archive verify` found: altered files, missing ones, and totals."""

    checked: int = 0
    altered: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unindexed: int = 0

    @property
    def ok(self) -> bool:
        """Tell whether every file is intact and every indexed digest has its file."""
        return not self.altered and not self.missing


class Archive:
    """Store blobs under ``root/ab/abcdef….ext`` named by their SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, sha256: str, suffix: str) -> Path:
        """Return where the blob with this digest and suffix lives."""
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def locate(self, sha256: str) -> Path | None:
        """Return the file holding the blob with this digest, whatever its suffix, or None."""
        folder = self.root / sha256[:2]
        if len(sha256) != 64 or not folder.is_dir():
            return None
        return next(iter(sorted(folder.glob(f"{sha256}*"))), None)

    def put(self, data: bytes, suffix: str = ".eml") -> str:
        """Store ``data`` durably (written, fsynced, renamed) and return its SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        if self.path_of(digest, suffix).exists():
            return digest
        return self.put_stream((data,), suffix).sha256

    def put_file(self, path: Path, suffix: str = ".eml") -> Stored:
        """Store a file's bytes by streaming them (hashing while copying); ``path`` stays."""

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as handle:
                while block := handle.read(CHUNK):
                    yield block

        try:
            return self.put_stream(chunks(), suffix)
        except OSError as exc:  # reading the source failed
            raise ArchiveError(f"cannot read {path}: {exc.strerror}") from exc

    @property
    def scratch(self) -> Path:
        """Return the folder for temporary files (never listed, never verified)."""
        return self.root / _TMP

    def put_stream(self, chunks: Iterable[bytes], suffix: str) -> Stored:
        """Store a blob given piece by piece, hashing while writing; never hold it whole."""
        try:
            tmp_dir = self.root / _TMP
            tmp_dir.mkdir(parents=True, exist_ok=True)
            partial = tmp_dir / f"{os.getpid()}-{secrets.token_hex(8)}.part"
            digest = hashlib.sha256()
            size = 0
            try:
                with partial.open("wb") as handle:
                    for chunk in chunks:
                        digest.update(chunk)
                        handle.write(chunk)
                        size += len(chunk)
                    handle.flush()
                    os.fsync(handle.fileno())
                stored = Stored(digest.hexdigest(), size)
                target = self.path_of(stored.sha256, suffix)
                if not target.exists():
                    self._settle(partial, target)
            finally:
                partial.unlink(missing_ok=True)
        except OSError as exc:
            raise ArchiveError(f"cannot archive into {self.root}: {exc.strerror}") from exc
        return stored

    @staticmethod
    def _settle(partial: Path, target: Path) -> None:
        """Move a complete temporary file to its final name, read-only, durably."""
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.chmod(_READ_ONLY)
        os.replace(partial, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself must survive a power cut
        finally:
            os.close(directory)

    def files(self) -> Iterator[Path]:
        """Yield every archived file (never the temporary ones), in name order."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if folder.name == _TMP or not folder.is_dir():
                continue
            yield from sorted(p for p in folder.iterdir() if p.is_file())

    def verify(self, indexed: Iterable[str]) -> Verification:
        """Re-hash every file and check every digest in ``indexed`` has its file."""
        result = Verification()
        present: set[str] = set()
        for path in self.files():
            result.checked += 1
            name = path.name[:64]
            present.add(name)
            if sha256_of(path) != name:
                result.altered.append(path)
        wanted = set(indexed)
        result.missing = sorted(wanted - present)
        result.unindexed = len(present - wanted)
        return result


def sha256_of(path: Path) -> str:
    """Return the SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()
