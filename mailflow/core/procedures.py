"""Load ``config/procedures/*.toml`` into immutable :class:`~mailflow.core.model.Procedure` values.

Reading files is the only I/O here (:func:`load_procedures`); :func:`parse_procedure` and
:func:`build_procedures` are pure functions of the parsed TOML so every check is unit-testable.
Every problem is reported, not just the first, as ``"<file>: <key path>: <what is wrong>"``;
``stages[N]`` names the stage whose ``number`` is N.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mailflow.core.model import (
    TERMINAL_STATUSES,
    Action,
    Deadline,
    DeadlineKind,
    Procedure,
    Stage,
    Status,
    Transition,
)
from mailflow.core.people import DYNAMIC_ROLES
from mailflow.errors import ConfigError

__all__ = [
    "Procedure",
    "build_procedures",
    "load_procedures",
    "parse_procedure",
    "procedures_as_json",
    "require_procedures",
]

_PROCEDURE_KEYS = {"id", "name", "order", "started_by", "opening_action", "aliases", "stages"}
_STAGE_KEYS = {
    "number", "name", "responsible", "instrument", "role", "roles", "alternatives",
    "deadline", "actions", "cc", "rechazo_report_to", "notify_requester",
}  # fmt: skip
_TRANSITION_KEYS = {"to", "end", "role", "notify", "cc"}
_DEADLINE_HELP = 'uno de "variable", "cronograma" o { business_days = N }'


class _Problems:
    """Collect problems of one file, each prefixed with the file name."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{self.source}: {path}: {message}")


def _strings(value: object, path: str, problems: _Problems) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    problems.add(path, 'debe ser un texto o una lista de textos, p. ej. ["jefatura_ugs"]')
    return ()


def _roles(value: object, path: str, known: frozenset[str], problems: _Problems) -> tuple[str, ...]:
    roles = _strings(value, path, problems)
    for role in roles:
        if role not in known:
            problems.add(path, f'rol desconocido "{role}"')
    return roles


def _unknown_keys(data: Mapping[str, Any], allowed: set[str], path: str, p: _Problems) -> None:
    for key in sorted(set(data) - allowed):
        p.add(f"{path}{key}", "clave desconocida")


def _deadline(value: object, path: str, problems: _Problems) -> Deadline | None:
    if value is None:
        problems.add(path, f"falta la regla de plazo ({_DEADLINE_HELP})")
        return None
    if value in (DeadlineKind.VARIABLE.value, DeadlineKind.CRONOGRAMA.value):
        return Deadline(DeadlineKind(value))
    if isinstance(value, dict) and set(value) == {"business_days"}:
        days = value["business_days"]
        if isinstance(days, int) and not isinstance(days, bool) and days >= 0:
            return Deadline(DeadlineKind.BUSINESS_DAYS, days)
    problems.add(path, f"regla de plazo no válida {value!r}; se espera {_DEADLINE_HELP}")
    return None


def _transition(
    action: Action, raw: object, path: str, known: frozenset[str], p: _Problems
) -> Transition | None:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"to": raw}
    if not isinstance(raw, dict):
        p.add(path, 'debe ser un número de etapa o una tabla { to = N } / { end = "estado" }')
        return None
    _unknown_keys(raw, _TRANSITION_KEYS, f"{path}.", p)
    to, end = raw.get("to"), raw.get("end")
    if (to is None) == (end is None):
        p.add(path, 'necesita uno solo de "to" (número de etapa) o "end" (estado final)')
        return None
    if to is not None and (not isinstance(to, int) or isinstance(to, bool)):
        p.add(f"{path}.to", f"debe ser un número de etapa, no {to!r}")
        return None
    terminal = sorted(s.value for s in TERMINAL_STATUSES)
    if end is not None and end not in terminal:
        p.add(f"{path}.end", f'"{end}" no es un estado final (uno de {", ".join(terminal)})')
        return None
    role = raw.get("role")
    if role is not None and role not in known:
        p.add(f"{path}.role", f'rol desconocido "{role}"')
    return Transition(
        action=action,
        to=to,
        end=Status(end) if end is not None else None,
        role=role if isinstance(role, str) else None,
        notify=_roles(raw.get("notify", []), f"{path}.notify", known, p),
        cc=_roles(raw.get("cc", []), f"{path}.cc", known, p),
    )


def _transitions(
    raw: object, path: str, known: frozenset[str], p: _Problems
) -> dict[Action, Transition]:
    if not isinstance(raw, dict) or not raw:
        p.add(path, "falta: una etapa debe aceptar al menos una acción")
        return {}
    result: dict[Action, Transition] = {}
    valid = ", ".join(a.value for a in Action if a is not Action.ANULO)
    for name, target in raw.items():
        if name not in {a.value for a in Action}:
            p.add(f"{path}.{name}", f"acción desconocida (una de {valid})")
            continue
        if name == Action.ANULO.value:
            p.add(
                f"{path}.{name}",
                "ANULO anula una solicitud en cualquier etapa; no es una acción de etapa",
            )
            continue
        transition = _transition(Action(name), target, f"{path}.{name}", known, p)
        if transition is not None:
            result[Action(name)] = transition
    return result


