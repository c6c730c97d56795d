"""Check the test bed itself against the real servers: if these fail, nothing else can pass."""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

import imapclient
import imapclient.exceptions
import pytest
import sqlalchemy as sa
from testbed import proc
from testbed.dovecot import Dovecot
from testbed.mail import (
    append,
    build_message,
    deliver,
    fetch_raw,
    imap,
    inbox,
    send_as,
    wait_for_mail,
)
from testbed.ports import accepts
from testbed.postgres import Postgres
from testbed.smtp import SmtpRelay

pytestmark = pytest.mark.servers

# CRLF line ends, 8-bit UTF-8 in the body, a line starting with a dot (SMTP dot-stuffing).
RAW = (
    b"From: Ana <ana@example.org>\r\n"
    b"To: Unidad <ugs@example.org>\r\n"
    b"Subject: =?utf-8?q?Solicitud_de_publicaci=C3=B3n?=\r\n"
    b"Message-ID: <raw-1@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Publicaci\xc3\xb3n del d\xc3\xada 3.\r\n"
    b".una l\xc3\xadnea con punto\r\n"
)


# -- Dovecot ------------------------------------------------------------------------------


def test_imap_login_any_address_in_a_registered_domain(dovecot: Dovecot, maildomain: str) -> None:
    with imap(dovecot, f"nobody-yet@{maildomain}") as client:
        assert b"IDLE" in client.capabilities()
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    with imap(dovecot, "someone@example.org") as client:
        client.noop()


@pytest.mark.parametrize(
    ("address", "password"),
    [("ana@example.org", "wrong"), ("ana@unregistered.example", "secret")],
    ids=["wrong-password", "unknown-domain"],
)
def test_imap_login_refused(dovecot: Dovecot, address: str, password: str) -> None:
    with (
        imapclient.IMAPClient(dovecot.host, dovecot.imap_port, ssl=False, timeout=30) as client,
        pytest.raises(imapclient.exceptions.LoginError),
    ):
        client.login(address, password)


def test_append_then_fetch_gives_the_same_bytes(dovecot: Dovecot, maildomain: str) -> None:
    address = f"ugs@{maildomain}"
    uid = append(dovecot, address, RAW)
    other_uid = append(dovecot, address, RAW, folder="Archivo")

    assert uid >= 1
    assert other_uid >= 1
    assert fetch_raw(dovecot, address) == [RAW]
    assert fetch_raw(dovecot, address, "Archivo") == [RAW]
    [message] = inbox(dovecot, address)
    assert message["Subject"] == "Solicitud de publicación"


def test_idle_wakes_up_when_lmtp_delivers(dovecot: Dovecot, maildomain: str) -> None:
    address = f"idle@{maildomain}"
    with imap(dovecot, address) as client:
        client.select_folder("INBOX")
        client.idle()
        try:
            started = time.monotonic()
            deliver(dovecot, [address], RAW, mail_from="ana@example.org")
            exists: list[tuple[int, bytes]] = []
            while not exists and time.monotonic() - started < 10:
                responses = client.idle_check(timeout=1)
                exists = [r for r in responses if len(r) > 1 and r[1] == b"EXISTS"]
            elapsed = time.monotonic() - started
        finally:
            client.idle_done()
    assert exists, "IDLE never reported EXISTS"
    assert exists[0][0] == 1
    # inotify makes this a few milliseconds; the 1 s idle check interval caps the fallback.
    assert elapsed < 5, f"EXISTS after {elapsed:.2f} s"


def test_lmtp_refuses_unknown_domains(dovecot: Dovecot) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        deliver(dovecot, ["x@unregistered.example"], RAW)
    assert refused.value.recipients["x@unregistered.example"][0] == 550


# -- SMTP relay ---------------------------------------------------------------------------


def test_relay_delivers_to_two_real_mailboxes(
    relay: SmtpRelay, dovecot: Dovecot, maildomain: str
) -> None:
    first, second = f"jefatura@{maildomain}", f"comunicacion@{maildomain}"
    sent = send_as(
        relay,
        "Ana <ana@example.org>",
        [first, second],
        "Solicitud de publicación",
        "Texto del post.\n.Con punto inicial.\n",
        headers={"X-Mailflow-Test": "1"},
        attachments=[("cartel.pdf", b"%PDF-1.4 fake", "application/pdf")],
    )

    for address in (first, second):
        [received] = wait_for_mail(dovecot, address, timeout=10)
        assert received["Message-ID"] == sent["Message-ID"]
        assert received["Subject"] == "Solicitud de publicación"
        assert received["X-Mailflow-Test"] == "1"
        assert received["Delivered-To"] == address  # added by Dovecot's LMTP
        [attachment] = received.iter_attachments()
        assert attachment.get_filename() == "cartel.pdf"
        assert attachment.get_content() == b"%PDF-1.4 fake"
    [relayed] = relay.accepted
    assert relayed.mail_from == "ana@example.org"
    assert relayed.rcpt_tos == (first, second)
    assert [d.ok for d in relayed.deliveries] == [True, True]
    # The mailbox holds the relayed bytes unchanged, after the trace headers LMTP prepends.
    for raw in (fetch_raw(dovecot, first)[0], fetch_raw(dovecot, second)[0]):
        assert raw.endswith(relayed.raw)


def test_relay_preserves_raw_bytes_and_records_login(
    relay: SmtpRelay, dovecot: Dovecot, maildomain: str
) -> None:
    address = f"ugs@{maildomain}"
    with smtplib.SMTP(relay.host, relay.port, timeout=30) as client:
        client.login("mailflow@example.org", "anything")
        client.sendmail("ana@example.org", [address], RAW)

    [relayed] = relay.wait_accepted(1)
    assert relayed.raw == RAW
    assert relayed.login == "mailflow@example.org"
    wait_for_mail(dovecot, address)
    assert fetch_raw(dovecot, address)[0].endswith(RAW)


