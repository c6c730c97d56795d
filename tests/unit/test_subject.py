"""Subjects: RFC 2047 so that every client reads exactly what we wrote.

The header registry folded "Publicación específica señalización" into encoded-words
that lost the space between two of them ("…específicaseñalización") once a subject was
long enough to fold. Each subject is decoded here twice: by Python's ``email`` (both
policies) and by an independent decoder, Perl's ``Encode`` (``MIME-Header``), run as a
separate program.
"""

from __future__ import annotations

import email
import email.policy
import random
import re
import shutil
import subprocess
from email.header import decode_header, make_header

import pytest

from mailflow.mail.render import subject_header

# Words of real subjects: accents, ñ, «», —, punctuation, and the code prefix.
_TEXT = (
    "Acción requerida Publicación específica información señalización ñandú «Conéctate» — "
    "Dirección Ejecutiva (UGS): verifica, autoriza; año 2026 feria de servicios digitales "
    "Campaña ¿Qué? ¡Sí! 10/12/2026 Día del Software Libre café-bar x_y a=b ?= =? _guion_"
)
WORDS = _TEXT.split()

KNOWN = [
    "[RRSS-2026-0042] Acción requerida (Elabora propuesta de contenido para la publicación "
    "y hace conocer el tiempo requerido): Publicación específica señalización",
    "[RRSS-2026-0001] Para su conocimiento (Verifica el contenido y autoriza la elaboración "
    "del material de publicación de información específica, caso contrario devuelve la "
    "propuesta): Campaña «Conéctate» — difusión pública específica",
    "Acción requerida: Publicación específica señalización ñandú çà éèêë publicación",
    "Solicitud recibida: Feria de servicios digitales 2026",  # plain ASCII but one word
    "Año " + "largo " * 30,
    "x" * 200,
    "é" * 120,
    "=?utf-8?q?Hola?= no es una palabra codificada",
    "  espacios  dobles  y  al  final  ",
]


def _subjects() -> list[str]:
    rng = random.Random(2047)
    made = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    return KNOWN + [f"[RRSS-2026-{n:04d}] {s}" for n, s in enumerate(made)]


def _value(header: bytes) -> str:
    """Return the raw (folded) value of a Subject header line."""
    return header.decode("ascii").removeprefix("Subject:").removesuffix("\r\n").lstrip(" ")


def _expected(subject: str) -> str:
    return " ".join(subject.split())


def perl_decode(values: list[str]) -> list[str]:
    """Decode folded header values with Perl's Encode::MIME::Header, one program run."""
    perl = shutil.which("perl")
    if perl is None:
        pytest.fail("perl is not installed (Debian's perl-base is required by dpkg itself)")
    script = (
        "use Encode; binmode STDOUT, ':raw'; local $/ = \"\\0\";"
        "while (my $v = <STDIN>) { chomp $v;"
        " print encode('UTF-8', decode('MIME-Header', $v)), \"\\0\"; }"
    )
    done = subprocess.run(
        [perl, "-e", script],
        input="\0".join(values).encode("ascii") + b"\0",
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout.decode("utf-8").split("\0")[:-1]


def test_every_subject_decodes_exactly_with_python_and_perl() -> None:
    subjects = _subjects()
    headers = [subject_header(s) for s in subjects]
    by_perl = perl_decode([_value(h) for h in headers])
    for subject, header, perl in zip(subjects, headers, by_perl, strict=True):
        want = _expected(subject)
        modern = email.message_from_bytes(header + b"\r\n", policy=email.policy.default)
        assert str(modern["Subject"]) == want, header
        legacy = str(make_header(decode_header(_value(header).replace("\r\n", ""))))
        assert legacy == want, header
        # Perl keeps folding whitespace as one space; unfolding is the caller's job.
        assert re.sub(r"\r\n[ \t]", " ", perl) == want, header


def test_lines_stay_short_and_encoded_words_are_never_cut() -> None:
    for subject in _subjects():
        header = subject_header(subject)
        assert header.endswith(b"\r\n") and header.isascii()
        lines = header.removesuffix(b"\r\n").split(b"\r\n")
        assert all(len(line) <= 78 for line in lines), header
        for line in lines:
            for token in line.split(b" "):
                if b"=?" in token:  # a whole encoded-word, never a piece of one
                    assert re.fullmatch(rb"=\?utf-8\?q\?[!-~]{1,63}\?=", token), token
                    assert len(token) <= 75


def test_spaces_between_words_travel_inside_the_encoded_words() -> None:
    header = subject_header("Publicación específica señalización " * 4)
    words = re.findall(rb"=\?utf-8\?q\?([^?]*)\?=", header)
    assert len(words) > 1  # it folds
    # Whitespace between adjacent encoded-words is not text (RFC 2047 §6.2): each one
    # after the first starts with the space it needs, as "_".
    assert all(w.startswith(b"_") for w in words[1:])
    assert b"=C3=B3n_espec" in header  # "ón específica" inside one encoded-word


def test_a_plain_subject_and_the_code_stay_readable() -> None:
    assert subject_header("Solicitud recibida: feria") == b"Subject: Solicitud recibida: feria\r\n"
    header = subject_header("[RRSS-2026-0042] Acción requerida")
    assert header.startswith(b"Subject: [RRSS-2026-0042] =?utf-8?q?Acci=C3=B3n")
