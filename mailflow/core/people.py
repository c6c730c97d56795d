"""Resolve roles to people on a given date, and decide who may act on a stage.

Pure functions over a :class:`Directory` built from ``[roles]`` and ``[units]``. Addresses
are compared case-insensitively and returned as configured.

Resolution of one role on one date:

1. base holders: ``members`` for ordinary roles; the request's sender for ``solicitante``;
   the head of the request's unit for ``jefatura_solicitante``; heads and members of every
   unit for ``miembro_unidad`` (used by ``started_by`` of procedures any unit may start);
2. substitutes active on that date (inclusive range) are added, and the person each one
   ``replaces`` is removed for that range (someone on leave);
3. if nobody is left the role is vacant ("acéfalo") and falls to its ``superior``,
   recursively.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from mailflow.core.model import Quorum

SOLICITANTE = "solicitante"
JEFATURA_SOLICITANTE = "jefatura_solicitante"
MIEMBRO_UNIDAD = "miembro_unidad"
# Roles whose holders depend on the request, not on configured members.
DYNAMIC_ROLES = frozenset({SOLICITANTE, JEFATURA_SOLICITANTE, MIEMBRO_UNIDAD})


class RequestParties(Protocol):
    """Describe what role resolution needs from a request: its sender and unit."""

    @property
    def requester(self) -> str:
        """Return the address that sent the request."""
        ...

    @property
    def unit(self) -> str | None:
        """Return the id of the unit the request is made for, if known."""
        ...


@dataclass(frozen=True)
class NoRequest:
    """The request parties of a mail about no request (the digest, a failure report)."""

    requester: str = ""
    unit: str | None = None


NO_REQUEST = NoRequest()


@dataclass(frozen=True)
class Substitute:
    """Give ``address`` a role from ``start`` to ``end`` (inclusive), replacing someone or not."""

    address: str
    start: date
    end: date
    replaces: str | None = None

    def active(self, on_date: date) -> bool:
        """Tell whether the substitution holds on ``on_date``."""
        return self.start <= on_date <= self.end


@dataclass(frozen=True)
class Role:
    """Describe one role: its holders, substitutes, where it falls when vacant, its quorum."""

    id: str
    name: str = ""
    members: tuple[str, ...] = ()
    substitutes: tuple[Substitute, ...] = ()
    superior: str | None = None
    # None: the first holder to answer decides. Set for collegiate roles (comite_rrss).
    quorum: Quorum | None = None


@dataclass(frozen=True)
class Unit:
    """Describe one organizational unit: its head and members."""

    id: str
    name: str = ""
    head: str | None = None
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Directory:
    """Hold the configured roles and units by id."""

    roles: Mapping[str, Role] = field(default_factory=dict)
    units: Mapping[str, Unit] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """Answer "may this address act?": when yes, under which role; when no, why (Spanish)."""

    allowed: bool
    role: str | None = None
    reason: str = ""


# Who acts when a dynamic role resolves to nobody: a requester without a unit head (the
# Dirección Ejecutiva itself, or a unit missing from [units]) has the Dirección Ejecutiva
# above them, so a stage of the unit head never waits for no one.
_DYNAMIC_SUPERIORS = {JEFATURA_SOLICITANTE: "direccion_ejecutiva"}


def address_key(address: str) -> str:
    """Return the form in which two spellings of one address compare equal."""
    return address.strip().casefold()


def _dedupe(addresses: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for address in addresses:
        if address and address_key(address) not in seen:
            seen[address_key(address)] = address.strip()
    return tuple(seen.values())


def _base_holders(directory: Directory, role_id: str, request: RequestParties) -> tuple[str, ...]:
    if role_id == SOLICITANTE:
        return (request.requester,)
    if role_id == JEFATURA_SOLICITANTE:
        unit = directory.units.get(request.unit or "")
        return (unit.head,) if unit is not None and unit.head else ()
    if role_id == MIEMBRO_UNIDAD:
        return _dedupe(
            address
            for unit in directory.units.values()
            for address in ((unit.head or ""), *unit.members)
        )
    role = directory.roles.get(role_id)
    return role.members if role is not None else ()


def _apply_substitutes(holders: tuple[str, ...], role: Role | None, on_date: date) -> list[str]:
    if role is None:
        return list(holders)
    active = [s for s in role.substitutes if s.active(on_date)]
    away = {address_key(s.replaces) for s in active if s.replaces}
    kept = [h for h in holders if address_key(h) not in away]
    return kept + [s.address for s in active]


def assignees(
    directory: Directory, role_id: str, request: RequestParties, on_date: date
) -> tuple[str, ...]:
    """Return who holds ``role_id`` for ``request`` on ``on_date``, vacancies resolved upward."""
    visited: set[str] = set()
    current: str | None = role_id
    while current is not None and current not in visited:
        visited.add(current)
        role = directory.roles.get(current)
        holders = _apply_substitutes(_base_holders(directory, current, request), role, on_date)
        if holders:
            return _dedupe(holders)
        current = role.superior if role is not None else _DYNAMIC_SUPERIORS.get(current)
    return ()


def holders_of(
    directory: Directory, role_ids: Iterable[str], request: RequestParties, on_date: date
) -> tuple[str, ...]:
    """Return the union of the holders of several roles, without duplicates."""
    return _dedupe(a for r in role_ids for a in assignees(directory, r, request, on_date))


def may_act(
    directory: Directory,
    address: str,
    roles: Iterable[str],
    request: RequestParties,
    on_date: date,
) -> Decision:
    """Decide whether ``address`` holds one of ``roles`` (a stage's acting roles) on ``on_date``."""
    role_ids = tuple(roles)
    for role_id in role_ids:
        holders = assignees(directory, role_id, request, on_date)
        if address_key(address) in {address_key(h) for h in holders}:
            return Decision(True, role=role_id)
    wanted = ", ".join(role_ids) or "ninguno"
    return Decision(
        False, reason=f"{address} no ejerce el rol requerido ({wanted}) el {on_date.isoformat()}"
    )


def unit_of(directory: Directory, address: str) -> str | None:
    """Return the id of the first unit ``address`` heads or belongs to, if any."""
    for unit in directory.units.values():
        if address_key(address) in {
            address_key(a) for a in ((unit.head or ""), *unit.members) if a
        }:
            return unit.id
    return None


def check_directory(directory: Directory) -> list[str]:
    """Return every inconsistency of the roles' superiors (unknown ids, cycles)."""
    problems: list[str] = []
    known = set(directory.roles) | DYNAMIC_ROLES
    for role in directory.roles.values():
        if role.superior is not None and role.superior not in known:
            problems.append(f'roles.{role.id}.superior: rol desconocido "{role.superior}"')
        chain: list[str] = [role.id]
        nxt = role.superior
        while nxt is not None and nxt in directory.roles:
            if nxt in chain:
                loop = " -> ".join([*chain[chain.index(nxt) :], nxt])
                problems.append(f"roles.{role.id}.superior: ciclo {loop}")
                break
            chain.append(nxt)
            nxt = directory.roles[nxt].superior
        for index, sub in enumerate(role.substitutes):
            if sub.end < sub.start:
                where = f"roles.{role.id}.substitutes[{index}]"
                problems.append(f"{where}: until {sub.end} es anterior a from {sub.start}")
    return problems