@pytest.mark.parametrize("code", [421, 451, 550])
def test_injected_refusal_reaches_the_client_and_nothing_is_delivered(
    relay: SmtpRelay, dovecot: Dovecot, maildomain: str, code: int
) -> None:
    address = f"ugs@{maildomain}"
    relay.fail_next(code)

    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_as(relay, "ana@example.org", [address], "refused", "x")
    assert refused.value.smtp_code == code
    # The fault is used up: the next message goes through, and is the only one delivered.
    send_as(relay, "ana@example.org", [address], "accepted", "y")
    assert [m["Subject"] for m in wait_for_mail(dovecot, address)] == ["accepted"]
    assert [r.code for r in relay.refused] == [code]
    assert len(relay.accepted) == 1


def test_injected_refusal_of_the_sender(relay: SmtpRelay, maildomain: str) -> None:
    relay.fail_next(451, stage="mail")

    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send_as(relay, "ana@example.org", [f"ugs@{maildomain}"], "s", "b")
    assert refused.value.smtp_code == 451
    assert relay.accepted == []


def test_injected_refusal_for_one_recipient(
    relay: SmtpRelay, dovecot: Dovecot, maildomain: str
) -> None:
    refused_rcpt, other = f"lleno@{maildomain}", f"ok@{maildomain}"
    relay.fail_next(452, recipient=refused_rcpt, count=2)

    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send_as(relay, "ana@example.org", [refused_rcpt], "one", "x")
    assert refused.value.recipients[refused_rcpt][0] == 452
    send_as(relay, "ana@example.org", [refused_rcpt, other], "two", "x")  # partly accepted
    send_as(relay, "ana@example.org", [refused_rcpt], "three", "x")  # fault used up

    assert [m["Subject"] for m in wait_for_mail(dovecot, other)] == ["two"]
    assert [m["Subject"] for m in wait_for_mail(dovecot, refused_rcpt)] == ["three"]


def test_relay_refuses_unknown_recipients_like_dovecot(relay: SmtpRelay) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send_as(relay, "ana@example.org", ["x@unregistered.example"], "s", "b")
    code, text = refused.value.recipients["x@unregistered.example"]
    assert code == 550
    assert b"doesn't exist" in text


def test_relay_refuses_connections_while_paused(
    relay: SmtpRelay, dovecot: Dovecot, maildomain: str
) -> None:
    port = relay.port
    with relay.refusing_connections():
        assert not accepts(relay.host, port)
        with pytest.raises(ConnectionRefusedError):
            send_as(relay, "ana@example.org", [f"ugs@{maildomain}"], "down", "x")
    assert relay.port == port
    send_as(relay, "ana@example.org", [f"ugs@{maildomain}"], "up again", "x")
    assert [m["Subject"] for m in wait_for_mail(dovecot, f"ugs@{maildomain}")] == ["up again"]


def test_pausing_drops_open_sessions(relay: SmtpRelay) -> None:
    with smtplib.SMTP(relay.host, relay.port, timeout=30) as client:
        client.noop()
        with relay.refusing_connections(), pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


# -- PostgreSQL and the store URLs --------------------------------------------------------


def test_postgres_select_one(postgres: Postgres) -> None:
    engine = sa.create_engine(postgres.create_database("select one"))
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("select 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_fresh_postgres_databases_are_independent(postgres: Postgres) -> None:
    first = sa.create_engine(postgres.create_database("first"))
    second = sa.create_engine(postgres.create_database("second"))
    try:
        with first.begin() as connection:
            connection.execute(sa.text("create table requests (id integer primary key)"))
            connection.execute(sa.text("insert into requests values (1)"))
        with second.connect() as connection:
            tables = sa.inspect(connection).get_table_names()
        assert tables == []
        with first.connect() as connection:
            assert connection.execute(sa.text("select count(*) from requests")).scalar() == 1
    finally:
        first.dispose()
        second.dispose()


def test_db_url_gives_an_empty_working_database(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as connection:
            assert sa.inspect(connection).get_table_names() == []
            connection.execute(sa.text("create table t (x integer)"))
            connection.execute(sa.text("insert into t values (42)"))
            assert connection.execute(sa.text("select x from t")).scalar_one() == 42
    finally:
        engine.dispose()


# -- nothing is left running --------------------------------------------------------------


def test_servers_stop_and_leave_nothing_running() -> None:
    """Start private instances (not the session's) and check stop() really ends them."""
    with (
        Dovecot() as dovecot,
        Postgres() as postgres,
        SmtpRelay(dovecot.host, dovecot.lmtp_port) as relay,
    ):
        running = dovecot.processes + postgres.processes
        assert len(dovecot.processes) > 1  # master and its children
        assert len(postgres.processes) > 1
        roots = (dovecot.root, postgres.root)
        ports = [
            (dovecot.host, dovecot.imap_port),
            (dovecot.host, dovecot.lmtp_port),
            (postgres.host, postgres.port),
            (relay.host, relay.port),
        ]
        message = build_message("a@example.org", ["b@example.org"], "s", "b").as_bytes()
        with smtplib.SMTP(relay.host, relay.port, timeout=30) as client:
            client.sendmail("a@example.org", ["b@example.org"], message)

    assert proc.survivors(running) == []
    assert not any(Path(root).exists() for root in roots)
    assert not any(accepts(host, port) for host, port in ports)
