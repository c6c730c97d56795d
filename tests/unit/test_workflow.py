"""The engine against the manual: every transition, every illegal pair, votes, properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailflow.core.calendar import BusinessCalendar
from mailflow.core.model import (
    Action,
    ActionTaken,
    Effect,
    Procedure,
    Quorum,
    RecordHistory,
    RecordPublication,
    RequestOpened,
    RequestState,
    SendMail,
    SetDue,
    Status,
    Vote,
)
from mailflow.core.people import Directory, Role, Substitute, Unit, may_act
from mailflow.core.procedures import require_procedures
from mailflow.core.workflow import (
    IllegalActionError,
    MissingReasonError,
    RequestClosedError,
    UnauthorizedError,
    UnknownProcedureError,
    Workflow,
    WorkflowError,
    decide,
)

LA_PAZ = ZoneInfo("America/La_Paz")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=LA_PAZ)  # a Monday
SHIPPED = Path(__file__).resolve().parents[2] / "config" / "procedures"

DE, UGS, PRO, DIS, ADM = "de@x.bo", "ugs@x.bo", "pro@x.bo", "dis@x.bo", "adm@x.bo"
C1, C2, C3 = "c1@x.bo", "c2@x.bo", "c3@x.bo"
ANA, JUTI, SUPLENTE, OUTSIDER = "ana@x.bo", "jefe.uti@x.bo", "sup@x.bo", "intruso@y.bo"
LEAVE = Substitute(SUPLENTE, date(2026, 3, 9), date(2026, 3, 13), replaces=UGS)


def directory(quorum: Quorum = Quorum.MAJORITY) -> Directory:
    roles = {
        "direccion_ejecutiva": Role("direccion_ejecutiva", members=(DE,)),
        "jefatura_ugs": Role("jefatura_ugs", members=(UGS,), substitutes=(LEAVE,)),
        "profesional_promocion": Role("profesional_promocion", members=(PRO,)),
        "equipo_diseno": Role("equipo_diseno", members=(DIS,)),
        "administrador_rrss": Role("administrador_rrss", members=(ADM,)),
        "comite_rrss": Role("comite_rrss", members=(C1, C2, C3), quorum=quorum),
    }
    units = {
        "uti": Unit("uti", "Unidad de TI", head=JUTI, members=(ANA,)),
        "ugs": Unit("ugs", "UGS", head=UGS, members=(PRO, DIS, ADM)),
    }
    return Directory(roles=roles, units=units)


PROCEDURES = require_procedures(SHIPPED, directory().roles)
CAL = BusinessCalendar()
WF = Workflow(PROCEDURES, directory(), CAL, cronograma_default_days=5)
ROLE_HOLDER = {
    "direccion_ejecutiva": DE, "jefatura_ugs": UGS, "profesional_promocion": PRO,
    "equipo_diseno": DIS, "administrador_rrss": ADM, "comite_rrss": C1,
    "solicitante": ANA, "jefatura_solicitante": JUTI,
}  # fmt: skip
A = Action
R, P, E = Status.RECHAZADO, Status.PUBLICADO, Status.ELIMINADO
JSOL, COM = "jefatura_solicitante", "comite_rrss"

# From the manual's §12 tables (and the documented readings in each TOML's header):
# stage -> action -> next stage, (next stage, chosen role) or final status.
EXPECTED: dict[str, dict[int, dict[Action, Any]]] = {
    "promocion": {
        1: {A.ENTREGO: 2},
        2: {A.DERIVO: 3},
        3: {A.ENTREGO: 4},
        4: {A.APRUEBO: (5, JSOL), A.APRUEBO_COMITE: (5, COM), A.OBSERVO: 3},
        5: {A.APRUEBO: 6, A.OBSERVO: 3, A.RECHAZO: R},
        6: {A.ENTREGO: 7},
        7: {A.DERIVO: 8},
        8: {A.PUBLICADO: P},
    },
    "imagenes_diseno": {
        1: {A.ENTREGO: 2},
        2: {A.APRUEBO: 3, A.OBSERVO: 1},
        3: {A.APRUEBO: 4, A.RECHAZO: R},
        4: {A.ENTREGO: 5},
        5: {A.APRUEBO: (6, JSOL), A.APRUEBO_COMITE: (6, COM), A.OBSERVO: 4},
        6: {A.APRUEBO: 7, A.OBSERVO: 4, A.RECHAZO: R},
        7: {A.PUBLICADO: P},
    },
    "informacion_especifica": {
        1: {A.ENTREGO: 2},
        2: {A.APRUEBO: 3, A.DERIVO: 3, A.RECHAZO: R},
        3: {A.DERIVO: 4},
        4: {A.ENTREGO: 5},
        5: {A.APRUEBO: 6, A.OBSERVO: 4},
        6: {A.ENTREGO: 7},
        7: {A.APRUEBO: 8, A.ENTREGO: 8, A.OBSERVO: 6},
        8: {A.DERIVO: 9},
        9: {A.PUBLICADO: P},
    },
    "directa": {1: {A.PUBLICADO: P}},
    "eliminacion": {1: {A.ENTREGO: 2}, 2: {A.ELIMINADO: E}},
}
TRANSITIONS = [
    (pid, stage, action, target)
    for pid, stages in EXPECTED.items()
    for stage, actions in stages.items()
    for action, target in actions.items()
]
ILLEGAL = [
    (pid, stage, action)
    for pid, stages in EXPECTED.items()
    for stage, actions in stages.items()
    for action in Action
    if action not in actions
]


def state_at(pid: str, stage: int, roles: tuple[str, ...] | None = None) -> RequestState:
    """Return a request of ``ana@x.bo`` (unit uti) waiting at ``stage``."""
    definition = PROCEDURES[pid].stages[stage]
    chosen = roles or (definition.roles[:1] if definition.alternatives else definition.roles)
    return RequestState(pid, stage, chosen, requester=ANA, unit="uti", entered_at=NOW)


def act(state: RequestState, actor: str, action: Action, text: str = "") -> Any:
    text = text or ("motivo" if action.needs_reason else "")
    return WF.advance(state, ActionTaken(actor, action, text), NOW)


def mails(effects: Any, template: str | None = None) -> list[SendMail]:
    return [e for e in effects if isinstance(e, SendMail) and template in (None, e.template)]


def test_tables_cover_every_shipped_stage() -> None:
    for pid, procedure in PROCEDURES.items():
        assert set(EXPECTED[pid]) == set(procedure.stages)
        for number, stage in procedure.stages.items():
            assert set(stage.actions) == set(EXPECTED[pid][number]), (pid, number)


@pytest.mark.parametrize(("pid", "stage", "action", "target"), TRANSITIONS)
def test_every_transition(pid: str, stage: int, action: Action, target: Any) -> None:
    state = state_at(pid, stage)
    new, effects = act(state, ROLE_HOLDER[state.roles[0]], action)
    history = [e for e in effects if isinstance(e, RecordHistory)]
    assert [(h.action, h.stage) for h in history] == [(action.value, stage)]
    if isinstance(target, Status):
        assert (new.status, new.stage, new.due) == (target, stage, None)
        return
    number, role = target if isinstance(target, tuple) else (target, None)
    expected_roles = (role,) if role else PROCEDURES[pid].stages[number].roles
    assert (new.status, new.stage, new.roles) == (Status.EN_CURSO, number, expected_roles)
    assert SetDue(number, new.due) in effects
    template = "observations_returned" if action is A.OBSERVO else "action_needed"
    [needed] = mails(effects, template)
    assert needed.stage == number
    assert needed.to


@pytest.mark.parametrize(("pid", "stage", "action"), ILLEGAL)
def test_every_illegal_pair_raises_and_changes_nothing(
    pid: str, stage: int, action: Action
) -> None:
    state = state_at(pid, stage)
    before = replace(state)
    with pytest.raises(IllegalActionError) as caught:
        act(state, ROLE_HOLDER[state.roles[0]], action)
    assert caught.value.stage == stage
    assert state == before


def test_open_promocion_acknowledges_and_asks_jefatura() -> None:
    state, effects = WF.advance(None, RequestOpened("promocion", DE, "uti", "Campaña"), NOW)
    assert (state.stage, state.roles, state.status) == (2, ("jefatura_ugs",), Status.EN_CURSO)
    assert state.due == datetime(2026, 3, 3, 16, 30, tzinfo=LA_PAZ)
    assert mails(effects, "acknowledgement")[0].to == (DE,)
    assert mails(effects, "action_needed")[0].to == (UGS,)
    assert not mails(effects, "action_recorded")
    assert RecordHistory(NOW, DE, "ENTREGO", 1, "Campaña") in effects


@pytest.mark.parametrize(
    ("pid", "starter"),
    [("promocion", UGS), ("imagenes_diseno", PRO), ("informacion_especifica", ANA),
     ("informacion_especifica", JUTI), ("eliminacion", DE)],
)  # fmt: skip
def test_who_may_start(pid: str, starter: str) -> None:
    state, _ = WF.start(RequestOpened(pid, starter, "uti"), NOW)
    assert state.stage == 2


@pytest.mark.parametrize(
    ("pid", "starter"),
    [("promocion", PRO), ("imagenes_diseno", DE), ("informacion_especifica", OUTSIDER),
     ("directa", ANA), ("eliminacion", ADM)],
)  # fmt: skip
def test_who_may_not_start(pid: str, starter: str) -> None:
    with pytest.raises(UnauthorizedError):
        WF.start(RequestOpened(pid, starter, "uti"), NOW)


def test_directa_opens_and_publishes_at_once() -> None:
    urls = ("https://facebook.com/adsib/posts/1",)
    state, effects = WF.start(RequestOpened("directa", ADM, None, "Foto", urls=urls), NOW)
    assert (state.status, state.stage, state.due) == (Status.PUBLICADO, 1, None)
    assert RecordPublication(urls) in effects
    assert mails(effects, "published")[0].to == (ADM,)


def test_eliminacion_ends_eliminado() -> None:
    state, effects = WF.start(RequestOpened("eliminacion", DE, None, "Borrar post"), NOW)
    assert mails(effects, "action_needed")[0].to == (ADM,)
    new, effects = act(state, ADM, A.ELIMINADO)
    assert new.status is Status.ELIMINADO
    notice, confirmation = mails(effects, "action_recorded")
    assert confirmation.to == (ADM,)
    assert (notice.to, notice.cc) == ((DE,), (UGS,))


def test_full_promocion_through_the_comite() -> None:
    state, _ = WF.start(RequestOpened("promocion", DE, "uti"), NOW)
    state, _ = act(state, UGS, A.DERIVO)
    state, _ = act(state, PRO, A.ENTREGO)
    state, _ = act(state, UGS, A.APRUEBO_COMITE)
    assert state.roles == (COM,)
    state, effects = act(state, C1, A.APRUEBO)
    assert (state.stage, len(state.votes)) == (5, 1)
    assert [m.template for m in mails(effects)] == ["action_recorded"]
    state, _ = act(state, C2, A.APRUEBO)
    assert (state.stage, state.votes) == (6, ())
    state, effects = act(state, DIS, A.ENTREGO)
    assert mails(effects, "action_needed")[0].cc == (DE,)
    state, _ = act(state, UGS, A.DERIVO)
    state, effects = WF.advance(state, ActionTaken(ADM, A.PUBLICADO, urls=("https://x/1",)), NOW)
    assert state.status is Status.PUBLICADO
    [published] = mails(effects, "published")
    assert (published.to, published.cc) == ((DE,), (UGS,))
    assert mails(effects, "action_recorded")[0].to == (ADM,)


def test_jefatura_solicitante_route_excludes_the_comite() -> None:
    state = state_at("promocion", 5, (JSOL,))
    with pytest.raises(UnauthorizedError) as caught:
        act(state, C1, A.APRUEBO)
    assert caught.value.notify == (JUTI,)
    assert act(state, JUTI, A.APRUEBO)[0].stage == 6


def test_comite_route_excludes_the_unit_head() -> None:
    with pytest.raises(UnauthorizedError):
        act(state_at("imagenes_diseno", 6, (COM,)), JUTI, A.APRUEBO)


def comite_votes(quorum: Quorum, *votes: tuple[str, Action]) -> Any:
    wf = replace(WF, directory=directory(quorum))
    state = state_at("promocion", 5, (COM,))
    effects: tuple[Effect, ...] = ()
    for actor, action in votes:
        text = f"{actor} dice" if action.needs_reason else ""
        state, effects = wf.advance(state, ActionTaken(actor, action, text), NOW)
    return state, effects


def test_comite_rechazo_is_reported_to_jefatura_ugs() -> None:
    state, effects = comite_votes(Quorum.MAJORITY, (C1, A.RECHAZO))
    assert (state.stage, state.status) == (5, Status.EN_CURSO)
    [report] = [m for m in mails(effects) if m.to == (UGS,)]
    assert report.context["event"] == "rechazo_comite"
    assert report.context["text"] == "c1@x.bo dice"


def test_comite_majority_rejects() -> None:
    state, effects = comite_votes(Quorum.MAJORITY, (C1, A.RECHAZO), (C2, A.RECHAZO))
    assert state.status is Status.RECHAZADO
    [rejected] = mails(effects, "rejected")
    assert rejected.to == (ANA,)
    assert "c1@x.bo dice" in rejected.context["text"]
    assert "c2@x.bo dice" in rejected.context["text"]


def test_comite_split_returns_observations() -> None:
    state, effects = comite_votes(
        Quorum.MAJORITY, (C1, A.APRUEBO), (C2, A.OBSERVO), (C3, A.RECHAZO)
    )
    assert (state.stage, state.status) == (3, Status.EN_CURSO)
    assert mails(effects, "observations_returned")[0].to == (PRO,)


def test_comite_member_may_change_vote() -> None:
    state, _ = comite_votes(Quorum.MAJORITY, (C1, A.APRUEBO), (C1, A.OBSERVO))
    assert state.votes == (Vote(C1, A.OBSERVO, "c1@x.bo dice"),)


def test_comite_quorum_any_and_all() -> None:
    assert comite_votes(Quorum.ANY, (C3, A.APRUEBO))[0].stage == 6
    state, _ = comite_votes(Quorum.ALL, (C1, A.APRUEBO), (C2, A.APRUEBO))
    assert state.stage == 5
    assert comite_votes(Quorum.ALL, (C1, A.APRUEBO), (C2, A.OBSERVO))[0].stage == 3
    all_yes = comite_votes(Quorum.ALL, (C1, A.APRUEBO), (C2, A.APRUEBO), (C3, A.APRUEBO))
    assert all_yes[0].stage == 6


@pytest.mark.parametrize(
    ("votes", "seats", "quorum", "expected"),
    [
        ((), 3, Quorum.MAJORITY, None),
        ((A.APRUEBO,), 3, Quorum.MAJORITY, None),
        ((A.APRUEBO, A.APRUEBO), 3, Quorum.MAJORITY, A.APRUEBO),
        ((A.RECHAZO, A.OBSERVO), 3, Quorum.MAJORITY, A.OBSERVO),
        ((A.RECHAZO, A.RECHAZO), 4, Quorum.MAJORITY, A.OBSERVO),
        ((A.RECHAZO,), 4, Quorum.MAJORITY, None),
        ((A.RECHAZO, A.RECHAZO, A.RECHAZO), 4, Quorum.MAJORITY, A.RECHAZO),
        ((A.OBSERVO,), 1, Quorum.ALL, A.OBSERVO),
        ((A.RECHAZO,), 5, Quorum.ANY, A.RECHAZO),
        ((A.APRUEBO,), 0, Quorum.ALL, A.APRUEBO),
    ],
)
def test_decide(
    votes: tuple[Action, ...], seats: int, quorum: Quorum, expected: Action | None
) -> None:
    accepted = (A.APRUEBO, A.OBSERVO, A.RECHAZO)
    ballots = [Vote(f"v{i}@x.bo", a) for i, a in enumerate(votes)]
    assert decide(ballots, seats, quorum, accepted) == expected


def test_decide_falls_back_to_rechazo_without_observo() -> None:
    ballots = [Vote("a@x.bo", A.RECHAZO), Vote("b@x.bo", A.RECHAZO)]
    assert decide(ballots, 3, Quorum.ALL, (A.APRUEBO, A.RECHAZO)) == A.RECHAZO


def test_multi_role_stage_completes_on_either_role() -> None:
    for actor in (PRO, DIS):
        assert act(state_at("informacion_especifica", 6), actor, A.ENTREGO)[0].stage == 7


def test_unauthorized_notifies_holders_not_sender() -> None:
    state = state_at("promocion", 2)
    with pytest.raises(UnauthorizedError) as caught:
        act(state, OUTSIDER, A.DERIVO)
    assert caught.value.notify == (UGS,)
    assert caught.value.template == "unauthorized"
    assert OUTSIDER in caught.value.reason


def test_substitute_acts_during_leave_only() -> None:
    state = state_at("promocion", 2)
    on_leave = datetime(2026, 3, 10, 10, 0, tzinfo=LA_PAZ)
    assert WF.advance(state, ActionTaken(SUPLENTE, A.DERIVO), on_leave)[0].stage == 3
    with pytest.raises(UnauthorizedError):
        WF.advance(state, ActionTaken(UGS, A.DERIVO), on_leave)
    with pytest.raises(UnauthorizedError):
        WF.advance(state, ActionTaken(SUPLENTE, A.DERIVO), NOW)


@pytest.mark.parametrize("action", [A.RECHAZO, A.OBSERVO])
def test_reason_is_required(action: Action) -> None:
    with pytest.raises(MissingReasonError):
        WF.advance(state_at("promocion", 5), ActionTaken(JUTI, action, "  "), NOW)


def test_rejection_tells_requester_why() -> None:
    _, effects = act(state_at("imagenes_diseno", 3), DE, A.RECHAZO, "Fuera de plan")
    [rejected] = mails(effects, "rejected")
    assert (rejected.to, rejected.cc) == ((ANA,), (UGS,))
    assert rejected.context["text"] == "Fuera de plan"
    assert mails(effects, "action_recorded")[0].to == (DE,)


def test_closed_request_accepts_nothing() -> None:
    closed = replace(state_at("promocion", 8), status=Status.PUBLICADO)
    with pytest.raises(RequestClosedError):
        act(closed, ADM, A.PUBLICADO)


def test_cronograma_sets_due_dates() -> None:
    state = state_at("promocion", 2)
    new, _ = act(state, UGS, A.DERIVO)
    # No cronograma yet: the configured default of 5 business days.
    assert new.due == datetime(2026, 3, 9, 16, 30, tzinfo=LA_PAZ)
    plan = ((6, date(2026, 3, 20)), (8, date(2026, 3, 27)))
    new, _ = WF.advance(new, ActionTaken(PRO, A.ENTREGO, cronograma=plan), NOW)
    assert new.cronograma == plan
    new, _ = act(replace(new, stage=5, roles=(JSOL,)), JUTI, A.APRUEBO)
    assert new.due == datetime(2026, 3, 20, 16, 30, tzinfo=LA_PAZ)


def test_due_on_business_day_rule() -> None:
    friday_late = datetime(2026, 12, 24, 17, 0, tzinfo=LA_PAZ)
    new, _ = WF.advance(state_at("promocion", 1), ActionTaken(DE, A.ENTREGO), friday_late)
    assert new.due is not None
    assert new.due.isoformat() == "2026-12-29T16:30:00-04:00"


def test_cancel() -> None:
    state = state_at("informacion_especifica", 4)
    new, effects = WF.cancel(state, ANA, "Ya no se necesita", NOW)
    assert new.status is Status.CANCELADO
    assert SetDue(4, None) in effects
    with pytest.raises(UnauthorizedError):
        WF.cancel(state, PRO, "no", NOW)
    with pytest.raises(RequestClosedError):
        WF.cancel(new, ANA, "otra vez", NOW)


def test_dispatch_errors() -> None:
    state = state_at("promocion", 2)
    with pytest.raises(WorkflowError, match="opened only once"):
        WF.advance(state, RequestOpened("promocion", DE), NOW)
    with pytest.raises(WorkflowError, match="open request"):
        WF.advance(None, ActionTaken(UGS, A.DERIVO), NOW)
    with pytest.raises(UnknownProcedureError):
        WF.advance(None, RequestOpened("otro", DE), NOW)
    with pytest.raises(ValueError, match="naive"):
        WF.advance(state, ActionTaken(UGS, A.DERIVO), datetime(2026, 3, 2, 10))


def test_assignees_of_current_stage() -> None:
    assert WF.assignees(state_at("promocion", 6), NOW) == (PRO, DIS)


# Property tests: random actors and actions, biased towards the stage's own holders and
# actions so that sequences get deep into the procedures.
POOL = [DE, UGS, PRO, DIS, ADM, C1, C2, C3, ANA, JUTI, SUPLENTE, OUTSIDER]
STARTER = {"promocion": DE, "imagenes_diseno": PRO, "informacion_especifica": ANA,
           "directa": ADM, "eliminacion": DE}  # fmt: skip


def check_step(
    procedure: Procedure, before: RequestState, after: RequestState, actions: tuple[Action, ...]
) -> None:
    """Assert one accepted step followed one of ``actions``' rows of the transition table."""
    rows = [procedure.stages[before.stage].transitions[a] for a in actions]
    assert after.stage in procedure.stages
    assert set(after.roles) <= set(procedure.stages[after.stage].roles)
    if after.status is not Status.EN_CURSO:
        assert after.status in {t.end for t in rows}
        assert after.stage == before.stage
    elif after.stage == before.stage and after.votes:
        assert after.roles == before.roles  # a vote was recorded, nothing decided yet
    else:
        assert (after.stage, after.roles) in {
            (t.to, (t.role,) if t.role else procedure.stages[after.stage].roles) for t in rows
        }


