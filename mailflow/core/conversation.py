"""Sort a reply about a request into what it is, beyond "the stage's holder acts" (pure).

People answer mail the way they answer any mail: the requester sends the poster she forgot,
a colleague copied on the thread answers APRUEBO, the same APRUEBO arrives twice, a second
holder of a stage acts after the first, somebody thanks the closing mail, the requester
withdraws. :func:`decide` reads one reply from plain values (who wrote, what was read,
what proves the sender, the request's state and history) and returns a :class:`Decision`;
the shell (:mod:`mailflow.app.conversation`) carries it out. Nothing here does I/O: the
directory, the day and the history are arguments.

The rules, in the order they are tried:

1. ``ANULO`` withdraws the request when the sender is proven, may withdraw (``[requests]
   withdraw_roles``) and the request has not ended; after publication the answer points to
   the ``eliminacion`` procedure.
2. Nothing proves the sender (no token of this request issued to them, no trusted
   ``Authentication-Results``): a keyword is refused and the stage's holders warned, as
   before (UNAUTHORIZED); anything else is kept in the archive and answered to the From
   address only, so that its real owner learns of it (UNPROVEN).
3. No keyword: a sender who is neither of the institution nor holds a token of the request
   is a stranger, answered as in 2; a pure thanks (or nothing new at all) is archived
   without an answer (THANKS); on an ended request the rest is kept and answered with the
   outcome (CLOSED); the stage's own holder whose reply tried an action that does not count
   (negated, asked, conditional, or empty) gets the keywords (HELP); anything else is a
   note (NOTE).
4. A keyword from a proven sender: the holder answering this stage acts (ACT), unless it
   repeats their own vote; the same person's same action already recorded for the stage
   their mail was about is a REPEAT; an action on a stage another holder already decided is
   LATE; the current holder answering an older stage's mail is STALE; any other known
   person of the institution is a colleague whose message becomes a note (COLLEAGUE); a
   proven stranger is refused as before (UNAUTHORIZED).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from mailflow.core.model import Action, Procedure, RequestState, Status
from mailflow.core.names import ROLE_NAMES, STATUS_WORDS, join_words, role_words
from mailflow.core.people import (
    SOLICITANTE,
    Directory,
    address_key,
    holders_of,
    may_act,
)

NOTE = "NOTA"  # the history action of a note
OPERATOR = "operador"  # the actor of what the operator does from the command line
_ACTIONS = frozenset(a.value for a in Action)


class Verdict(StrEnum):
    """Name what a reply about a request turned out to be."""

    ACT = "act"
    HELP = "help"
    NOTE = "note"
    THANKS = "thanks"
    CLOSED = "closed"
    COLLEAGUE = "colleague"
    REPEAT = "repeat"
    LATE = "late"
    STALE = "stale"
    WITHDRAW = "withdraw"
    NOT_WITHDRAWN = "not_withdrawn"
    UNPROVEN = "unproven"
    UNAUTHORIZED = "unauthorized"


class Why(StrEnum):
    """Name why an ANULO withdrew nothing, or why a note was not taken."""

    NOT_ALLOWED = "not_allowed"
    PUBLISHED = "published"
    ENDED = "ended"
    # Vouched for by the trusted server, but neither of the institution nor of the request.
    STRANGER = "stranger"


@dataclass(frozen=True)
class Entry:
    """One line of a request's history, as the decisions need it."""

    at: datetime
    actor: str
    action: str
    stage: int


@dataclass(frozen=True)
class Proof:
    """What proves the sender: stages of this request whose token was issued to them."""

    stages: frozenset[int] = frozenset()
    trusted: bool = False  # the trusted server's Authentication-Results vouch for them

    @property
    def proven(self) -> bool:
        """Tell whether anything proves the sender at all."""
        return bool(self.stages) or self.trusted

    def covers(self, stage: int) -> bool:
        """Tell whether the proof holds for ``stage`` (a token of it, or the server)."""
        return self.trusted or stage in self.stages


@dataclass(frozen=True)
class Said:
    """What a reply says: its author, the action read (if any) and its new text."""

    sender: str
    action: Action | None
    text: str = ""
    files: int = 0  # attached files (inline images of a signature excluded)
    attempted: bool = False  # a keyword that does not count: negated, asked, conditional
    thanks: bool = False  # the text only thanks or acknowledges (mail.thanks.is_thanks)


@dataclass(frozen=True)
class Decision:
    """The verdict, with the history entry an answer cites (who acted, when)."""

    verdict: Verdict
    entry: Entry | None = None
    why: Why | None = None


