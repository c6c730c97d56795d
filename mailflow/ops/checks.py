"""Whole-configuration checks behind `mailflow check-config`: settings, procedures, templates."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mailflow.app.build import directory_problems, procedures_of
from mailflow.config import Settings, load_settings
from mailflow.errors import ConfigError
from mailflow.mail.render import Renderer, TemplateError
from mailflow.ops.sample import sample_contexts


def template_problems(settings: Settings) -> list[str]:
    """Render every template with sample data; return what fails, file by file."""
    renderer = Renderer(settings.paths.templates_dir)
    problems = []
    for name, context in sample_contexts(settings.organization.name).items():
        try:
            renderer.render(name, context)
        except TemplateError as exc:
            problems.append(f"templates: {exc}")
    return problems


def check_everything(path: Path, env: Mapping[str, str]) -> list[str]:
    """Return every problem of the configuration at ``path``; empty when it is usable."""
    try:
        settings = load_settings(path, env)
    except ConfigError as exc:
        return exc.problems
    problems = directory_problems(settings)
    try:
        procedures_of(settings)
    except ConfigError as exc:
        problems.extend(exc.problems)
    problems.extend(template_problems(settings))
    return problems
