"""Latency: a reply goes in, the next person's mail comes out, the daemon idle in IDLE.

The real daemon (`mailflow run`) watches the shared mailbox. The benchmark plays the people
of `informacion_especifica` (nine stages, as `make demo` does) request after request, one
action at a time, and times each action from the start of its SMTP send to the moment the
next person's "Acción requerida" is stored in their own mailbox: when Dovecot's LMTP
answered the relay for it (the relay stamps it). The moment IMAP IDLE announces it there is
kept too, but Dovecot holds every IDLE notification back 500 ms (``NOTIFY_DELAY_MSECS`` in
src/lib-storage/mailbox-watch.c), and the daemon already paid that once to wake up.
Before each action (one in four) the very same mail is sent to a witness mailbox, with no
daemon in between: the baseline, timed both to its IDLE notice (issue 8's definition) and
to its LMTP delivery.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import smtplib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.utils import parseaddr

from testbed.site import TZ, Site, code_of

from bench.bed import Bed, StoreKind
from bench.corpus import reply_mail, request_mail
from bench.daemon import Daemon, command
from bench.mailbox import Arrival, Watcher

PROCEDURE = "informacion_especifica"
POST_URL = "https://www.facebook.com/ejemplo/posts/123"
WITNESS = "testigo"
STEP_TIMEOUT = 60.0
QUIET = 0.15  # the relay quiet this long means the daemon is done and back in IDLE
BASELINE_EVERY = 4  # one baseline sample per so many actions: it costs an IDLE round trip


@dataclass(frozen=True)
class Step:
    """One action: who acts, what they answer, and who must then get the next mail."""

    stage: int
    actor: str
    answer: str
    style: str  # how the actor's client quotes (testbed.site.QUOTERS); "" for a new request
    next_person: str


def chain(today: dt.date) -> list[Step]:
    """Return the nine actions that carry one request from intake to publication."""

    def day(n: int) -> str:
        return (today + dt.timedelta(days=n)).strftime("%d/%m/%Y")

    proposal = f"ENTREGO la propuesta.\nCronograma: material {day(7)}; publicación {day(14)}"
    return [
        Step(1, "analista", "", "", "directora"),
        Step(2, "directora", "APRUEBO", "gmail", "jefe.ugs"),
        Step(3, "jefe.ugs", "DERIVO al profesional.", "outlook", "promocion"),
        Step(4, "promocion", proposal, "thunderbird", "analista"),
        Step(5, "analista", "Aprobado.", "iphone", "disenio"),
        Step(6, "disenio", "ENTREGO el material final.", "gmail", "analista"),
        Step(7, "analista", "APRUEBO", "outlook", "jefe.ugs"),
        Step(8, "jefe.ugs", "DERIVO", "gmail", "community"),
        Step(9, "community", f"PUBLICADO {POST_URL}", "thunderbird", "analista"),
    ]


@dataclass(frozen=True)
class Latencies:
    """Seconds per action through the daemon, and for the same mail with no daemon."""

    daemon: list[float]  # to the LMTP delivery into the next person's mailbox
    daemon_idle: list[float]  # to the IDLE notice in that mailbox
    baseline: list[float]  # the same mail to the witness: to its IDLE notice
    baseline_delivered: list[float]  # … and to its LMTP delivery
    peak_rss_mb: float


def stage_names(site: Site) -> dict[int, str]:
    """Return the stage names of the procedure, from `mailflow procedures --json`."""
    out = subprocess.run(
        command(site.config_path, "procedures", "--json"),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    (info,) = [p for p in json.loads(out) if p["id"] == PROCEDURE]
    return {stage["number"]: stage["name"] for stage in info["stages"]}


def awaited(
    site: Site, step: Step, code: str, names: dict[int, str]
) -> Callable[[EmailMessage], bool]:
    """Return the test for the mail that shows the daemon has handled ``step``."""
    address = site.addr(step.next_person)
    name = names.get(step.stage + 1)

    def match(message: EmailMessage) -> bool:
        subject, to = str(message["Subject"]), str(message["To"]).lower()
        if code not in subject or address not in to:
            return False
        if name is None:
            return "Publicación confirmada" in subject
        return "Acción requerida" in subject and name in subject

    return match


class Player:
    """Act as the people of one site and time each action."""

    def __init__(self, bed: Bed, site: Site, daemon: Daemon) -> None:
        self.bed, self.site, self.daemon = bed, site, daemon
        self.names = stage_names(site)
        people = {step.next_person for step in chain(dt.date.today())} | {WITNESS}
        self.watchers = {p: Watcher(bed.dovecot, site.addr(p)) for p in sorted(people)}
        self.rng = random.Random(8)
        self.smtp = smtplib.SMTP(bed.relay.host, bed.relay.port, timeout=60)

    def close(self) -> None:
        """Log out of every mailbox and the relay."""
        self.smtp.quit()
        for watcher in self.watchers.values():
            watcher.close()

    def send(self, sender: str, to: str, raw: bytes) -> float:
        """Send raw over the open SMTP connection; return when the send started."""
        started = time.perf_counter()
        self.smtp.sendmail(self.site.addr(sender), [to], raw)
        return started

    def wait(self, person: str, match: Callable[[EmailMessage], bool]) -> Arrival:
        """Return the first new mail of person that matches (skipping the others)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            self.daemon.check_alive()
            arrival = self.watchers[person].next(max(0.1, deadline - time.monotonic()))
            if match(arrival.message):
                return arrival

    def settle(self) -> None:
        """Wait until the relay has been quiet for QUIET seconds: the daemon is idle."""
        count, since = len(self.bed.relay.accepted), time.monotonic()
        while time.monotonic() - since < QUIET:
            time.sleep(0.02)
            if (now := len(self.bed.relay.accepted)) != count:
                count, since = now, time.monotonic()
        self.bed.relay.reset()  # keeps the relay's log (raw bytes) from growing

    def delivered(self, person: str, message_id: str) -> float:
        """Return when the relay's LMTP delivery of message_id to person ended."""
        address = self.site.addr(person).lower()
        for relayed in reversed(self.bed.relay.accepted):
            to = {r.lower() for r in relayed.rcpt_tos}
            if address in to and message_id.encode() in relayed.raw:
                return relayed.delivered_at
        raise AssertionError(f"the relay did not deliver {message_id} to {address}")

    def play(self, actions: int) -> Latencies:
        """Play requests through the procedure until ``actions`` actions are timed."""
        timed: list[float] = []
        timed_idle: list[float] = []
        baseline: list[float] = []
        baseline_delivered: list[float] = []
        index = 0
        while len(timed) < actions:
            index += 1
            received: dict[str, EmailMessage] = {}
            code = ""
            for step in chain(dt.datetime.now(TZ).date()):
                if len(timed) >= actions:
                    break
                raw = self.raw_for(step, index, received)
                self.settle()
                if len(timed) % BASELINE_EVERY == 0:
                    started = self.send(step.actor, self.site.addr(WITNESS), raw)
                    witnessed = self.watchers[WITNESS].next(STEP_TIMEOUT)
                    baseline.append(witnessed.at - started)
                    mid = str(witnessed.message["Message-ID"])
                    baseline_delivered.append(self.delivered(WITNESS, mid) - started)
                started = self.send(step.actor, self.site.shared, raw)
                arrival = self.wait(step.next_person, awaited(self.site, step, code, self.names))
                mid = str(arrival.message["Message-ID"])
                timed.append(self.delivered(step.next_person, mid) - started)
                timed_idle.append(arrival.at - started)
                received[step.next_person] = arrival.message
                code = code or code_of(arrival.message)
        return Latencies(timed, timed_idle, baseline, baseline_delivered, 0.0)

    def raw_for(self, step: Step, index: int, received: dict[str, EmailMessage]) -> bytes:
        """Return the mail of this step: a new request, or a reply to the mail received."""
        if step.stage == 1:
            return request_mail(self.site, index * 2, self.rng)  # even: never a photo
        original = received[step.actor]
        _name, sender = parseaddr(str(original["From"]))
        assert sender == self.site.shared, f"unexpected sender {sender}"
        return reply_mail(self.site, step.actor, original, step.answer, step.style)


def measure(bed: Bed, store: StoreKind, actions: int) -> Latencies:
    """Run the daemon on a fresh site and store; time ``actions`` actions."""
    site = bed.site(f"latency-{store}", store)
    daemon = Daemon(site.config_path, site.root / "daemon.log")
    daemon.start()
    try:
        player = Player(bed, site, daemon)
        try:
            got = player.play(actions)
        finally:
            player.close()
    finally:
        peak = daemon.stop()
    return replace(got, peak_rss_mb=peak)
