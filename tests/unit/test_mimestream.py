"""The streaming splitter: a spooled mail parses exactly as the same bytes held whole.

Every case is parsed twice, whole (``parse_message``) and through :func:`read_mail` with
a threshold of 0 bytes, so every part that can leave the skeleton does; the two
``InboundMail`` values must be equal (attachments compare by name, type, size, SHA-256).
"""

from __future__ import annotations

import base64
import quopri
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow.mail import mimestream
from mailflow.mail.mimestream import UnsplittableError, read_mail, split
from mailflow.mail.parse import SPOOL_MARKER, InboundMail, MailParseError, parse_message
from mailflow.mail.spool import Spooled, SpoolWriter

CORPUS = sorted((Path(__file__).resolve().parents[1] / "data" / "mail").glob("*.eml"))
HEAD = (
    "From: Ana <ana@example.org>\r\nTo: rrss@example.org\r\nSubject: foto\r\n"
    "Message-ID: <m1@example.org>\r\nMIME-Version: 1.0\r\n"
)


def _spool(raw: bytes, folder: Path) -> Spooled:
    with SpoolWriter(folder) as writer:
        writer.write(raw)
        return writer.finish()


def _both(
    raw: bytes, folder: Path, *, held: bool = False
) -> tuple[InboundMail | str, InboundMail | str]:
    """Parse whole and streamed (from a file, or from memory if ``held``); errors by message."""
    try:
        whole: InboundMail | str = parse_message(raw)
    except MailParseError as exc:
        whole = str(exc)
    spooled = _spool(raw, folder)
    try:
        with read_mail(raw if held else spooled, folder, threshold=0) as mail:
            streamed: InboundMail | str = mail
            data = [a.data for a in mail.attachments]
        if isinstance(whole, InboundMail):
            assert data == [a.data for a in whole.attachments]
    except MailParseError as exc:
        streamed = str(exc)
    finally:
        spooled.discard()
    return whole, streamed


def _multipart(*parts: str, boundary: str = "b1", close: bool = True, nl: str = "\r\n") -> bytes:
    text = HEAD + f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\npreamble\r\n'
    for part in parts:
        text += f"--{boundary}\r\n{part}\r\n"
    if close:
        text += f"--{boundary}--\r\nepilogue\r\n"
    return text.replace("\r\n", nl).encode("utf-8", "surrogateescape")


def _attachment(data: bytes, encoding: str = "base64", name: str = "foto.jpg") -> str:
    if encoding == "base64":
        body = base64.encodebytes(data).decode().replace("\n", "\r\n")
    elif encoding == "quoted-printable":
        body = quopri.encodestring(data).decode("latin-1")
    else:
        body = data.decode("latin-1")
    return (
        f'Content-Type: image/jpeg; name="{name}"\r\nContent-Transfer-Encoding: {encoding}\r\n'
        f'Content-Disposition: attachment; filename="{name}"\r\n\r\n{body}'
    )


