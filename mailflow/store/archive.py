"""Content-addressed archive: every message and attachment stored once, never rewritten.

A blob lives at ``root/ab/abcdef….ext``, named by the SHA-256 of its bytes. It is written
to a temporary file, fsynced, made read-only and renamed into place, and the folder is
fsynced, so a file that has its final name is complete and survives a power cut. Callers
store a blob before the database commit that refers to it; a rolled-back transaction
leaves an unreferenced blob behind, which is harmless (`archive verify` counts them).

Inside :meth:`Archive.batch` (the transaction of a group of inbound messages), ``put`` and
``put_stream`` only write the temporary file; when the block ends, before the commit, every
file of the block is made durable at once (see :meth:`Archive.batch` for why that keeps the
guarantee).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import secrets
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mailflow.errors import ArchiveError

CHUNK = 256 * 1024
_READ_ONLY = 0o444
_TMP = ".tmp"


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


def _find_syncfs() -> Callable[[int], int] | None:
    """Return Linux's syncfs(2), or None where there is none (then each file is fsynced)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        syncfs: Callable[[int], int] = ctypes.CDLL(
            ctypes.util.find_library("c"), use_errno=True
        ).syncfs
    except (OSError, AttributeError):
        return None
    return syncfs


_SYNCFS = _find_syncfs()


class Archive:
    """Store blobs under ``root/ab/abcdef….ext`` named by their SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._local = threading.local()  # the open batch of this thread, if any

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make every ``put`` of the block durable together when the block ends.

        Use it inside the database transaction that refers to the blobs, so that it ends
        first. Until then each blob is only written to its temporary file. At the end:
        one syncfs(2) makes every temporary file's data durable, then each is renamed to
        its final name, then a second syncfs makes the renames durable; only then does the
        block return and the caller commit. So, as with ``put`` alone, no final name ever
        points at incomplete data, and nothing is committed before its blob is durable;
        two flushes of the file system replace two fsyncs per blob (inbound mail and the
        mails it sends). If the block raises, the temporary files are deleted.
        Without syncfs (not Linux) each file and folder is fsynced as ``put`` does.
        """
        if getattr(self._local, "pending", None) is not None:
            yield  # nested: the outer batch settles
            return
        pending: dict[Path, Path] = {}
        # Opened before the first write: syncfs(2) reports only the write-back errors
        # that happen after its descriptor was opened (Linux 5.8+).
        root_fd = self._open_root() if _SYNCFS is not None else None
        self._local.pending = pending
        try:
            yield
            self._settle_all(pending, root_fd)
        finally:
            self._local.pending = None
            for partial in pending.values():
                partial.unlink(missing_ok=True)
            if root_fd is not None:
                os.close(root_fd)

    def path_of(self, sha256: str, suffix: str) -> Path:
        """Return where the blob with this digest and suffix lives."""
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def locate(self, sha256: str) -> Path | None:
        """Return the file holding the blob with this digest, whatever its suffix, or None.

        Inside :meth:`batch`, a blob stored earlier in the block is found in its temporary
        file (complete, not yet durable): a mail composed in the same transaction as the
        message that brought a file attaches it from there.
        """
        pending: dict[Path, Path] | None = getattr(self._local, "pending", None)
        for target, partial in (pending or {}).items():
            if target.name.startswith(sha256) and len(sha256) == 64:
                return partial
        folder = self.root / sha256[:2]
        if len(sha256) != 64 or not folder.is_dir():
            return None
        return next(iter(sorted(folder.glob(f"{sha256}*"))), None)

    def put(self, data: bytes, suffix: str = ".eml") -> str:
        """Store ``data`` durably (written, fsynced, renamed) and return its SHA-256.

        Inside :meth:`batch`, durably by the end of the block.
        """
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_of(digest, suffix)
        pending: dict[Path, Path] | None = getattr(self._local, "pending", None)
        if (pending is not None and target in pending) or target.exists():
            return digest
        if pending is None or _SYNCFS is None:
            return self.put_stream((data,), suffix).sha256
        try:
            partial = self._partial()
            pending[target] = partial
            with partial.open("wb") as handle:
                handle.write(data)
        except OSError as exc:
            raise ArchiveError(f"cannot archive into {self.root}: {exc.strerror}") from exc
        return digest

    def _partial(self) -> Path:
        tmp_dir = self.root / _TMP
        tmp_dir.mkdir(parents=True, exist_ok=True)
        return tmp_dir / f"{os.getpid()}-{secrets.token_hex(8)}.part"

    def _open_root(self) -> int:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            return os.open(self.root, os.O_RDONLY)
        except OSError as exc:
            raise ArchiveError(f"cannot archive into {self.root}: {exc.strerror}") from exc

    @staticmethod
    def _syncfs(fd: int) -> None:
        assert _SYNCFS is not None
        if _SYNCFS(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))

    def _settle_all(self, pending: dict[Path, Path], root_fd: int | None) -> None:
        """Make a batch's files durable, then their names (see :meth:`batch`).

        If anything fails, the names given in this batch are taken back: a retry of the
        message must write and sync its files again, not find them and skip the sync.
        """
        if not pending:
            return
        assert root_fd is not None
        renamed: list[Path] = []
        try:
            self._syncfs(root_fd)
            for target, partial in list(pending.items()):
                target.parent.mkdir(parents=True, exist_ok=True)
                partial.chmod(_READ_ONLY)
                os.replace(partial, target)
                renamed.append(target)
                del pending[target]
            self._syncfs(root_fd)
        except OSError as exc:
            for target in renamed:
                target.unlink(missing_ok=True)
            raise ArchiveError(f"cannot archive into {self.root}: {exc.strerror}") from exc

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
        """Store a blob given piece by piece, hashing while writing; never hold it whole.

        Inside :meth:`batch`, the file joins the batch (durable by the end of the block)
        instead of being fsynced on its own: a large streamed mail costs no extra flush.
        """
        pending = self._pending()
        try:
            partial = self._partial()
            queued = False
            try:
                digest = hashlib.sha256()
                size = 0
                with partial.open("wb") as handle:
                    for chunk in chunks:
                        digest.update(chunk)
                        handle.write(chunk)
                        size += len(chunk)
                    if pending is None:
                        handle.flush()
                        os.fsync(handle.fileno())
                stored = Stored(digest.hexdigest(), size)
                target = self.path_of(stored.sha256, suffix)
                if pending is not None:
                    if target not in pending and not target.exists():
                        pending[target] = partial
                        queued = True
                elif not target.exists():
                    self._settle(partial, target)
            finally:
                if not queued:
                    partial.unlink(missing_ok=True)
        except OSError as exc:
            raise ArchiveError(f"cannot archive into {self.root}: {exc.strerror}") from exc
        return stored

    def _pending(self) -> dict[Path, Path] | None:
        """Return the open batch's files of this thread, or None (no batch, or no syncfs)."""
        if _SYNCFS is None:
            return None
        pending: dict[Path, Path] | None = getattr(self._local, "pending", None)
        return pending

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