def _stage(raw: object, index: int, known: frozenset[str], p: _Problems) -> Stage | None:
    if not isinstance(raw, dict):
        p.add(f"stages[{index}]", "debe ser una tabla ([[stages]])")
        return None
    number = raw.get("number")
    if not isinstance(number, int) or isinstance(number, bool):
        p.add(f"stages[{index}].number", "falta o no es un entero (las etapas se numeran desde 1)")
        return None
    path = f"stages[{number}]"
    _unknown_keys(raw, _STAGE_KEYS, f"{path}.", p)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        p.add(f"{path}.name", "falta (la actividad con las palabras del manual)")
    if ("role" in raw) == ("roles" in raw):
        p.add(path, 'necesita uno solo de "role" o "roles"')
    key = "role" if "role" in raw else "roles"
    roles = _roles(raw.get(key, []), f"{path}.{key}", known, p)
    deadline = _deadline(raw.get("deadline"), f"{path}.deadline", p)
    transitions = _transitions(raw.get("actions"), f"{path}.actions", known, p)
    notify = raw.get("notify_requester", False)
    if not isinstance(notify, bool):
        p.add(f"{path}.notify_requester", f"debe ser true o false, no {notify!r}")
    if not roles or deadline is None:
        return None
    return Stage(
        number=number,
        name=str(name or ""),
        roles=roles,
        deadline=deadline,
        transitions=transitions,
        responsible=str(raw.get("responsible", "")),
        instrument=str(raw.get("instrument", "")),
        alternatives=bool(raw.get("alternatives", False)),
        cc=_roles(raw.get("cc", []), f"{path}.cc", known, p),
        rechazo_report_to=_roles(
            raw.get("rechazo_report_to", []), f"{path}.rechazo_report_to", known, p
        ),
        notify_requester=notify is True,
    )


def _check_graph(stages: Mapping[int, Stage], opening: Action, p: _Problems) -> None:
    """Check targets exist, role choices fit, every stage is reachable and can finish."""
    numbers = sorted(stages)
    if numbers and numbers != list(range(1, len(numbers) + 1)):
        p.add("stages", f"los números deben ir de 1 a {len(numbers)} sin huecos; hay {numbers}")
    for stage in stages.values():
        for action, t in stage.transitions.items():
            path = f"stages[{stage.number}].actions.{action.value}"
            target = stages.get(t.to) if t.to is not None else None
            if t.to is not None and target is None:
                p.add(path, f"lleva a la etapa {t.to}, que no existe")
            elif target is not None and target.alternatives and t.role not in target.roles:
                choices = ", ".join(target.roles)
                p.add(
                    path, f"debe decir qué rol de la etapa {t.to} actúa (role = uno de {choices})"
                )
            elif target is not None and not target.alternatives and t.role is not None:
                p.add(f"{path}.role", f"la etapa {t.to} no tiene roles alternativos que elegir")
            elif t.to is None and t.role is not None:
                p.add(f"{path}.role", "una transición que termina la solicitud no elige rol")
    if 1 in stages and opening not in stages[1].transitions:
        p.add("opening_action", f"la etapa 1 no acepta {opening.value}, la acción de apertura")
    _check_reachability(stages, p)


def _check_reachability(stages: Mapping[int, Stage], p: _Problems) -> None:
    edges = {
        n: {t.to for t in s.transitions.values() if t.to is not None and t.to in stages}
        for n, s in stages.items()
    }
    reached: set[int] = set()
    todo = [1] if 1 in stages else []
    while todo:
        n = todo.pop()
        if n not in reached:
            reached.add(n)
            todo.extend(edges[n])
    for n in sorted(set(stages) - reached):
        p.add(f"stages[{n}]", "no se llega a ella desde la etapa 1")
    finishing = {n for n, s in stages.items() if any(t.end for t in s.transitions.values())}
    changed = True
    while changed:
        before = len(finishing)
        finishing |= {n for n, targets in edges.items() if targets & finishing}
        changed = len(finishing) != before
    for n in sorted(set(stages) - finishing):
        p.add(f"stages[{n}]", "ninguna secuencia de acciones desde aquí termina la solicitud")


def _stages(raw_stages: object, known: frozenset[str], p: _Problems) -> dict[int, Stage]:
    if not isinstance(raw_stages, list) or not raw_stages:
        p.add("stages", "falta: al menos una tabla [[stages]]")
        return {}
    stages: dict[int, Stage] = {}
    for index, raw in enumerate(raw_stages):
        stage = _stage(raw, index, known, p)
        if stage is not None and stage.number in stages:
            p.add(f"stages[{stage.number}]", "número repetido")
        elif stage is not None:
            stages[stage.number] = stage
    return stages


