"""Build the pure core (directory, calendar, procedures, workflow) from validated settings."""

from __future__ import annotations

from dataclasses import dataclass

from mailflow.config import Settings
from mailflow.core.calendar import BusinessCalendar
from mailflow.core.model import Procedure, Quorum
from mailflow.core.people import DYNAMIC_ROLES, Directory, Role, Substitute, Unit, check_directory
from mailflow.core.procedures import require_procedures
from mailflow.core.workflow import Workflow


def directory_of(settings: Settings) -> Directory:
    """Return the people and roles the settings describe."""
    roles = {
        role_id: Role(
            id=role_id,
            name=entry.name,
            members=entry.members,
            substitutes=tuple(
                Substitute(address=s.address, start=s.start, end=s.until, replaces=s.replaces)
                for s in entry.substitutes
            ),
            superior=entry.superior,
            # Only a collegiate body votes; every other role is decided by its first answer.
            quorum=Quorum(entry.quorum) if role_id == "comite_rrss" else None,
        )
        for role_id, entry in settings.roles.items()
    }
    units = {
        unit_id: Unit(id=unit_id, name=entry.name, head=entry.head, members=entry.members)
        for unit_id, entry in settings.units.items()
    }
    return Directory(roles=roles, units=units)


def calendar_of(settings: Settings) -> BusinessCalendar:
    """Return the business-day calendar of the institution."""
    org = settings.organization
    return BusinessCalendar(
        timezone=org.timezone,
        country=org.holidays,
        extra_holidays=org.extra_holidays,
        office_start=org.office_hours_start,
        office_end=org.office_hours_end,
    )


def procedures_of(settings: Settings) -> dict[str, Procedure]:
    """Load the procedures; raise ConfigError listing every problem."""
    return require_procedures(settings.paths.procedures_dir, set(settings.roles) | DYNAMIC_ROLES)


@dataclass(frozen=True)
class Core:
    """Everything pure that the daemon and the commands share."""

    directory: Directory
    calendar: BusinessCalendar
    procedures: dict[str, Procedure]
    workflow: Workflow


def build_core(settings: Settings) -> Core:
    """Build the core once at start; raise ConfigError if the procedures are unusable."""
    directory = directory_of(settings)
    calendar = calendar_of(settings)
    procedures = procedures_of(settings)
    workflow = Workflow(
        procedures,
        directory,
        calendar,
        cronograma_default_days=settings.schedule.cronograma_default_days,
        cancel_roles=settings.requests.withdraw_roles,
    )
    return Core(directory, calendar, procedures, workflow)


def directory_problems(settings: Settings) -> list[str]:
    """Return the problems of the people and roles (cycles of superiors and the like)."""
    return check_directory(directory_of(settings))
