"""Archive.batch: the blobs of one transaction made durable together, before it commits."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from mailflow.store import archive as archive_module
from mailflow.store.archive import Archive


def _leftovers(root: Path) -> list[Path]:
    return list((root / ".tmp").glob("*")) if (root / ".tmp").exists() else []


def test_batch_names_files_only_after_their_data_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = Archive(tmp_path)
    blobs = [b"first mail", b"second mail", b"first mail"]
    targets = [archive.path_of(hashlib.sha256(b).hexdigest(), ".eml") for b in blobs]
    seen: list[list[bool]] = []

    def syncfs(fd: int) -> int:  # record which final names exist at each flush
        seen.append([t.exists() for t in targets])
        return 0

    monkeypatch.setattr(archive_module, "_SYNCFS", syncfs)
    with archive.batch():
        digests = [archive.put(b) for b in blobs]
        assert not any(t.exists() for t in targets)  # nothing named before the end
    # First flush: data of the temporary files, before any final name; second: the names.
    assert seen == [[False, False, False], [True, True, True]]
    assert digests == [hashlib.sha256(b).hexdigest() for b in blobs]
    for blob, target in zip(blobs, targets, strict=True):
        assert target.read_bytes() == blob
        assert not target.stat().st_mode & stat.S_IWUSR
    assert _leftovers(tmp_path) == []


def test_a_failed_batch_names_nothing_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_module, "_SYNCFS", lambda fd: 0)
    archive = Archive(tmp_path)
    with pytest.raises(RuntimeError), archive.batch():
        digest = archive.put(b"rolled back")
        raise RuntimeError("the transaction fails")
    assert archive.locate(digest) is None
    assert _leftovers(tmp_path) == []


def test_a_failed_flush_is_an_archive_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_module, "_SYNCFS", lambda fd: -1)
    archive = Archive(tmp_path)
    with pytest.raises(archive_module.ArchiveError), archive.batch():
        digest = archive.put(b"not durable")
    assert archive.locate(digest) is None
    assert _leftovers(tmp_path) == []


def test_without_syncfs_each_put_is_durable_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_module, "_SYNCFS", None)
    archive = Archive(tmp_path)
    with archive.batch():
        digest = archive.put(b"portable")
        assert archive.path_of(digest, ".eml").read_bytes() == b"portable"


def test_syncfs_is_found_on_linux() -> None:
    assert archive_module._SYNCFS is not None


def test_a_failed_second_flush_takes_the_new_names_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The names were given but not made durable: a retry must not find them and skip the sync.
    calls: list[int] = []

    def syncfs(fd: int) -> int:
        calls.append(fd)
        return 0 if len(calls) == 1 else -1

    monkeypatch.setattr(archive_module, "_SYNCFS", syncfs)
    archive = Archive(tmp_path)
    with pytest.raises(archive_module.ArchiveError), archive.batch():
        digest = archive.put(b"named, then not durable")
    assert len(calls) == 2
    assert archive.locate(digest) is None
    assert _leftovers(tmp_path) == []


def test_both_flushes_use_one_descriptor_opened_before_the_first_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # syncfs(2) reports only write-back errors after its descriptor was opened (Linux 5.8+):
    # a descriptor opened at the end of the batch could miss the failure of an early write.
    opened: list[int] = []
    real_open = archive_module.os.open

    def tracking_open(path: object, flags: int, *args: int) -> int:
        fd = real_open(path, flags, *args)  # type: ignore[arg-type]
        opened.append(fd)
        return fd

    used: list[int] = []
    monkeypatch.setattr(archive_module, "_SYNCFS", lambda fd: used.append(fd) or 0)
    archive = Archive(tmp_path)
    monkeypatch.setattr(archive_module.os, "open", tracking_open)
    with archive.batch():
        assert len(opened) == 1  # before any put
        archive.put(b"one")
        archive.put(b"two")
    assert used == [opened[0], opened[0]]


def test_a_streamed_blob_joins_the_open_batch_instead_of_its_own_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushes: list[str] = []
    monkeypatch.setattr(archive_module, "_SYNCFS", lambda fd: flushes.append("syncfs") or 0)
    monkeypatch.setattr(archive_module.os, "fsync", lambda fd: flushes.append("fsync"))
    archive = Archive(tmp_path)
    source = tmp_path / "spooled.eml"
    source.write_bytes(b"a large mail, " * 1000)
    with archive.batch():
        stored = archive.put_file(source)
        again = archive.put_stream([source.read_bytes()], ".eml")  # the same blob: no twin
        target = archive.path_of(stored.sha256, ".eml")
        assert not target.exists()  # named only when the batch settles
    assert again == stored
    assert flushes == ["syncfs", "syncfs"]  # the batch's two flushes, nothing per file
    assert target.read_bytes() == source.read_bytes()
    assert not target.stat().st_mode & stat.S_IWUSR
    assert _leftovers(tmp_path) == []


def test_a_blob_of_the_open_batch_can_be_read_before_it_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mail composed in the same transaction as the message that brought a file attaches
    # it from its temporary file; the final name comes only at the end of the batch.
    monkeypatch.setattr(archive_module, "_SYNCFS", lambda fd: 0)
    archive = Archive(tmp_path)
    with archive.batch():
        stored = archive.put_stream(iter([b"foto ", b"de la feria"]), ".jpg")
        found = archive.locate(stored.sha256)
        assert found is not None and found.read_bytes() == b"foto de la feria"
        assert not archive.path_of(stored.sha256, ".jpg").exists()
        assert archive.locate("0" * 64) is None
    assert archive.locate(stored.sha256) == archive.path_of(stored.sha256, ".jpg")
