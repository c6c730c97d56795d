"""kill -9 the real daemon at random moments while it works through a backlog.

Rounds of work land in the shared mailbox: new requests, and each open request's next
answer (informacion_especifica played forward, one stage per round). After each round the
daemon is started and SIGKILLed at random moments, again and again, until the round is
done; the last daemon of a round stops cleanly. Then the same rounds are played on a second
site by a daemon that never crashes (the control), and the two must agree:

* every message in the ledger exactly once, none quarantined, none left unprocessed;
* as many requests as were sent (none opened twice), each with the control's history
  (no transition applied twice, none lost);
* every outbound row sent and accepted by the relay, and delivered into its readers'
  mailboxes; a mail accepted twice only with the same Message-ID and bytes, and only when
  its first acceptance came from a daemon that was then killed (the crash fell between the
  server's 250 and our commit);
* every mail a killed daemon had claimed but not sent reaches the relay within 60 s of the
  restart (README, "Benchmarks and reliability"): the daemons' clock runs on across lives,
  as the real one does, so nothing is sent because a claim timed out.

`make test` kills at least 10 times per store over at least 9 rounds; `make chaos`
(MAILFLOW_CHAOS=1) at least 50 times. About 40 % of the kills are aimed just after the relay
took one of the daemon's mails. MAILFLOW_CHAOS_SEED replays a run; the seed is printed.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select
from testbed.daemon import Daemon
from testbed.dovecot import Dovecot
from testbed.mail import message_id_of, parse
from testbed.site import INFO_REQUEST, INFO_STEPS, START, Scenario, Site, about
from testbed.smtp import SmtpRelay

from mailflow.store.schema import HistoryRow, InboundRow, OutboxRow, OutboxStatus, RequestRow

from .conftest import full_size

ACTION = "Acción requerida"
# Seconds from a restart to the relay for mail a killed daemon had claimed (README).
TAKEOVER_BOUND = 60.0


@dataclass
class Plan:
    """What was sent to the shared mailbox, round by round (the control replays it)."""

    new_requests: list[int] = field(default_factory=list)  # per round
    inbound: int = 0  # mails sent to the shared mailbox so far


@dataclass
class Life:
    """One daemon process: where the relay's log stood when it started and ended."""

    first: int
    last: int = -1
    killed: bool = False


def _request(round_no: int, n: int) -> str:
    return INFO_REQUEST.replace("Feria de servicios digitales 2026", f"Feria {round_no}-{n}")


def _codes(scenario: Scenario) -> list[str]:
    with scenario.runtime.store.transaction() as session:
        return list(session.scalars(select(RequestRow.code).order_by(RequestRow.id)))


def _count(scenario: Scenario, column: object, *where: object) -> int:
    with scenario.runtime.store.transaction() as session:
        return int(session.scalar(select(func.count(column)).where(*where)) or 0)  # type: ignore[arg-type]


def _progress(scenario: Scenario, relay: SmtpRelay) -> tuple[int, int, int]:
    """Return (ledger rows, rows marked sent, mails the relay accepted): work done so far."""
    return (
        _count(scenario, InboundRow.id),
        _count(scenario, OutboxRow.sent_at),
        len(relay.accepted),
    )


def _done(scenario: Scenario, relay: SmtpRelay, expected_inbound: int) -> bool:
    """Tell whether every message is in the ledger and every outbound mail reached the
    relay (not only marked sent in the store)."""
    if _count(scenario, InboundRow.id) != expected_inbound:
        return False
    if _count(scenario, OutboxRow.id, OutboxRow.status != OutboxStatus.SENT):
        return False
    return _queued(scenario) <= _accepted_ids(relay)


def _queued(scenario: Scenario) -> set[str]:
    with scenario.runtime.store.transaction() as session:
        return set(session.scalars(select(OutboxRow.message_id)))


def _accepted_ids(relay: SmtpRelay) -> set[str]:
    return {message_id_of(m.raw) for m in relay.accepted}


