"""Content-addressed archive: every message and attachment stored once, never rewritten."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mailflow.errors import MailflowError


class ArchiveError(MailflowError):
    """The archive cannot take a file (disk full, permissions): stop taking new mail."""


class Archive:
    """Store blobs under ``root/ab/abcdef….ext`` named by their SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, sha256: str, suffix: str) -> Path:
        """Return where the blob with this digest lives."""
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def put(self, data: bytes, suffix: str = ".eml") -> str:
        """Store ``data`` durably (written, fsynced, renamed) and return its SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_of(digest, suffix)
        if target.exists():
            return digest
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.part")
            with partial.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, target)
            directory = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(directory)  # the rename itself must survive a power cut
            finally:
                os.close(directory)
        except OSError as exc:
            raise ArchiveError(f"cannot archive into {self.root}: {exc.strerror}") from exc
        return digest