@settings(max_examples=300, deadline=None)
@given(pid=st.sampled_from(list(EXPECTED)), quorum=st.sampled_from(list(Quorum)), data=st.data())
def test_random_sequences_stay_in_the_graph(pid: str, quorum: Quorum, data: st.DataObject) -> None:
    wf = replace(WF, directory=directory(quorum))
    procedure = PROCEDURES[pid]
    now = NOW
    state, _ = wf.start(RequestOpened(pid, STARTER[pid], "uti"), now)
    for _ in range(data.draw(st.integers(0, 40))):
        now += timedelta(hours=data.draw(st.integers(0, 60)))
        stage = procedure.stages[state.stage]
        action = data.draw(st.sampled_from(stage.actions) | st.sampled_from(list(Action)))
        holders = wf.assignees(state, now)
        actor = data.draw(st.sampled_from(holders) | st.sampled_from(POOL))
        text = data.draw(st.sampled_from(["", "motivo"]))
        decision = may_act(wf.directory, actor, state.roles, state, now.date())
        before = replace(state)
        try:
            state, _ = wf.advance(state, ActionTaken(actor, action, text), now)
        except WorkflowError:
            assert state == before
            continue
        assert decision.allowed, "advanced on an unauthorized actor"
        assert before.status is Status.EN_CURSO
        assert action in stage.actions
        # A collegiate role's vote may decide another of the stage's actions (the quorum's).
        voting = wf.directory.roles.get(decision.role or "", Role("")).quorum is not None
        check_step(procedure, before, state, stage.actions if voting else (action,))


