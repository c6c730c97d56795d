"""Define the value types of the workflow core: actions, procedures, request state, events, effects.

Everything here is a frozen dataclass or a StrEnum. Enum *values* are what gets persisted
(``"en_curso"``, ``"APRUEBO COMITE"``), never the Python names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class Action(StrEnum):
    """Name the keywords a person may answer with; the value is what they type."""

    APRUEBO = "APRUEBO"
    # Its own action rather than a flag on APRUEBO: the branch to the Comité is then a plain
    # row of the transition table, and the keyword itself says which way the request goes.
    APRUEBO_COMITE = "APRUEBO COMITE"
    RECHAZO = "RECHAZO"
    OBSERVO = "OBSERVO"
    DERIVO = "DERIVO"
    ENTREGO = "ENTREGO"
    PUBLICADO = "PUBLICADO"
    ELIMINADO = "ELIMINADO"
    # Withdraws the request at any stage before its end; never a row of a stage's table.
    ANULO = "ANULO"

    @property
    def needs_reason(self) -> bool:
        """Tell whether the action is meaningless without text (a reason, suggestions)."""
        return self in (Action.RECHAZO, Action.OBSERVO)


class Status(StrEnum):
    """Name the life states of a request, as persisted and shown by ``requests show``."""

    EN_CURSO = "en_curso"
    PUBLICADO = "publicado"
    RECHAZADO = "rechazado"
    CANCELADO = "cancelado"
    ELIMINADO = "eliminado"


TERMINAL_STATUSES = frozenset(Status) - {Status.EN_CURSO}


class Quorum(StrEnum):
    """Name how many holders of a collegiate role must agree before it decides."""

    ANY = "any"
    MAJORITY = "majority"
    ALL = "all"

    def threshold(self, seats: int) -> int:
        """Return how many equal votes decide among ``seats`` voters (at least one)."""
        if self is Quorum.ANY:
            return 1
        if self is Quorum.ALL:
            return max(seats, 1)
        return seats // 2 + 1


class DeadlineKind(StrEnum):
    """Name the manual's "plazo referencial" rules."""

    VARIABLE = "variable"
    BUSINESS_DAYS = "business_days"
    CRONOGRAMA = "cronograma"


@dataclass(frozen=True)
class Deadline:
    """Say how a stage's due date is computed when the request enters it."""

    kind: DeadlineKind
    days: int = 0

    def describe(self) -> str:
        """Return the rule as written in the TOML (``business_days=1``, ``cronograma``)."""
        if self.kind is DeadlineKind.BUSINESS_DAYS:
            return f"business_days={self.days}"
        return self.kind.value


@dataclass(frozen=True)
class Transition:
    """Say where one accepted action leads: another stage, or the end of the request."""

    action: Action
    to: int | None = None
    end: Status | None = None
    # For a stage whose roles are alternatives: which one this transition hands over to.
    role: str | None = None
    notify: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stage:
    """Describe one stage of a procedure as the manual's table row describes it."""

    number: int
    name: str
    roles: tuple[str, ...]
    deadline: Deadline
    transitions: Mapping[Action, Transition]
    responsible: str = ""
    instrument: str = ""
    # True: ``roles`` are alternatives and the incoming transition picks one (the manual's
    # "jefe de unidad solicitante (Comité)"). False: any holder of any listed role acts.
    alternatives: bool = False
    cc: tuple[str, ...] = ()
    rechazo_report_to: tuple[str, ...] = ()
    # The requester is told when this stage is decided (the acknowledgement promises it).
    notify_requester: bool = False

    @property
    def actions(self) -> tuple[Action, ...]:
        """Return the actions this stage accepts, in table order."""
        return tuple(self.transitions)


@dataclass(frozen=True)
class Procedure:
    """Describe one procedure: who may start it and its stages by number."""

    id: str
    name: str
    started_by: tuple[str, ...]
    stages: Mapping[int, Stage]
    opening_action: Action = Action.ENTREGO
    aliases: tuple[str, ...] = ()
    order: int = 100
    source: str = ""

    @property
    def first(self) -> Stage:
        """Return the stage a new request starts in (the lowest number)."""
        return self.stages[min(self.stages)]


# Stage number -> due date, as given with the proposal ("de acuerdo a cronograma").
Cronograma = tuple[tuple[int, date], ...]


@dataclass(frozen=True)
class Vote:
    """Record one holder's answer at a collegiate stage that has not decided yet."""

    address: str
    action: Action
    text: str = ""


@dataclass(frozen=True)
class RequestState:
    """Hold everything the engine needs to know about one request between events."""

    procedure: str
    stage: int
    roles: tuple[str, ...]
    requester: str
    unit: str | None
    entered_at: datetime
    status: Status = Status.EN_CURSO
    due: datetime | None = None
    cronograma: Cronograma = ()
    votes: tuple[Vote, ...] = ()


@dataclass(frozen=True)
class RequestOpened:
    """Event: a request mail arrived and opens a request of ``procedure``."""

    procedure: str
    requester: str
    unit: str | None = None
    text: str = ""
    cronograma: Cronograma = ()
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActionTaken:
    """Event: ``actor`` answered ``action`` on the request's current stage."""

    actor: str
    action: Action
    text: str = ""
    cronograma: Cronograma = ()
    urls: tuple[str, ...] = ()


Event = RequestOpened | ActionTaken


@dataclass(frozen=True)
class SendMail:
    """Effect: send ``template`` to ``to`` with ``cc``; addresses are already resolved."""

    template: str
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    stage: int = 0
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordHistory:
    """Effect: append one accepted action (or vote) to the request's history."""

    at: datetime
    actor: str
    action: str
    stage: int
    note: str = ""


@dataclass(frozen=True)
class SetDue:
    """Effect: the current stage is due at ``due`` (None: no deadline); reminders key on it."""

    stage: int
    due: datetime | None


@dataclass(frozen=True)
class RecordPublication:
    """Effect: remember the links of the published post (the POAI's evidence)."""

    urls: tuple[str, ...]


Effect = SendMail | RecordHistory | SetDue | RecordPublication


class ProductType(StrEnum):
    """Name the products of the manual's §10: posts, infographics, short videos, photos, art."""

    POST = "post"
    INFOGRAFIA = "infografia"
    VIDEO_CORTO = "video_corto"
    FOTOGRAFIA = "fotografia"
    ILUSTRACION = "ilustracion"

    @property
    def label(self) -> str:
        """Return the manual's Spanish name of the product type."""
        return _PRODUCT_LABELS[self]


_PRODUCT_LABELS = {
    ProductType.POST: "Post",
    ProductType.INFOGRAFIA: "Infografía",
    ProductType.VIDEO_CORTO: "Vídeo corto",
    ProductType.FOTOGRAFIA: "Fotografía",
    ProductType.ILUSTRACION: "Ilustración",
}