@dataclass(frozen=True)
class Standing:
    """Where the request stands: what every decision reads besides the reply itself."""

    state: RequestState
    procedure: Procedure
    directory: Directory
    history: tuple[Entry, ...]
    today: date
    withdraw_roles: tuple[str, ...]

    @property
    def open(self) -> bool:
        """Tell whether the request is still running."""
        return self.state.status is Status.EN_CURSO

    def may(self, sender: str, roles: Iterable[str]) -> bool:
        """Tell whether ``sender`` holds one of ``roles`` for this request today."""
        return may_act(self.directory, sender, tuple(roles), self.state, self.today).allowed


def decide(said: Said, proof: Proof, standing: Standing) -> Decision:
    """Return what ``said`` is for the request (see the module's rules)."""
    if said.action is Action.ANULO:
        return _withdrawal(said, proof, standing)
    if not proof.proven:
        return Decision(Verdict.UNAUTHORIZED if said.action else Verdict.UNPROVEN)
    holds = standing.open and standing.may(said.sender, standing.state.roles)
    if said.action is None:
        known = bool(proof.stages) or is_known(
            standing.directory, said.sender, standing.state, standing.history, standing.today
        )
        if not known:
            return Decision(Verdict.UNPROVEN, why=Why.STRANGER)
        return _unkeyed(said, standing, holds=holds)
    return _keyed(said, said.action, proof, standing, holds=holds)


def _unkeyed(said: Said, standing: Standing, *, holds: bool) -> Decision:
    """Sort a reply without an action: thanks, an ended request, help or a note."""
    empty = not said.files and not said.text.strip()
    if (not said.files and said.thanks) or (empty and not holds):
        return Decision(Verdict.THANKS)  # nothing to keep beyond the archive, nothing to say
    if not standing.open:
        return Decision(Verdict.CLOSED)
    if holds and not said.files and (said.attempted or not said.text.strip()):
        return Decision(Verdict.HELP)
    return Decision(Verdict.NOTE)


def _keyed(
    said: Said, action: Action, proof: Proof, standing: Standing, *, holds: bool
) -> Decision:
    """Sort a proven keyword: act, a repeat, late, stale, a colleague's, or a stranger's."""
    state, history = standing.state, standing.history
    if holds and proof.covers(state.stage):
        if any(
            address_key(v.address) == address_key(said.sender) and v.action is action
            for v in state.votes
        ):
            return Decision(Verdict.REPEAT, _latest(history, said.sender, {state.stage}))
        return Decision(Verdict.ACT)
    mine = _latest(history, said.sender, proof.stages or {e.stage for e in history})
    if mine is not None and mine.action == action.value:
        this_visit = mine.at >= state.entered_at
        if mine.stage != state.stage or not standing.open or this_visit:
            return Decision(Verdict.REPEAT, mine)
    late = _late(said.sender, proof, standing)
    if late is not None:
        return Decision(Verdict.LATE, late)
    if not standing.open:
        return Decision(Verdict.CLOSED)
    if holds:
        return Decision(Verdict.STALE)
    if is_known(standing.directory, said.sender, state, history, standing.today):
        return Decision(Verdict.COLLEAGUE, mine)
    return Decision(Verdict.UNAUTHORIZED)


def _late(sender: str, proof: Proof, standing: Standing) -> Entry | None:
    """Return who decided a stage the sender's token names, when it was not the sender."""
    stages = standing.procedure.stages
    for number in sorted(proof.stages, reverse=True):
        if number == standing.state.stage and standing.open:
            continue  # not decided yet
        decided = _decision(standing.history, number)
        if (
            decided is None
            or address_key(decided.actor) == address_key(sender)
            or number not in stages
        ):
            continue
        if standing.may(sender, stages[number].roles):
            return decided
    return None


def _withdrawal(said: Said, proof: Proof, standing: Standing) -> Decision:
    if not proof.proven:
        return Decision(Verdict.UNPROVEN)
    status = standing.state.status
    if status is Status.PUBLICADO:
        return Decision(Verdict.NOT_WITHDRAWN, why=Why.PUBLISHED)
    if status is not Status.EN_CURSO:
        return Decision(Verdict.NOT_WITHDRAWN, why=Why.ENDED)
    if not standing.may(said.sender, standing.withdraw_roles):
        return Decision(Verdict.NOT_WITHDRAWN, why=Why.NOT_ALLOWED)
    return Decision(Verdict.WITHDRAW)


def _latest(history: Sequence[Entry], sender: str, stages: Iterable[int]) -> Entry | None:
    """Return the sender's latest action on one of ``stages`` (notes and events aside)."""
    wanted = set(stages)
    mine = [
        e
        for e in history
        if e.action in _ACTIONS
        and e.stage in wanted
        and address_key(e.actor) == address_key(sender)
    ]
    return max(mine, key=lambda e: e.at, default=None)