TEXT = 'Content-Type: text/plain; charset="utf-8"\r\n\r\nAPRUEBO\r\n'
BLOB = random.Random(6).randbytes(300_000)
CASES = {
    "base64": _multipart(TEXT, _attachment(BLOB)),
    "quoted-printable": _multipart(TEXT, _attachment(BLOB, "quoted-printable")),
    "qp text with soft breaks": _multipart(
        TEXT, _attachment(("línea larga " * 5000).encode(), "quoted-printable", "a.txt")
    ),
    "8bit": _multipart(TEXT, _attachment(b"abc\r\n" * 70_000, "8bit", "a.csv")),
    "LF only": _multipart(TEXT, _attachment(BLOB), nl="\n"),
    "CR only": _multipart(TEXT, _attachment(BLOB), nl="\r"),
    "no closing boundary": _multipart(TEXT, _attachment(BLOB), close=False),
    "nested": _multipart(
        'Content-Type: multipart/alternative; boundary="in"\r\n\r\n--in\r\n'
        + TEXT
        + "\r\n--in\r\nContent-Type: text/html\r\n\r\n<p>APRUEBO</p>\r\n--in--\r\n",
        _attachment(BLOB),
        _attachment(BLOB[:1000], name="b.png"),
    ),
    "nested without its close": _multipart(
        'Content-Type: multipart/related; boundary="in"\r\n\r\n--in\r\n' + _attachment(BLOB),
        _attachment(BLOB[:5000], name="c.png"),
    ),
    "repeated boundaries": _multipart(TEXT, _attachment(BLOB)).replace(
        b"--b1\r\nContent-Type: image", b"--b1\r\n--b1\r\nContent-Type: image"
    ),
    "attached message": _multipart(
        TEXT, "Content-Type: message/rfc822\r\n\r\n" + HEAD + "\r\n" + "x" * 1000
    ),
    "digest": _multipart(
        'Content-Type: multipart/digest; boundary="d"\r\n\r\n--d\r\n\r\n'
        + HEAD
        + "\r\nhola\r\n--d--\r\n"
    ),
    "single-part pdf": (
        HEAD + "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    ).encode()
    + base64.encodebytes(BLOB),
    "no header separator": _multipart(TEXT, "Content-Type: image/png\r\nnot a header\r\n"),
    "stray base64 characters": _multipart(
        TEXT, _attachment(BLOB).replace("\r\nA", "\r\n*A!").replace("==", "=")
    ),
    "8-bit bytes in base64": _multipart(TEXT, _attachment(BLOB) + "\udcff\udcfe"),
    "8-bit bytes in base64, utf-16 label": _multipart(
        TEXT,
        _attachment(BLOB).replace("image/jpeg;", "image/jpeg; charset=utf-16;") + "\udcff",
    ),
    "forged marker": _multipart(TEXT, f"{SPOOL_MARKER}: 00\r\n" + _attachment(BLOB)),
    "quoted body text": _multipart(
        'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + base64.encodebytes(("APRUEBO " * 50_000).encode()).decode()
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_streamed_parse_equals_whole_parse(name: str, tmp_path: Path) -> None:
    whole, streamed = _both(CASES[name], tmp_path)
    assert streamed == whole


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_parses_the_same_streamed(path: Path, tmp_path: Path) -> None:
    whole, streamed = _both(path.read_bytes(), tmp_path)
    assert streamed == whole


def test_large_parts_leave_the_skeleton(tmp_path: Path) -> None:
    raw = CASES["base64"]
    spooled = _spool(raw, tmp_path)
    with spooled.open() as handle:
        parts = split(handle, tmp_path)
    assert len(raw) > 400_000
    assert len(parts.skeleton) < 2_000
    [stored] = parts.parts.values()
    assert stored.path.read_bytes() == BLOB
    assert not any(tmp_path.glob("*.part")) or stored.path.exists()


def test_part_files_are_removed_after_reading(tmp_path: Path) -> None:
    spooled = _spool(CASES["base64"], tmp_path)
    with read_mail(spooled, tmp_path, threshold=0) as mail:
        assert mail.attachments[0].size == len(BLOB)
    assert sorted(tmp_path.iterdir()) == [spooled.path]


def test_oversized_spooled_mail_is_refused_like_bytes(tmp_path: Path) -> None:
    spooled = Spooled(tmp_path / "none", 51 * 1024 * 1024, "0" * 64)
    with pytest.raises(MailParseError, match="supera el límite"), read_mail(spooled, tmp_path):
        pass


PIECES = [
    b"\r\n",
    b"\n",
    b"\r",
    b"--b1",
    b"--b1--",
    b"--in",
    b"Content-Type: multipart/mixed; boundary=in\r\n",
    b"Content-Type: application/pdf\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"QUJD",
    b"=4",
    b"=\r\n",
    b" ",
    b"x: y",
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PIECES), max_size=60))
def test_any_arrangement_parses_the_same(tmp_path: Path, pieces: list[bytes]) -> None:
    raw = _multipart(TEXT) + b"".join(pieces)
    whole, streamed = _both(raw, tmp_path)
    assert streamed == whole


def _split_plainly(raw: bytes, folder: Path) -> tuple[bytes, list[bytes]] | str:
    """Split; return the skeleton with its tokens numbered and the part files' bytes."""
    spooled = _spool(raw, folder)
    try:
        with spooled.open() as handle:
            parts = split(handle, folder, threshold=0)
    except UnsplittableError as exc:
        return f"unsplittable: {exc}"
    finally:
        spooled.discard()
    skeleton, files = parts.skeleton, []
    for number, (token, stored) in enumerate(parts.parts.items()):
        skeleton = skeleton.replace(token.encode(), str(number).encode())
        files.append(stored.path.read_bytes())
        stored.discard()
    return skeleton, files


def _line_by_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the splitter read one line at a time, as it did before it took blocks."""
    monkeypatch.setattr(mimestream._Lines, "_block", lambda self: None)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 77, 4096])
@pytest.mark.parametrize("name", sorted(CASES))
def test_any_read_size_splits_as_line_by_line(
    name: str, chunk: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CRLF, a boundary or a base64 quantum cut by a read changes nothing."""
    raw = CASES[name][:40_000] + CASES[name][-2_000:]  # every shape, fewer reads
    monkeypatch.setattr(mimestream, "CHUNK", chunk)
    monkeypatch.setattr(mimestream, "LINE_PIECE", 100)
    blocks = _split_plainly(raw, tmp_path)
    _line_by_line(monkeypatch)
    assert blocks == _split_plainly(raw, tmp_path)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PIECES), max_size=60), st.sampled_from([1, 2, 3, 7, 64]))
