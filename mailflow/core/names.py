"""How people call roles and a request's states, in the institution's Spanish.

One table for every text that names them (mails, ``requests show``, status): the CLI
used to say "publicado" where the mails said "publicada", and two tables drifted apart.
A role's configured ``name`` (``[roles.<id>] name``) wins over these, the manual's words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mailflow.core.model import Status
from mailflow.core.people import JEFATURA_SOLICITANTE, SOLICITANTE, Directory

# A request's state, said of "la solicitud".
STATUS_WORDS = {
    Status.EN_CURSO: "en curso",
    Status.PUBLICADO: "publicada",
    Status.RECHAZADO: "rechazada",
    Status.CANCELADO: "anulada",
    Status.ELIMINADO: "eliminada",
}

# The manual's name of each role, as a title ("Etapa 2: Dirección Ejecutiva").
ROLE_NAMES = {
    "direccion_ejecutiva": "Dirección Ejecutiva",
    "jefatura_ugs": "Jefatura de la Unidad de Gestión de Servicios",
    "profesional_promocion": "Profesional en Promoción de Servicios",
    "equipo_diseno": "Equipo de diseño",
    "administrador_rrss": "Administrador Principal de Redes Sociales",
    "comite_rrss": "Comité de aprobación de RRSS",
    SOLICITANTE: "Solicitante",
    JEFATURA_SOLICITANTE: "Jefatura de la unidad solicitante",
    "miembro_unidad": "Miembros de las unidades",
}

# The same roles inside a sentence ("pueden anularla: quien envió la solicitud, …").
_ROLE_PHRASES = {
    SOLICITANTE: "quien envió la solicitud",
    JEFATURA_SOLICITANTE: "la jefatura de la unidad solicitante",
    "direccion_ejecutiva": "la Dirección Ejecutiva",
    "jefatura_ugs": "la Jefatura de la UGS",
    "profesional_promocion": "el Profesional en Promoción de Servicios",
    "equipo_diseno": "el equipo de diseño",
    "administrador_rrss": "el Administrador Principal de Redes Sociales",
    "comite_rrss": "el Comité de aprobación de RRSS",
}


def status_word(status: str) -> str:
    """Return a request state as people say it ("publicada"); the value itself if unknown."""
    try:
        return STATUS_WORDS[Status(status)]
    except ValueError:
        return status


def role_name(directory: Directory, role_id: str) -> str:
    """Return how the institution calls a role: its configured name, else the manual's."""
    role = directory.roles.get(role_id)
    if role is not None and role.name:
        return role.name
    return ROLE_NAMES.get(role_id, role_id)


def role_words(directory: Directory, roles: Iterable[str]) -> str:
    """Name roles inside a sentence: "quien envió la solicitud, … o la Dirección Ejecutiva"."""
    names = []
    for role_id in roles:
        role = directory.roles.get(role_id)
        names.append(
            role.name if role is not None and role.name else _ROLE_PHRASES.get(role_id, role_id)
        )
    return join_words(names)


def join_words(items: Sequence[str]) -> str:
    """Join Spanish phrases with commas and a final "o"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " o " + items[-1]
