"""Whole-configuration checks behind `mailflow check-config`: settings, procedures, templates."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mailflow.config import DYNAMIC_ROLES, Settings, load_settings
from mailflow.errors import ConfigError
from mailflow.procedures import Procedure, load_procedures


def loaded_procedures(settings: Settings) -> dict[str, Procedure]:
    """Load the procedures the settings point at; raise ConfigError listing every problem."""
    role_ids = set(settings.roles) | set(DYNAMIC_ROLES)
    procedures, problems = load_procedures(settings.paths.procedures_dir, role_ids)
    if problems:
        raise ConfigError(str(settings.paths.procedures_dir), problems)
    return procedures


def check_everything(path: Path, env: Mapping[str, str]) -> list[str]:
    """Return every problem of the configuration at ``path``; empty when it is usable."""
    try:
        settings = load_settings(path, env)
    except ConfigError as exc:
        return exc.problems
    problems: list[str] = []
    try:
        loaded_procedures(settings)
    except ConfigError as exc:
        problems.extend(exc.problems)
    return problems