@settings(max_examples=100, deadline=None)
@given(
    pid=st.sampled_from(list(EXPECTED)),
    status=st.sampled_from([s for s in Status if s is not Status.EN_CURSO]),
    actor=st.sampled_from(POOL),
    action=st.sampled_from(list(Action)),
)
def test_closed_requests_never_move(pid: str, status: Status, actor: str, action: Action) -> None:
    state = replace(state_at(pid, 1), status=status)
    with pytest.raises(WorkflowError):
        WF.advance(state, ActionTaken(actor, action, "motivo"), NOW)


# -- the people around a stage: other holders, the requester, withdrawal --------------------


def test_other_holders_of_a_stage_are_told_it_is_done() -> None:
    """Stage 6 (professional + design team): the designer delivers, the professional hears."""
    _, effects = act(state_at("informacion_especifica", 6), DIS, A.ENTREGO)
    [done] = mails(effects, "stage_done")
    assert done.to == (PRO,)
    assert done.stage == 6  # signed for the stage they held: a late answer is about it
    assert done.context["actor"] == DIS
    # Nobody gets it twice: the requester and unit head got the stage-7 mail instead.
    _, effects = act(state_at("informacion_especifica", 5), ANA, A.APRUEBO)
    [done] = mails(effects, "stage_done")
    assert done.to == (JUTI,)