@dataclass
class Owed:
    """Mails a killed daemon had claimed and not sent: Message-ID -> the restart after it."""

    since: dict[str, float | None] = field(default_factory=dict)
    longest: float = 0.0  # the slowest of them, from the restart to the relay (seconds)

    def killed(self, scenario: Scenario, relay: SmtpRelay) -> None:
        """Note what the daemon just killed held: claimed rows not at the relay yet."""
        with scenario.runtime.store.transaction() as session:
            claimed = set(
                session.scalars(
                    select(OutboxRow.message_id).where(
                        OutboxRow.claimed_by.is_not(None),
                        OutboxRow.status == OutboxStatus.PENDING,
                    )
                )
            )
        for message_id in claimed - _accepted_ids(relay):
            self.since.setdefault(message_id, None)

    def restarted(self) -> None:
        """Start the clock of what a killed daemon left, at the first restart after it."""
        moment = time.perf_counter()
        for message_id, since in self.since.items():
            if since is None:
                self.since[message_id] = moment

    def check(self, relay: SmtpRelay, seed: int) -> None:
        """Assert each owed mail reached the relay within the bound of its restart."""
        arrived = {}
        for m in relay.accepted:
            arrived.setdefault(message_id_of(m.raw), m.delivered_at)
        now = time.perf_counter()
        for message_id, since in list(self.since.items()):
            if since is None:
                continue
            took = arrived.get(message_id, now) - since
            assert took < TAKEOVER_BOUND, (
                f"seed {seed}: {message_id}, claimed by a killed daemon, not sent "
                f"{took:.0f} s after the restart"
            )
            if message_id in arrived:
                self.longest = max(self.longest, took)
                del self.since[message_id]


def _play_round(site: Site, plan: Plan, progress: dict[str, int], round_no: int, new: int) -> None:
    """Send one round: ``new`` requests and the next answer of every open request."""
    inboxes: dict[str, list[EmailMessage]] = {}
    for code, step in sorted(progress.items()):
        if step >= len(INFO_STEPS):
            continue
        person, answer, style = INFO_STEPS[step]
        if person not in inboxes:
            inboxes[person] = site.inbox(person)
        mails = [m for m in inboxes[person] if about(code, ACTION)(m)]
        assert mails, f"{person} has no action mail for {code} at step {step}"
        site.reply(person, mails[-1], answer, style=style)
        progress[code] = step + 1
        plan.inbound += 1
    for n in range(new):
        site.send("analista", f"Solicitud {round_no}-{n}", _request(round_no, n))
        plan.inbound += 1


def _learn_codes(scenario: Scenario, progress: dict[str, int]) -> None:
    for code in _codes(scenario):
        progress.setdefault(code, 0)


def _histories(scenario: Scenario) -> dict[str, tuple[str, str, int, tuple]]:
    """Return each request's title, status, stage and history without times or domains."""
    result = {}
    with scenario.runtime.store.transaction() as session:
        for row in session.scalars(select(RequestRow).order_by(RequestRow.id)):
            steps = tuple(
                (h.action, h.actor.split("@")[0], h.stage, h.to_stage)
                for h in session.scalars(
                    select(HistoryRow)
                    .where(HistoryRow.request_id == row.id)
                    .order_by(HistoryRow.id)
                )
            )
            result[row.code] = (row.title, row.status, row.stage, steps)
    return result


def _control(dovecot: Dovecot, relay: SmtpRelay, root: Path, plan: Plan) -> dict:
    """Play the same rounds on a fresh site whose daemon never crashes; return its histories."""
    root.mkdir()
    domain = f"control-{random.randrange(10**9)}.example.net"
    dovecot.add_domain(domain)
    scenario = Scenario(Site(dovecot, relay, domain, f"sqlite:///{root / 'control.db'}", root))
    try:
        progress: dict[str, int] = {}
        when = START + timedelta(hours=1)
        for round_no, new in enumerate(plan.new_requests):
            _play_round(scenario.site, Plan(), progress, round_no, new)
            for _ in range(2):  # a pass handles everything; the second proves it idle
                scenario.runtime.runner(lambda w=when: w).run_once()
            when += timedelta(minutes=1)
            _learn_codes(scenario, progress)
        return _histories(scenario)
    finally:
        scenario.close()


