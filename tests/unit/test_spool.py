"""A full disk while spooling a large mail is the archive's trouble, not a broken message."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import BinaryIO

import pytest

from mailflow.errors import ArchiveError
from mailflow.mail.spool import SpoolWriter


class _FullDisk:
    """Wrap the spool's file: writes fail as on a full file system."""

    def __init__(self, real: BinaryIO) -> None:
        self.real = real

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        self.real.close()


def test_a_write_on_a_full_disk_raises_archive_error_and_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="No space left"), SpoolWriter(tmp_path) as writer:
        writer._handle = _FullDisk(writer._handle)  # type: ignore[assignment]
        writer.write(b"x" * 1024)
    assert list(tmp_path.iterdir()) == []


def test_a_spool_folder_that_cannot_be_made_raises_archive_error(tmp_path: Path) -> None:
    blocker = tmp_path / "archive"
    blocker.write_bytes(b"a file where the folder should be")
    with pytest.raises(ArchiveError, match="cannot spool"):
        SpoolWriter(blocker / ".tmp")