def _decision(history: Sequence[Entry], stage: int) -> Entry | None:
    """Return the action that last decided ``stage`` (a vote's outcome is its own entry)."""
    done = [e for e in history if e.action in _ACTIONS and e.stage == stage]
    return done[-1] if done else None


def is_known(
    directory: Directory,
    address: str,
    state: RequestState,
    history: Sequence[Entry] = (),
    on_date: date | None = None,
) -> bool:
    """Tell whether ``address`` is a person of the institution, or of this request.

    Members of roles and units, substitutes on ``on_date`` (a substitution that ended no
    longer makes anybody a colleague), the requester and whoever acted on the request.
    """
    key = address_key(address)
    people = {address_key(state.requester), *(address_key(e.actor) for e in history)}
    for role in directory.roles.values():
        people.update(address_key(a) for a in role.members)
        people.update(
            address_key(s.address) for s in role.substitutes if on_date is None or s.active(on_date)
        )
    for unit in directory.units.values():
        people.update(address_key(a) for a in (unit.head or "", *unit.members) if a)
    return key in people


# -- what the requester will hear, what a held opening will do -----------------------------


def promised_mails(
    procedure: Procedure, directory: Directory, state: RequestState, today: date
) -> list[str]:
    """Return, in Spanish, every moment the requester will get a mail about the request.

    The acknowledgement lists exactly these: the stages the requester acts on (their
    action mail), the stages marked ``notify_requester``, and the end. Answers to their
    own mails (notes, ANULO) come on top, and the acknowledgement says so.
    """
    me = address_key(state.requester)
    first = procedure.first.number
    acting = {
        stage.number
        for stage in procedure.stages.values()
        if stage.number != first
        and (
            SOLICITANTE in stage.roles
            or any(
                me in {address_key(a) for a in holders_of(directory, (role,), state, today)}
                for role in stage.roles
            )
        )
    }
    promised: list[str] = []
    for stage in procedure.stages.values():
        name = stage.name.rstrip(". ")
        if stage.number in acting:
            maybe = " (si se le asigna)" if stage.alternatives else ""
            if len(stage.roles) > 1 and not stage.alternatives:
                maybe = "; si otra persona a cargo lo hace antes, se lo avisaremos"
            promised.append(
                f"cuando la solicitud llegue a la etapa {stage.number} ({name}), "
                f"para que usted actúe{maybe}"
            )
        elif stage.number != first and SOLICITANTE in stage.cc:
            promised.append(
                f"cuando la solicitud llegue a la etapa {stage.number} ({name}), en copia"
            )
        # A decision whose every outcome mails the requester anyway needs no line of its own.
        covered = all(t.end is not None or t.to in acting for t in stage.transitions.values())
        if stage.notify_requester and not covered:
            who = stage.responsible or role_words(directory, stage.roles)
            promised.append(
                f"cuando se resuelva la etapa {stage.number} ({name}; a cargo de {who})"
            )
    endings = {
        t.end
        for stage in procedure.stages.values()
        for t in stage.transitions.values()
        if t.end is not None and (not t.notify or SOLICITANTE in (*t.notify, *t.cc))
    }
    told = [_ENDINGS[e] for e in sorted(endings, key=list(Status).index) if e in _ENDINGS]
    told.append(_ENDINGS[Status.CANCELADO])
    promised.append("al terminar: " + join_words(told))
    return promised


_ENDINGS = {
    Status.PUBLICADO: "si se publica (con los enlaces)",
    Status.RECHAZADO: "si se rechaza (con el motivo)",
    Status.ELIMINADO: "cuando se confirme la eliminación",
    Status.CANCELADO: "si se anula",
}


def what_happens(procedure: Procedure) -> str:
    """Say in Spanish what confirming an opening of ``procedure`` sets in motion."""
    first = procedure.first
    transition = first.transitions.get(procedure.opening_action)
    if transition is None:
        return "se abrirá la solicitud."
    if transition.end is not None:
        return (
            f"se registrará de inmediato como {STATUS_WORDS[transition.end]} "
            f"({procedure.name}); no hay más etapas."
        )
    target = procedure.stages[transition.to or first.number]
    who = target.responsible or join_words([ROLE_NAMES.get(r, r) for r in target.roles])
    total = len(procedure.stages)
    return (
        f"se abrirá la solicitud ({procedure.name}, {total} etapas) y pasará a la etapa "
        f"{target.number}: {target.name.rstrip('. ')}, a cargo de {who}."
    )