@dataclass
class Pace:
    """How long to let a daemon work before its kill, learned as the test goes.

    A wait that lets the daemon finish its round wastes the life (it is stopped, not
    killed): the wait shrinks. After a kill it grows a little, so kills spread over the
    whole round rather than all landing in start-up.
    """

    rng: random.Random
    delay: float = 1.0

    def wait(self) -> float:
        return self.rng.uniform(0.3, 1.7) * self.delay

    def finished(self) -> None:
        self.delay = max(0.05, self.delay * 0.7)

    def killed(self) -> None:
        self.delay = min(10.0, self.delay * 1.15)


def _kill_moment(
    daemon: Daemon, life: Life, *, scenario: Scenario, relay: SmtpRelay, plan: Plan, pace: Pace
) -> bool:
    """Wait for the moment to kill ``daemon``; return False if its round was done first."""
    rng = pace.rng
    roll = rng.random()
    if roll < 0.4:
        # Right after the relay took one of this life's mails: the window between the
        # server's 250 and the commit that records it, where a crash makes a repeat.
        target = life.first + rng.randint(1, 30)
        deadline = time.monotonic() + 60
        checked = time.monotonic()
        while len(relay.accepted) < target and time.monotonic() < deadline:
            # A daemon that died by itself is a failure, not a kill to count.
            assert daemon.alive, f"the daemon died on its own:\n{daemon.log()}"
            if time.monotonic() - checked > 0.5:
                if _done(scenario, relay, plan.inbound):
                    return False
                checked = time.monotonic()
            time.sleep(0.005)
        return True
    # Start-up (imports, store, migrations check) takes one or two seconds on a loaded
    # machine: some kills land in it, most in the work that follows.
    if roll < 0.5:
        time.sleep(rng.uniform(0.05, 1.5))
    else:
        daemon.wait_log(" watching ")
        time.sleep(pace.wait())
    return not _done(scenario, relay, plan.inbound)


