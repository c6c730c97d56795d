"""Map the milestones of a proposal's cronograma onto the stages they set due dates for."""

from __future__ import annotations

from datetime import date

from mailflow.core.model import Cronograma, DeadlineKind, Procedure
from mailflow.mail.intake import Milestone
from mailflow.mail.replytext import fold

_PUBLISHER = "administrador_rrss"


def plan(procedure: Procedure, current: int, milestones: tuple[Milestone, ...]) -> Cronograma:
    """Return (stage, date) pairs for the cronograma stages after ``current``.

    A milestone that names a stage ("etapa 6") sets that one; "publicación" sets the
    administrator's stage; any other label ("material", "diseño") sets the first later
    cronograma stage that does not publish. A stage left without a date takes the date of
    the next dated stage after it, so nothing is due later than what follows it.
    """
    later = [
        s.number
        for s in sorted(procedure.stages.values(), key=lambda s: s.number)
        if s.number > current and s.deadline.kind is DeadlineKind.CRONOGRAMA
    ]
    if not later or not milestones:
        return ()
    publish = [n for n in later if _PUBLISHER in procedure.stages[n].roles]
    work = [n for n in later if n not in publish]
    dated: dict[int, date] = {}
    for milestone in milestones:
        if milestone.stage is not None and milestone.stage in later:
            dated[milestone.stage] = milestone.due
        elif "public" in fold(milestone.label) and publish:
            dated.setdefault(publish[0], milestone.due)
        elif work:
            dated.setdefault(work[0], milestone.due)
    following: date | None = None
    for number in reversed(later):
        if number in dated:
            following = dated[number]
        elif following is not None:
            dated[number] = following
    return tuple(sorted(dated.items()))