def parse_procedure(
    data: Mapping[str, Any], source: str, role_ids: Iterable[str]
) -> tuple[Procedure | None, list[str]]:
    """Turn one parsed TOML document into a Procedure, or None and every problem found."""
    p = _Problems(source)
    known = frozenset(role_ids) | DYNAMIC_ROLES
    _unknown_keys(data, _PROCEDURE_KEYS, "", p)
    pid, name = data.get("id"), data.get("name")
    if not isinstance(pid, str) or not pid:
        p.add("id", 'falta (el id del procedimiento, p. ej. "promocion")')
    if not isinstance(name, str) or not name:
        p.add("name", "falta (el nombre del procedimiento en el manual)")
    started_by = _roles(data.get("started_by", []), "started_by", known, p)
    if not started_by:
        p.add("started_by", "falta: quién puede iniciar este procedimiento (ids de rol)")
    opening = data.get("opening_action", Action.ENTREGO.value)
    if opening not in {a.value for a in Action}:
        p.add("opening_action", f'acción desconocida "{opening}"')
        opening = Action.ENTREGO.value
    stages = _stages(data.get("stages"), known, p)
    _check_graph(stages, Action(opening), p)
    aliases = _strings(data.get("aliases", []), "aliases", p)
    order = data.get("order", 100)
    if not isinstance(order, int) or isinstance(order, bool):
        p.add("order", f"debe ser un entero, no {order!r}")
    if p.items:
        return None, p.items
    procedure = Procedure(
        id=str(pid),
        name=str(name),
        started_by=started_by,
        stages=dict(sorted(stages.items())),
        opening_action=Action(opening),
        aliases=aliases,
        order=int(order),
        source=source,
    )
    return procedure, p.items


def build_procedures(
    documents: Mapping[str, Mapping[str, Any]], role_ids: Iterable[str]
) -> tuple[dict[str, Procedure], list[str]]:
    """Parse several documents (source name -> TOML dict); report duplicate ids too."""
    roles = frozenset(role_ids)
    procedures: dict[str, Procedure] = {}
    problems: list[str] = []
    for source, data in documents.items():
        procedure, found = parse_procedure(data, source, roles)
        problems.extend(found)
        if procedure is None:
            continue
        if procedure.id in procedures:
            other = procedures[procedure.id].source
            problems.append(f'{source}: id: "{procedure.id}" ya está definido en {other}')
            continue
        procedures[procedure.id] = procedure
    # The manual's order (order = N in each file), not the file names' alphabetical one.
    ordered = sorted(procedures.values(), key=lambda proc: (proc.order, proc.id))
    return {proc.id: proc for proc in ordered}, problems


def load_procedures(
    directory: Path, role_ids: Iterable[str]
) -> tuple[dict[str, Procedure], list[str]]:
    """Read every ``*.toml`` of ``directory``; return the valid procedures and all problems."""
    files = sorted(Path(directory).glob("*.toml"))
    if not files:
        return {}, [f"{directory}: no hay archivos de procedimientos (*.toml)"]
    documents: dict[str, Mapping[str, Any]] = {}
    problems: list[str] = []
    for path in files:
        try:
            documents[path.name] = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            problems.append(f"{path.name}: no se puede leer: {exc}")
    procedures, found = build_procedures(documents, role_ids)
    return procedures, problems + found


def require_procedures(directory: Path, role_ids: Iterable[str]) -> dict[str, Procedure]:
    """Load the procedures, or raise ConfigError listing every problem."""
    procedures, problems = load_procedures(directory, role_ids)
    if problems:
        raise ConfigError(str(directory), problems)
    return procedures


def _target(transition: Transition) -> dict[str, Any]:
    if transition.end is not None:
        return {"end": transition.end.value}
    target: dict[str, Any] = {"stage": transition.to}
    if transition.role:
        target["role"] = transition.role
    return target


def procedures_as_json(procedures: Mapping[str, Procedure]) -> list[dict[str, Any]]:
    """Return the docs/design.md §7 shape of ``mailflow procedures --json``."""
    result: list[dict[str, Any]] = []
    for procedure in procedures.values():
        stages: list[dict[str, Any]] = []
        for stage in procedure.stages.values():
            item: dict[str, Any] = {"number": stage.number, "name": stage.name}
            item["role"] = stage.roles[0]
            if len(stage.roles) > 1:
                item["roles"] = list(stage.roles)
            item["actions"] = [a.value for a in stage.actions]
            item["leads_to"] = {a.value: _target(t) for a, t in stage.transitions.items()}
            item["deadline"] = stage.deadline.describe()
            item["notify_requester"] = stage.notify_requester
            stages.append(item)
        result.append(
            {
                "id": procedure.id,
                "name": procedure.name,
                "started_by": list(procedure.started_by),
                "stages": stages,
            }
        )
    return result