# Kill and restart cycles cost a daemon start-up each: a minute or two per store at make
# test's size on a loaded 2-core machine, beyond the suite's 300 s default.
@pytest.mark.timeout(3600 if full_size() else 900)
def test_kill_9_at_random_moments_loses_nothing_and_doubles_nothing(
    scenario: Scenario,
    spawn: Callable[[Path, datetime], Daemon],
    dovecot: Dovecot,
    relay: SmtpRelay,
    tmp_path: Path,
) -> None:
    site = scenario.site
    seed = int(os.environ.get("MAILFLOW_CHAOS_SEED") or random.randrange(10**6))
    rng = random.Random(seed)
    kills_wanted, max_rounds = (50, 60) if full_size() else (10, 20)
    min_rounds, per_round = 9, 4
    print(f"\nseed {seed}: at least {kills_wanted} kills, {per_round} new requests a round")

    plan, progress, lives = Plan(), {}, []
    pace, owed = Pace(rng), Owed()
    # One clock across lives, running at real speed from START + 1 h, as a real one would.
    origin = time.monotonic()
    round_no = 0
    busy_kills = idle_lives = 0
    while sum(life.killed for life in lives) < kills_wanted or round_no < min_rounds:
        kills = sum(life.killed for life in lives)
        assert round_no < max_rounds, (
            f"seed {seed}: only {kills} of {kills_wanted} kills in {round_no} rounds"
        )
        # A steady inflow: requests finish after eight answers, so a round stays a few
        # dozen messages and every life finds work to do.
        _play_round(site, plan, progress, round_no, per_round)
        plan.new_requests.append(per_round)
        while True:
            life = Life(first=len(relay.accepted))
            lives.append(life)
            elapsed = timedelta(seconds=time.monotonic() - origin)
            daemon = spawn(site.config_path, START + timedelta(hours=1) + elapsed)
            owed.restarted()
            before = _progress(scenario, relay)
            moment = _kill_moment(
                daemon, life, scenario=scenario, relay=relay, plan=plan, pace=pace
            )
            if not moment:
                # -SIGTERM: it was still starting, before its handler (nothing to lose).
                assert daemon.terminate() in (0, -signal.SIGTERM), daemon.log()
                life.last = len(relay.accepted)
                pace.finished()
                owed.check(relay, seed)
                break
            assert daemon.alive, f"the daemon died on its own:\n{daemon.log()}"
            daemon.kill()
            assert daemon.process.returncode == -signal.SIGKILL, daemon.log()
            pace.killed()
            relay.wait_quiet()  # a DATA the relay was finishing lands in its log
            life.last, life.killed = len(relay.accepted), True
            owed.check(relay, seed)
            owed.killed(scenario, relay)
            after = _progress(scenario, relay)
            # A message handled twice or a request opened twice shows at once.
            assert after[0] <= plan.inbound, (
                f"seed {seed}: {after[0]} ledger rows for {plan.inbound} messages sent"
            )
            requests = _count(scenario, RequestRow.id)
            assert requests <= sum(plan.new_requests), (
                f"seed {seed}: {requests} requests for {sum(plan.new_requests)} sent"
            )
            busy_kills += after != before
            # Repeated sends are not progress: only newly handled messages or sent rows.
            idle_lives = 0 if after[:2] != before[:2] else idle_lives + 1
            assert idle_lives < 15, (
                f"seed {seed}: no progress in 15 lives; {plan.inbound} messages sent"
            )
        _learn_codes(scenario, progress)
        round_no += 1
        # Every row the store calls sent was accepted by the server (none lost in a crash).
        with scenario.runtime.store.transaction() as session:
            queued = set(session.scalars(select(OutboxRow.message_id)))
        accepted = _accepted_ids(relay)
        assert queued <= accepted, f"seed {seed}: never delivered: {sorted(queued - accepted)[:5]}"
        assert not owed.since, f"seed {seed}: claimed by a killed daemon, never sent"

    kills = sum(life.killed for life in lives)
    # Every message in the ledger once, processed, none quarantined or left behind.
    with scenario.runtime.store.transaction() as session:
        ledger = session.execute(select(InboundRow.uid, InboundRow.outcome)).all()
        outbox = session.execute(select(OutboxRow.message_id, OutboxRow.status)).all()
    assert len(ledger) == plan.inbound
    assert len({uid for uid, _ in ledger}) == plan.inbound
    assert Counter(outcome for _, outcome in ledger) == {"processed": plan.inbound}
    # No request opened twice; the same histories as a daemon that never crashed.
    assert _count(scenario, RequestRow.id) == sum(plan.new_requests)
    control = _control(dovecot, relay, tmp_path / "control", plan)
    assert _histories(scenario) == control
    # Every outbound row sent and accepted; repeats only of a killed daemon's acceptance.
    assert {status for _, status in outbox} == {OutboxStatus.SENT}
    ours = [
        (i, parse(m.raw)["Message-ID"], m.raw)
        for i, m in enumerate(relay.accepted)
        if m.mail_from == site.shared
    ]
    by_id: dict[str, list[tuple[int, bytes]]] = {}
    for index, message_id, raw in ours:
        by_id.setdefault(str(message_id), []).append((index, raw))
    assert set(by_id) == {mid for mid, _ in outbox}
    repeats_per_life: Counter[int] = Counter()
    # Accepted means delivered: the relay's LMTP put each into every reader's mailbox.
    assert all(d.ok for m in relay.accepted for d in m.deliveries)
    for copies in by_id.values():
        assert len({raw for _, raw in copies}) == 1, "a repeat must be the same bytes"
        for index, _ in copies[:-1]:  # every copy but the last was followed by a crash
            life = next(n for n, lf in enumerate(lives) if lf.first <= index < lf.last)
            assert lives[life].killed, f"mail #{index} repeated after a clean stop"
            repeats_per_life[life] += 1
    distribution = Counter(repeats_per_life.get(n, 0) for n, lf in enumerate(lives) if lf.killed)
    print(
        f"rounds {round_no}, messages {plan.inbound}, requests {sum(plan.new_requests)}, "
        f"mails {len(by_id)}, lives {len(lives)}, kills {kills} ({busy_kills} in lives that "
        f"handled or sent something); repeats per kill: "
        + ", ".join(f"{k} repeat(s) x{n}" for k, n in sorted(distribution.items()))
        + f"; claimed mail of a killed daemon sent at most {owed.longest:.1f} s after the restart"
    )
    assert kills >= kills_wanted