def test_any_arrangement_splits_as_line_by_line(
    tmp_path: Path, pieces: list[bytes], chunk: int
) -> None:
    raw = _multipart(TEXT) + b"".join(pieces)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mimestream, "CHUNK", chunk)
        patch.setattr(mimestream, "LINE_PIECE", 16)
        blocks = _split_plainly(raw, tmp_path)
        _line_by_line(patch)
        assert blocks == _split_plainly(raw, tmp_path)
    whole, streamed = _both(raw, tmp_path)
    assert streamed == whole


def test_qp_slices_are_cut_where_lines_cut_them(tmp_path: Path) -> None:
    """Quoted-printable fed in blocks decodes in the same slices as fed line by line."""
    data = ("línea=20larga " * 40 + "=\r\n" + "x" * 70 + "\r\n").encode() * 3_000
    raw = _multipart(TEXT, _attachment(data, "8bit", "a.txt").replace("8bit", "quoted-printable"))
    blocks = _split_plainly(raw, tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        _line_by_line(patch)
        assert blocks == _split_plainly(raw, tmp_path)


@pytest.mark.parametrize("encoding", ["8bit", "base64", "quoted-printable"])
def test_every_read_boundary_splits_as_line_by_line(
    encoding: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each byte of a small mail, CRs and boundaries included, is once the last of a read."""
    raw = _multipart(TEXT, _attachment(b"ab\r\ncd\r\r\n-x\n" * 8, encoding), nl="\r\n")
    raw += b"--b1\rtrailing\r"
    plain = {}
    for chunk in range(1, 120):
        monkeypatch.setattr(mimestream, "CHUNK", chunk)
        plain[chunk] = _split_plainly(raw, tmp_path)
        assert not isinstance(plain[chunk], str) and len(plain[chunk][1]) == 1
    _line_by_line(monkeypatch)
    for chunk in range(1, 120):
        monkeypatch.setattr(mimestream, "CHUNK", chunk)
        assert plain[chunk] == _split_plainly(raw, tmp_path), chunk


@pytest.mark.parametrize("name", sorted(CASES))
def test_held_mail_parses_the_same_split(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large mail held in memory goes through the splitter, with the same result."""
    monkeypatch.setattr(mimestream, "SPLIT_FROM_BYTES", 1)
    whole, split_ = _both(CASES[name], tmp_path, held=True)
    assert split_ == whole
    assert not any(tmp_path.iterdir())


def test_large_held_mail_spools_its_photo(tmp_path: Path) -> None:
    raw = _multipart(TEXT, _attachment(random.Random(7).randbytes(600_000)))
    assert len(raw) >= mimestream.SPLIT_FROM_BYTES
    with read_mail(raw, tmp_path) as mail:
        assert [p.suffix for p in tmp_path.iterdir()] == [".part"]
        assert mail == parse_message(raw)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_held_corpus_parses_the_same_split(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mimestream, "SPLIT_FROM_BYTES", 1)
    whole, split_ = _both(path.read_bytes(), tmp_path, held=True)
    assert split_ == whole
