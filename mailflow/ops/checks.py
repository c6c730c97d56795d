"""Whole-configuration checks behind `mailflow check-config`: settings, procedures, templates.

``--live`` also connects to the servers the file names, says what it found there, and
checks ``[security] trusted_authserv_id`` against the last mails of the mailbox: set to an
id no header carries, it would hold every privileged opening for ``CONFIRMO``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mailflow.app.build import directory_problems, procedures_of
from mailflow.config import Settings, load_settings
from mailflow.core.routing import authserv_id
from mailflow.errors import ConfigError
from mailflow.mail.render import Renderer, TemplateError
from mailflow.ops.sample import sample_contexts
from mailflow.transport.imap import ImapError, ImapSource
from mailflow.transport.smtp import SmtpError, SmtpSender

# How many of the mailbox's last mails --live reads the Authentication-Results of.
LIVE_MESSAGES = 20


@dataclass
class Checked:
    """What check-config found: problems (exit 1), warnings, and what --live saw."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)


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


def check_imap(settings: Settings, source: ImapSource, checked: Checked) -> None:
    """Log in to the mailbox, say what is there, and check the trusted authserv-id."""
    try:
        source.connect()
        try:
            survey = source.survey("Authentication-Results", LIVE_MESSAGES)
        finally:
            source.close()
    except ImapError as exc:
        checked.problems.append(f"imap: {exc}")
        return
    imap = settings.imap
    waits = (
        "IDLE" if "IDLE" in survey.capabilities else f"sin IDLE: sondeo cada {imap.poll_seconds} s"
    )
    checked.found.append(
        f"IMAP {source.where}: sesión iniciada; carpeta {survey.folder} con "
        f"{survey.count} {'correo' if survey.count == 1 else 'correos'}, "
        f"UIDVALIDITY {survey.uidvalidity}; {waits}"
    )
    movable = {"MOVE", "UIDPLUS"} & set(survey.capabilities)
    if imap.processed_folder and not movable:
        checked.problems.append(
            "imap.processed_folder: el servidor no ofrece MOVE ni UIDPLUS, así que mailflow "
            "no puede mover correos sin riesgo; quite processed_folder"
        )
    _check_trusted(settings, survey.folder, [authserv_id(h) for h in survey.headers], checked)


def _check_trusted(
    settings: Settings, folder: str, ids: list[str | None], checked: Checked
) -> None:
    """Warn when trusted_authserv_id matches none of the mailbox's last mails."""
    trusted = settings.security.trusted_authserv_id
    seen = Counter(i for i in ids if i)
    seen_words = ", ".join(f"«{i}» ({n})" for i, n in seen.most_common(3)) or "ninguna"
    if trusted is None:
        if seen:
            checked.found.append(
                f"Authentication-Results en los últimos {len(ids)} correos: {seen_words}. "
                "security.trusted_authserv_id no está puesto: las aperturas directas y de "
                "eliminación esperan CONFIRMO (docs/security.md)"
            )
        return
    if not ids:
        checked.warnings.append(
            f"security.trusted_authserv_id = «{trusted}»: la carpeta {folder} está vacía, no "
            "se pudo comprobar; repita check-config --live cuando haya llegado correo"
        )
        return
    matching = seen.get(trusted, 0)
    if matching == 0:
        checked.warnings.append(
            f"security.trusted_authserv_id = «{trusted}», pero ninguno de los últimos "
            f"{len(ids)} correos de {folder} trae Authentication-Results con ese id "
            f"(encontrados: {seen_words}). Así toda apertura directa o de eliminación espera "
            "CONFIRMO de su remitente. Ponga el id que escribe su servidor, o quite la clave "
            "(docs/security.md)"
        )
        return
    checked.found.append(
        f"security.trusted_authserv_id: {matching} de los últimos {len(ids)} correos traen "
        f"Authentication-Results de «{trusted}»"
    )


def check_smtp(sender: SmtpSender, checked: Checked) -> None:
    """Connect, secure and log in to the SMTP server once; say what it offers."""
    try:
        found = sender.check_sync()
    except SmtpError as exc:
        checked.problems.append(f"smtp: {exc}")
        return
    how = "cifrada" if found.encrypted else "SIN cifrar"
    login = "sesión iniciada" if found.logged_in else "sin inicio de sesión"
    offers = ", ".join(found.extensions) or "nada"
    checked.found.append(
        f"SMTP {found.where}: conexión {how}, {login}; el servidor ({found.greeting or '?'}) "
        f"ofrece {offers}"
    )