def test_a_single_holder_stage_tells_nobody_else() -> None:
    _, effects = act(state_at("informacion_especifica", 3), UGS, A.DERIVO)
    assert mails(effects, "stage_done") == []


def test_a_stage_marked_notify_requester_tells_the_requester() -> None:
    _, effects = act(state_at("informacion_especifica", 2), DE, A.APRUEBO)
    [progress] = mails(effects, "progress")
    assert progress.to == (ANA,)
    assert progress.context["stage"] == "2"
    # Unmarked: nothing. Marked but the step mails the requester anyway: nothing more.
    _, effects = act(state_at("informacion_especifica", 3), UGS, A.DERIVO)
    assert mails(effects, "progress") == []
    _, effects = act(state_at("informacion_especifica", 6), PRO, A.ENTREGO)
    assert mails(effects, "progress") == []
    assert ANA in mails(effects, "action_needed")[0].to


def test_the_acknowledgement_carries_its_promises() -> None:
    _, effects = WF.start(RequestOpened("informacion_especifica", ANA, "uti"), NOW)
    [ack] = mails(effects, "acknowledgement")
    assert "etapa 5" in ack.context["promised"]
    assert ack.context["may_withdraw"] == "1"
    # A direct post ends at once: nothing to promise.
    _, effects = WF.start(RequestOpened("directa", ADM), NOW)
    assert "promised" not in mails(effects, "acknowledgement")[0].context


def test_withdrawal_tells_the_requester_the_withdrawer_and_the_holders() -> None:
    state = state_at("informacion_especifica", 3)
    new, effects = WF.cancel(state, DE, "Ya no corresponde", NOW)
    assert new.status is Status.CANCELADO
    assert new.due is None
    [mail] = mails(effects, "cancelled")
    assert mail.to == (DE, ANA)
    assert mail.cc == (UGS,)
    assert RecordHistory(NOW, DE, "CANCELADO", 3, "Ya no corresponde") in effects
    with pytest.raises(UnauthorizedError):
        WF.cancel(state, UGS, "no", NOW)  # the jefatura UGS is not among the withdrawers


def test_the_operator_withdraws_without_a_role() -> None:
    new, effects = WF.cancel(state_at("promocion", 4), "operador", "duplicada", NOW, operator=True)
    assert new.status is Status.CANCELADO
    [mail] = mails(effects, "cancelled")
    assert mail.to == (ANA,)
