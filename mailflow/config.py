"""Load the TOML configuration into frozen, validated settings.

Every problem is collected and reported at once, each with its key path
(``roles.jefatura_ugs.members[0]``) and what to do about it, so an operator fixes a
config file in one round instead of one error per restart.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, time
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from mailflow.core.model import ProductType
from mailflow.core.people import DYNAMIC_ROLES
from mailflow.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = Path("config/mailflow.toml")

# Roles that exist in every institution; procedures may name these or the dynamic ones
# (people.DYNAMIC_ROLES: the requester, the head of the requester's unit, unit members).
STATIC_ROLES = (
    "direccion_ejecutiva",
    "jefatura_ugs",
    "profesional_promocion",
    "equipo_diseno",
    "administrador_rrss",
    "comite_rrss",
)


def normalize_address(value: str) -> str:
    """Return the address lower-cased after checking its syntax (never DNS)."""
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise ValueError(
            f'"{value}" no es una dirección de correo válida (p. ej. "nombre@institucion.gob.bo")'
        ) from None
    return checked.normalized.lower()


Address = Annotated[str, AfterValidator(normalize_address)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # The secrets of this section: each may be given as KEY, KEY_env, KEY_file or
    # KEY_credential (see _resolve_secret).
    secret_keys: ClassVar[tuple[str, ...]] = ()


class KeyProblem(ValueError):
    """A problem of one key of the section being validated: its path names that key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class UnloadedSecret(SecretStr):
    """Stand in for a secret a command did not read (read-only commands read none).

    Any use is a programming error and fails loudly: nothing is ever signed or sent with
    an empty key by mistake.
    """

    def __init__(self, key: str) -> None:
        super().__init__("")
        self.key = key

    def get_secret_value(self) -> str:
        """Refuse: this command was built without the mail secrets."""
        raise RuntimeError(f"{self.key}: this command was started without the mail secrets")

    def __repr__(self) -> str:
        return "UnloadedSecret()"


SECRET_FORMS = ("", "_env", "_file", "_credential")


def _with_secrets(
    data: Any,
    handler: ModelWrapValidatorHandler[Any],
    info: ValidationInfo,
    keys: Mapping[str, int],
) -> Any:
    """Validate a section after replacing each secret of ``keys`` (name → minimum length).

    A secret that cannot be read is reported beside the section's other problems, under
    the key it was given by (``imap.password_file``), instead of hiding them.
    """
    problems: list[InitErrorDetails] = []
    for key, min_length in keys.items():
        data = _resolve_secret(data, info, key, min_length, problems)
    try:
        section = handler(data)
    except ValidationError as exc:
        if not problems:
            raise
        raise ValidationError.from_exception_data(exc.title, [*_details(exc), *problems]) from None
    if problems:
        raise ValidationError.from_exception_data("secrets", problems)
    return section


def _details(exc: ValidationError) -> list[InitErrorDetails]:
    """Return a ValidationError's errors in the form that builds a new one."""
    return [
        {"type": e["type"], "loc": e["loc"], "input": e["input"], "ctx": e.get("ctx", {})}
        for e in exc.errors()
    ]


def _resolve_secret(
    data: Any, info: ValidationInfo, key: str, min_length: int, problems: list[InitErrorDetails]
) -> Any:
    """Replace ``key`` / ``key_env`` / ``key_file`` / ``key_credential`` by one secret value.

    With ``secrets=False`` in the validation context (read-only commands) the value is
    not read at all: an :class:`UnloadedSecret` takes its place. A problem is appended
    to ``problems`` and the secret left unloaded.
    """
    if not isinstance(data, dict):
        return data
    data = dict(data)
    given = [key + form for form in SECRET_FORMS if key + form in data]
    if not given:
        return data
    name = given[0]
    raw = data.pop(name)
    for extra in given[1:]:
        data.pop(extra)
    data[key] = UnloadedSecret(name)
    context = info.context or {}
    try:
        if len(given) > 1:
            raise KeyProblem(given[1], f"indique solo una de {', '.join(given)}")
        if not context.get("secrets", True):
            return data
        if name == key and not isinstance(raw, str):
            data[key] = raw  # the type error is reported with the value and the expected form
            return data
        if not isinstance(raw, str):
            raise KeyProblem(name, f"{_shown(raw)} no es válido; se espera un texto entre comillas")
        value, origin = _read_secret(name, key, raw, context)
        if not value.strip():
            raise KeyProblem(name, f"{origin} no contiene nada; ponga ahí el secreto")
        if len(value) < min_length:
            raise KeyProblem(
                name,
                f"{origin} tiene {len(value)} caracteres; el secreto necesita al menos "
                f"{min_length} (p. ej. la salida de `openssl rand -hex 32`)",
            )
    except KeyProblem as problem:
        problems.append(
            {
                "type": PydanticCustomError("secret", "{message}", {"message": str(problem)}),
                "loc": (problem.key,),
                "input": raw,
            }
        )
        return data
    data[key] = value
    return data


def _read_secret(name: str, key: str, raw: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """Return a secret's value and where it came from, in words; raise KeyProblem."""
    env: Mapping[str, str] = context.get("env", {})
    base: Path = context.get("base", Path.cwd())
    if name == key:
        return raw, "el valor"
    if name.endswith("_env"):
        if raw not in env:
            raise KeyProblem(
                name,
                f"nombra la variable ${raw}, que no está definida en el entorno de este "
                f"comando: expórtela (export {raw}=…) o use {key}_file",
            )
        return env[raw], f"la variable ${raw}"
    if name.endswith("_credential"):
        # systemd's LoadCredential=NAME:PATH: the file NAME in $CREDENTIALS_DIRECTORY,
        # readable only by the service, whatever user it runs as.
        folder = env.get("CREDENTIALS_DIRECTORY")
        if not folder:
            raise KeyProblem(
                name,
                "necesita $CREDENTIALS_DIRECTORY, que systemd define con LoadCredential=; "
                f"fuera de systemd use {key}_file",
            )
        path = Path(folder) / raw
        hint = f"; revise LoadCredential={raw}:… en la unidad de systemd"
    else:
        path = base / raw
        hint = ""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyProblem(name, f"{path} no se puede leer ({_os_reason(exc)}){hint}") from None
    except UnicodeDecodeError:
        raise KeyProblem(name, f"{path} no es texto UTF-8; escriba el secreto como texto") from None
    return text.strip(), f"el archivo {path}"


def _os_reason(exc: OSError) -> str:
    """Say in Spanish why a file could not be read."""
    if isinstance(exc, FileNotFoundError):
        return "no existe"
    if isinstance(exc, PermissionError):
        return "sin permiso de lectura para el usuario que ejecuta mailflow"
    if isinstance(exc, IsADirectoryError):
        return "es una carpeta, no un archivo"
    return exc.strerror or type(exc).__name__


class Organization(_Section):
    name: str
    domain: str
    timezone: str = "America/La_Paz"
    holidays: str = Field("BO", description="holidays package country code")
    subdivision: str | None = None
    extra_holidays: tuple[date, ...] = ()
    code_prefix: str = Field("RRSS", pattern=r"^[A-Z][A-Z0-9]{1,9}$")
    office_hours_start: time = time(8, 30)
    office_hours_end: time = time(16, 30)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f'"{value}" no es el nombre de una zona horaria (p. ej. "America/La_Paz")'
            ) from None
        return value

    @model_validator(mode="after")
    def _hours_in_order(self) -> Organization:
        if self.office_hours_start >= self.office_hours_end:
            raise KeyProblem(
                "office_hours_end",
                f"{self.office_hours_end:%H:%M} no es posterior a office_hours_start "
                f"({self.office_hours_start:%H:%M}); la jornada debe terminar después de empezar",
            )
        return self


Security = Literal["tls", "starttls", "none"]
Auth = Literal["password", "xoauth2"]


def _check_ca_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """Resolve a CA bundle path against the config file's folder and check it can be read."""
    if value is None:
        return None
    base: Path = (info.context or {}).get("base", Path.cwd())
    path = (base / value).resolve()
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ValueError(f"{path} no se puede leer ({_os_reason(exc)})") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"{path} no contiene un certificado PEM (-----BEGIN CERTIFICATE-----)")
    return path


CaFile = Annotated[Path | None, AfterValidator(_check_ca_file)]


class Imap(_Section):
    secret_keys: ClassVar[tuple[str, ...]] = ("password",)

    host: str
    port: int = Field(993, ge=1, le=65535)
    security: Security = "tls"
    # PEM file of the CA(s) to trust instead of the system's (a private or test CA).
    ca_file: CaFile = None
    auth: Auth = "password"
    username: str
    password: SecretStr | None = None
    folder: str = "INBOX"
    processed_folder: str | None = None
    # Notice UIDs that vanished before mailflow fetched them (someone moved or deleted the
    # mail). It relies on the server numbering a folder's messages consecutively (as
    # Dovecot, Cyrus and Zimbra do); turn it off for a server that skips numbers.
    report_gaps: bool = True
    poll_seconds: int = Field(60, ge=5, le=3600)
    idle_seconds: int = Field(540, ge=30, le=600)
    timeout_seconds: int = Field(60, ge=5, le=600)

    @model_validator(mode="wrap")
    @classmethod
    def _secret(
        cls, data: Any, handler: ModelWrapValidatorHandler[Imap], info: ValidationInfo
    ) -> Imap:
        return _with_secrets(data, handler, info, {"password": 1})  # type: ignore[no-any-return]

    @model_validator(mode="after")
    def _login_complete(self) -> Imap:
        if self.auth == "password" and self.password is None:
            raise KeyProblem(
                "password",
                'falta: auth = "password" necesita password_env, password_file, '
                'password_credential o password (o auth = "xoauth2" con una sección [oauth2])',
            )
        if self.auth == "xoauth2" and self.password is not None:
            raise KeyProblem(
                "password", 'sobra: auth = "xoauth2" entra con un token; quite la contraseña'
            )
        return self


class Smtp(_Section):
    secret_keys: ClassVar[tuple[str, ...]] = ("password",)

    host: str
    port: int = Field(587, ge=1, le=65535)
    security: Security = "starttls"
    ca_file: CaFile = None
    auth: Auth = "password"
    username: str | None = None
    password: SecretStr | None = None
    from_address: Address
    from_name: str = "Redes Sociales"
    # false where the mail server refuses local+tag@ (no plus-addressing): Reply-To is then
    # the plain from_address and replies are proven by the token in our Message-ID only.
    plus_addressing: bool = True
    timeout_seconds: int = Field(60, ge=5, le=600)
    # Connections one outbox flush sends over at once. 1 keeps the outbox's order on the
    # wire; 2-3 deliver faster where the server delivers slowly (large providers cap
    # concurrent connections per account: Microsoft 365 at 3).
    connections: int = Field(1, ge=1, le=16)

    @model_validator(mode="wrap")
    @classmethod
    def _secret(
        cls, data: Any, handler: ModelWrapValidatorHandler[Smtp], info: ValidationInfo
    ) -> Smtp:
        return _with_secrets(data, handler, info, {"password": 1})  # type: ignore[no-any-return]

    @model_validator(mode="after")
    def _login_complete(self) -> Smtp:
        if self.auth == "xoauth2":
            if self.username is None:
                raise KeyProblem(
                    "username", 'falta: auth = "xoauth2" necesita la dirección del buzón'
                )
            if self.password is not None:
                raise KeyProblem(
                    "password", 'sobra: auth = "xoauth2" entra con un token; quite la contraseña'
                )
        elif self.username is None and self.password is not None:
            raise KeyProblem("username", "falta: hay contraseña pero no usuario (o quite ambos)")
        elif self.username is not None and self.password is None:
            raise KeyProblem(
                "password",
                "falta: hay usuario pero no contraseña (password_env, password_file, "
                "password_credential o password; o quite username para enviar sin login)",
            )
        return self


def _token_url(value: str) -> str:
    """Accept https URLs, and http only to this machine (a local proxy or a test server)."""
    parts = urlsplit(value)
    local = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if (parts.scheme == "https" or (parts.scheme == "http" and local)) and parts.hostname:
        return value
    raise ValueError(
        f'"{value}" no es una URL https://; el refresh token y el secreto del cliente no '
        "deben viajar sin cifrar (p. ej. https://login.microsoftonline.com/TENANT/oauth2/v2.0/token)"
    )


class OAuth2(_Section):
    """The provider's token endpoint and this app's registration, for XOAUTH2 logins."""

    secret_keys: ClassVar[tuple[str, ...]] = ("client_secret", "refresh_token")

    token_url: Annotated[str, AfterValidator(_token_url)]
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    refresh_token: SecretStr
    scope: str | None = None
    ca_file: CaFile = None
    timeout_seconds: int = Field(30, ge=5, le=300)

    @model_validator(mode="wrap")
    @classmethod
    def _secrets(
        cls, data: Any, handler: ModelWrapValidatorHandler[OAuth2], info: ValidationInfo
    ) -> OAuth2:
        keys = {"client_secret": 1, "refresh_token": 1}
        return _with_secrets(data, handler, info, keys)  # type: ignore[no-any-return]


# Base64 makes 35 MB of files a mail of about 47 MB, just under what mailflow itself reads.
MAX_ATTACH_MB = 35


class MailSettings(_Section):
    """What travels in our mails: the files of a request, within a total size."""

    # The files attached to one mail add up to at most this many MB (before base64, which
    # makes the mail about 4/3 larger): 15 keeps a mail near 20 MB, under the 25 MB that
    # Gmail and Exchange Online accept. ARCHIVOS sends the rest in mails of the same bound.
    attach_max_mb: float = 15

    @field_validator("attach_max_mb")
    @classmethod
    def _attach_bound(cls, value: float) -> float:
        if not 0 < value <= MAX_ATTACH_MB:
            raise ValueError(
                f"{value:g} está fuera de rango: indique más de 0 y a lo sumo {MAX_ATTACH_MB} "
                "(MB de archivos por correo; 15 mantiene los correos bajo los 25 MB que "
                "aceptan Gmail y Exchange Online)"
            )
        return value

    @property
    def attach_max_bytes(self) -> int:
        """Return the bound in bytes."""
        return int(self.attach_max_mb * 1024 * 1024)


class StoreSettings(_Section):
    """Where the database and the archive live: the ``[store]`` table."""

    url: str = "sqlite:///store/mailflow.db"
    archive_dir: Path = Path("store/archive")

    @field_validator("url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError(
                f'"{value}" no es una base que mailflow use: "sqlite:///ruta/mailflow.db" o '
                '"postgresql+psycopg://usuario@servidor/base"'
            )
        return value


class SubstituteEntry(_Section):
    address: Address
    replaces: Address | None = None
    start: date = Field(alias="from")
    until: date

    @model_validator(mode="after")
    def _in_order(self) -> SubstituteEntry:
        if self.until < self.start:
            raise KeyProblem(
                "until", f"{self.until} es anterior a from ({self.start}); invierta las fechas"
            )
        return self


class RoleEntry(_Section):
    name: str = ""
    members: tuple[Address, ...] = ()
    substitutes: tuple[SubstituteEntry, ...] = ()
    superior: str | None = None
    quorum: Literal["any", "majority", "all"] = "majority"


class UnitEntry(_Section):
    name: str
    head: Address | None = None
    members: tuple[Address, ...] = ()


# The HMAC key of reply tokens: shorter keys are guessable (docs/security.md).
SECRET_MIN_LENGTH = 16


class SecuritySettings(_Section):
    secret_keys: ClassVar[tuple[str, ...]] = ("secret",)

    secret: SecretStr
    trusted_authserv_id: str | None = None
    # A privileged opening (``directa``, ``eliminacion``) the trusted server does not vouch
    # for is held until its sender answers CONFIRMO to a tokened mail (docs/security.md).
    confirm_openings: bool = True
    confirm_days: int = Field(3, ge=1, le=30)  # business days the confirmation stays valid

    @model_validator(mode="wrap")
    @classmethod
    def _secret(
        cls, data: Any, handler: ModelWrapValidatorHandler[SecuritySettings], info: ValidationInfo
    ) -> SecuritySettings:
        keys = {"secret": SECRET_MIN_LENGTH}
        return _with_secrets(data, handler, info, keys)  # type: ignore[no-any-return]


Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class Schedule(_Section):
    reminder_time: time = time(9, 0)
    reminders_before_escalation: int = Field(2, ge=1, le=20)
    digest_weekday: Weekday = "monday"
    digest_time: time = time(8, 0)
    digest_to: tuple[str, ...] = ("jefatura_ugs", "direccion_ejecutiva")
    # Who hears, once a day, of mail that vanished from the mailbox before it was read:
    # role ids or addresses.
    gap_report_to: tuple[str, ...] = ("administrador_rrss",)
    cronograma_default_days: int = Field(5, ge=1, le=90)


class RequestRules(_Section):
    # Who may withdraw a request by answering ANULO (role ids, dynamic ones included).
    withdraw_roles: tuple[str, ...] = ("solicitante", "jefatura_solicitante", "direccion_ejecutiva")


class Paths(_Section):
    procedures_dir: Path = PROJECT_ROOT / "config" / "procedures"
    templates_dir: Path = PROJECT_ROOT / "templates" / "mail"
    report_templates_dir: Path = PROJECT_ROOT / "templates" / "report"
    poai_file: Path = PROJECT_ROOT / "config" / "poai.toml"


class Logging(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json": one JSON object per line (as --log-json), for log shippers.
    format: Literal["text", "json"] = "text"


class Metrics(_Section):
    """The optional Prometheus endpoint; only on a loopback address."""

    enabled: bool = False
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _loopback(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f'"{value}" no es HOST:PUERTO (p. ej. "127.0.0.1:9464")')
        if host not in ("127.0.0.1", "localhost", "::1", "[::1]") and not host.startswith("127."):
            raise ValueError(
                f'"{value}": el punto de métricas no tiene autenticación; escuche en 127.0.0.1 '
                "y deje que un Prometheus local o un proxy con TLS lo alcance"
            )
        return value


# What a person did to a product, by the keyword of their mail: ENTREGO delivered the
# designed material ("productos diseñados"), PUBLICADO disseminated it ("difundidos").
ProductAction = Literal["ENTREGO", "PUBLICADO"]


class PoaiFunction(_Section):
    """Describe one POAI function: its weight, yearly target and which products count."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name: str
    kind: Literal["especifica", "rutinaria"] = "especifica"
    result: str = ""
    verification: str = ""
    weight: float = Field(gt=0, le=100)
    target: int = Field(ge=1, description="products in the year")
    actions: tuple[ProductAction, ...] = Field(("ENTREGO", "PUBLICADO"), min_length=1)
    product_types: tuple[ProductType, ...] = ()  # empty: every type
    procedures: tuple[str, ...] = ()  # empty: every procedure


class Poai(_Section):
    """Describe the individual annual plan the POAI report measures products against.

    It is data, not code: ``config/poai.toml`` (``[paths] poai_file``) holds the functions,
    weights and the institution's targets. A ``[poai]`` table inside the main config file
    (how it was kept before) still wins over the file.
    """

    position: str = "Técnico en generación y difusión de contenidos para redes sociales"
    default_product_type: ProductType = ProductType.POST
    functions: tuple[PoaiFunction, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Poai:
        ids = [f.id for f in self.functions]
        if len(set(ids)) != len(ids):
            raise KeyProblem("functions", "cada función necesita un id distinto")
        total = sum(f.weight for f in self.functions)
        if self.functions and abs(total - 100) > 0.01:
            raise KeyProblem("functions", f"los pesos (weight) suman {total:g}, no 100")
        return self


class Settings(_Section):
    """The whole validated configuration; built once at start and never changed."""

    source: Path
    organization: Organization
    imap: Imap
    smtp: Smtp
    oauth2: OAuth2 | None = None
    mail: MailSettings = MailSettings()
    store: StoreSettings = StoreSettings()
    roles: dict[str, RoleEntry]
    units: dict[str, UnitEntry] = {}
    security: SecuritySettings
    schedule: Schedule = Schedule()
    requests: RequestRules = RequestRules()
    paths: Paths = Paths()
    logging: Logging = Logging()
    metrics: Metrics = Metrics()
    poai: Poai

    @property
    def zone(self) -> ZoneInfo:
        """Return the institution's time zone."""
        return ZoneInfo(self.organization.timezone)


def cross_check(raw: Mapping[str, Any]) -> list[str]:
    """Return the problems that span keys (unknown role ids, members absent), tolerant of junk."""
    problems: list[str] = []
    roles = raw.get("roles") if isinstance(raw.get("roles"), dict) else {}
    assert isinstance(roles, dict)
    known = set(roles) | set(DYNAMIC_ROLES)
    for role_id, entry in roles.items():
        if role_id not in STATIC_ROLES:
            problems.append(
                f"roles.{role_id}: rol desconocido{_did_you_mean(role_id, STATIC_ROLES)}; "
                f"los roles son {', '.join(STATIC_ROLES)}"
            )
        if not isinstance(entry, dict):
            continue
        superior = entry.get("superior")
        if superior is not None and superior not in roles:
            problems.append(
                f'roles.{role_id}.superior: "{superior}" no es un rol configurado'
                f"{_did_you_mean(str(superior), roles)}"
            )
        if superior == role_id:
            problems.append(f"roles.{role_id}.superior: un rol no puede ser su propio superior")
        if not entry.get("members") and superior is None:
            problems.append(
                f"roles.{role_id}: el rol está acéfalo (members vacío) y no tiene superior "
                "que actúe por él; añada members o superior"
            )
    for role_id in STATIC_ROLES:
        if role_id not in roles:
            problems.append(
                f"roles.{role_id}: falta; cada rol de los procedimientos necesita su sección "
                f"[roles.{role_id}]"
            )
    for name in ("imap", "smtp"):
        section = raw.get(name)
        if isinstance(section, dict) and section.get("auth") == "xoauth2" and "oauth2" not in raw:
            problems.append(
                f'{name}.auth: "xoauth2" necesita una sección [oauth2] (token_url, client_id, '
                "refresh_token; vea docs/providers.md)"
            )
    schedule = raw.get("schedule") if isinstance(raw.get("schedule"), dict) else {}
    assert isinstance(schedule, dict)
    requests = raw.get("requests") if isinstance(raw.get("requests"), dict) else {}
    assert isinstance(requests, dict)
    for i, role_id in enumerate(requests.get("withdraw_roles", ())):
        if role_id not in known:
            problems.append(
                f'requests.withdraw_roles[{i}]: "{role_id}" no es un rol configurado'
                f"{_did_you_mean(str(role_id), known)}"
            )
    return problems + _recipient_problems(schedule, known)


def _recipient_problems(schedule: Mapping[str, Any], known: set[str]) -> list[str]:
    """Check that [schedule] names configured roles (and, for gap reports, addresses)."""
    problems = []
    for i, role_id in enumerate(schedule.get("digest_to", ())):
        if role_id not in known:
            problems.append(
                f'schedule.digest_to[{i}]: "{role_id}" no es un rol configurado'
                f"{_did_you_mean(str(role_id), known)}"
            )
    for i, name in enumerate(schedule.get("gap_report_to", ())):
        if not isinstance(name, str) or name in known:
            continue
        if "@" not in name:
            problems.append(
                f'schedule.gap_report_to[{i}]: "{name}" no es un rol configurado ni una '
                f"dirección{_did_you_mean(name, known)}"
            )
            continue
        try:
            normalize_address(name)
        except ValueError as exc:
            problems.append(f"schedule.gap_report_to[{i}]: {exc}")
    return problems


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (¿quiso decir «x»?)' for the nearest of ``choices``, or ''."""
    near = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (¿quiso decir «{near[0]}»?)" if near else ""


# What each kind of value looks like in the file, for pydantic's type errors.
_EXPECTED = {
    "int_parsing": "un número entero, sin comillas",
    "int_type": "un número entero, sin comillas",
    "int_from_float": "un número entero, sin decimales",
    "float_parsing": "un número, sin comillas",
    "float_type": "un número, sin comillas",
    "bool_parsing": "true o false, sin comillas",
    "bool_type": "true o false, sin comillas",
    "string_type": "un texto entre comillas",
    "time_parsing": 'una hora entre comillas, "HH:MM"',
    "time_type": 'una hora entre comillas, "HH:MM"',
    "date_parsing": "una fecha sin comillas, AAAA-MM-DD",
    "date_type": "una fecha sin comillas, AAAA-MM-DD",
    "date_from_datetime_parsing": "una fecha sin comillas, AAAA-MM-DD",
    "date_from_datetime_inexact": "una fecha sin hora, AAAA-MM-DD",
    "list_type": 'una lista entre corchetes, p. ej. ["…", "…"]',
    "tuple_type": 'una lista entre corchetes, p. ej. ["…", "…"]',
    "dict_type": "una sección [nombre] o una tabla { clave = valor }",
    "model_type": "una sección [nombre] o una tabla { clave = valor }",
    "model_attributes_type": "una sección [nombre] o una tabla { clave = valor }",
    "path_type": "una ruta entre comillas",
}
# Readable forms of the patterns fields are checked against.
_PATTERNS = {
    r"^[A-Z][A-Z0-9]{1,9}$": "de 2 a 10 mayúsculas o cifras, empezando por una letra",
    r"^[a-z][a-z0-9_]{0,31}$": "minúsculas, cifras y _, empezando por una letra",
}


def _shown(value: Any) -> str:
    """Return a value as it was written in the file (TOML-like), shortened."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = '"' + value.replace('"', '\\"') + '"'
    elif isinstance(value, dict):
        text = "{ " + ", ".join(f"{k} = {_shown(v)}" for k, v in value.items()) + " }"
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(_shown(v) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "…"


def _key_path(loc: Sequence[Any]) -> str:
    """Return ``roles.jefatura_ugs.members[0]`` for pydantic's location tuple."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in str(part) or "(" in str(part):
            continue  # pydantic's name of a union member or validator, not a key
        else:
            path += f".{part}" if path else str(part)
    return path


def _section_at(loc: Sequence[Any]) -> type[_Section] | None:
    """Return the section model that the key path ``loc`` leads to, if any."""
    annotation: Any = Settings
    for part in loc:
        annotation = _unwrapped(annotation)
        if isinstance(annotation, type) and issubclass(annotation, _Section):
            field = _field_named(annotation, part)
            if field is None:
                return None
            annotation = field.annotation
        elif get_origin(annotation) in (dict, tuple):
            annotation = get_args(annotation)[-1 if get_origin(annotation) is dict else 0]
        else:
            return None
    annotation = _unwrapped(annotation)
    if isinstance(annotation, type) and issubclass(annotation, _Section):
        return annotation
    return None


def _unwrapped(annotation: Any) -> Any:
    """Return ``X`` for ``X | None``."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _field_named(model: type[_Section], key: Any) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def valid_keys(model: type[_Section]) -> list[str]:
    """Return every key a section accepts, as written in the file."""
    keys = [f.alias or name for name, f in model.model_fields.items() if name != "source"]
    keys += [key + form for key in model.secret_keys for form in SECRET_FORMS[1:]]
    return keys


def _unknown_key(loc: Sequence[Any]) -> str:
    """Say that a key is unknown, with the nearest valid one of its section."""
    section = _section_at(loc[:-1])
    if section is None:
        return "clave desconocida; compárela con config/mailflow.toml"
    keys = valid_keys(section)
    near = _did_you_mean(str(loc[-1]), keys)
    if near:
        return f"clave desconocida{near}"
    return f"clave desconocida; aquí valen: {', '.join(keys)}"


def _format_error(err: Mapping[str, Any]) -> str:
    """Return one pydantic error as ``key.path: mensaje en castellano``."""
    loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    error = ctx.get("error")
    if isinstance(error, KeyProblem):
        loc += (error.key,)
    path = _key_path(loc) or "(raíz del archivo)"
    value = err.get("input")
    if kind == "missing":
        return f"{path}: falta; es obligatoria (vea el ejemplo config/mailflow.toml)"
    if kind == "extra_forbidden":
        return f"{path}: {_unknown_key(loc)}"
    if kind == "secret":
        return f"{path}: {ctx.get('message')}"
    if isinstance(error, ValueError):
        return f"{path}: {error}"
    return f"{path}: {_shown(value)} no es válido; se espera {_expected(kind, ctx)}{_example(loc)}"


def _example(loc: Sequence[Any]) -> str:
    """Return ' (p. ej. port = 993)' from the key's default value, when it has a simple one."""
    section = _section_at(loc[:-1])
    field = _field_named(section, loc[-1]) if section is not None and loc else None
    if field is None:
        return ""
    default = field.default
    if isinstance(default, time):
        default = f"{default:%H:%M}"
    if isinstance(default, bool | int | float | str) and default != "":
        return f" (p. ej. {field.alias or loc[-1]} = {_shown(default)})"
    return ""


def _expected(kind: str, ctx: Mapping[str, Any]) -> str:
    """Describe in Spanish the value a failed check wanted."""
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind in ("literal_error", "enum"):
        return "uno de " + str(ctx.get("expected", "")).replace("'", '"').replace(" or ", " o ")
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        return _PATTERNS.get(pattern, f"un texto de la forma {pattern}")
    limits = {
        "greater_than_equal": ("un número mayor o igual que", "ge"),
        "greater_than": ("un número mayor que", "gt"),
        "less_than_equal": ("un número menor o igual que", "le"),
        "less_than": ("un número menor que", "lt"),
    }
    if kind in limits:
        words, key = limits[kind]
        return f"{words} {ctx.get(key):g}"
    if kind in ("too_short", "string_too_short"):
        return f"al menos {ctx.get('min_length')} elemento(s) o caracteres"
    if kind in ("too_long", "string_too_long"):
        return f"como mucho {ctx.get('max_length')} elemento(s) o caracteres"
    return "otro valor (vea el ejemplo config/mailflow.toml)"


def _absolutize(settings: Settings, base: Path) -> Settings:
    """Resolve relative paths and SQLite files against the config file's folder."""
    store = settings.store
    url = store.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite://":
        url = prefix + str((base / url.removeprefix(prefix)).resolve())
    archive = store.archive_dir if store.archive_dir.is_absolute() else base / store.archive_dir
    paths = settings.paths
    return settings.model_copy(
        update={
            "store": store.model_copy(update={"url": url, "archive_dir": archive.resolve()}),
            "paths": paths.model_copy(
                update={
                    "procedures_dir": (base / paths.procedures_dir).resolve(),
                    "templates_dir": (base / paths.templates_dir).resolve(),
                    "report_templates_dir": (base / paths.report_templates_dir).resolve(),
                    "poai_file": (base / paths.poai_file).resolve(),
                }
            ),
        }
    )


def _poai_file(raw: Mapping[str, Any], base: Path) -> Path:
    """Return the POAI file the raw config names (``[paths] poai_file``), or the shipped one."""
    paths = raw.get("paths")
    named = paths.get("poai_file") if isinstance(paths, dict) else None
    if isinstance(named, str) and named:
        return base / named
    return Paths().poai_file


def _read_poai(path: Path) -> tuple[Any, list[str]]:
    """Read the POAI file; return its table and the problems of reading it."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), []
    except FileNotFoundError:
        found = (
            "no existe; copie config/poai.toml del código fuente junto al archivo de "
            "configuración, o quite la clave para usar el que viene con mailflow"
        )
    except OSError as exc:
        found = f"no se puede leer ({exc.strerror})"
    except tomllib.TOMLDecodeError as exc:
        found = f"no es TOML válido: {exc}"
    return None, [f"paths.poai_file: {path}: {found}"]


def parse_settings(
    raw: Mapping[str, Any], source: Path, env: Mapping[str, str], *, secrets: bool = True
) -> Settings:
    """Validate an already-parsed TOML mapping; raise ConfigError listing every problem.

    ``secrets=False`` (read-only commands) reads no password nor key: each stays an
    :class:`UnloadedSecret`. The POAI comes from its own file (``[paths] poai_file``)
    unless the mapping holds a ``[poai]`` table; problems in that file carry its name.
    """
    base = source.parent
    problems: list[str] = []
    settings: Settings | None = None
    poai_file: Path | None = None
    if "poai" not in raw:
        poai_file = _poai_file(raw, base)
        poai, problems = _read_poai(poai_file)
        raw = {**raw, "poai": poai} if poai is not None else raw
    try:
        settings = Settings.model_validate(
            {**raw, "source": source}, context={"env": env, "base": base, "secrets": secrets}
        )
    except ValidationError as exc:
        for error in exc.errors():
            problem = _format_error(error)
            if poai_file is not None and error["loc"][:1] == ("poai",):
                if "poai" not in raw:
                    continue  # the file could not be read: said above
                problem = f"{poai_file}: {problem.removeprefix('poai').lstrip('.: ')}"
            problems.append(problem)
    problems.extend(cross_check(raw))
    if problems or settings is None:
        raise ConfigError(str(source), problems)
    return _absolutize(settings, base)


def config_path(cli_value: str | None, env: Mapping[str, str]) -> Path:
    """Pick the config file: --config, else $MAILFLOW_CONFIG, else config/mailflow.toml."""
    if cli_value:
        return Path(cli_value)
    if env.get("MAILFLOW_CONFIG"):
        return Path(env["MAILFLOW_CONFIG"])
    return DEFAULT_CONFIG


def load_settings(
    path: Path, env: Mapping[str, str] | None = None, *, secrets: bool = True
) -> Settings:
    """Read and validate the config file at ``path`` (without secrets: see parse_settings)."""
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            str(path),
            [
                "el archivo no existe; indique --config RUTA o $MAILFLOW_CONFIG, o copie "
                "config/mailflow.toml del código fuente y edítelo"
            ],
        ) from None
    except OSError as exc:
        raise ConfigError(str(path), [f"no se puede leer ({_os_reason(exc)})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"no es TOML válido: {_toml_error(exc)}"]) from None
    return parse_settings(raw, path.resolve(), env, secrets=secrets)


def load_reply_key(path: Path, env: Mapping[str, str] | None = None) -> bytes | None:
    """Read ``[security] secret`` alone (the reply tokens' key); None when it cannot be read.

    For commands that verify tokens but send nothing (``explain``): the mail passwords
    are never read.
    """
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        section = SecuritySettings.model_validate(
            raw.get("security", {}),
            context={"env": env, "base": path.resolve().parent, "secrets": True},
        )
        return section.secret.get_secret_value().encode()
    except (OSError, tomllib.TOMLDecodeError, ValidationError, RuntimeError):
        return None


def _toml_error(exc: tomllib.TOMLDecodeError) -> str:
    """Say where the TOML breaks, in Spanish, keeping the parser's own words after it."""
    text = str(exc)
    found = re.search(r"\(at line (\d+), column (\d+)\)", text)
    if found is None:
        return text
    detail = text[: found.start()].strip()
    return f"línea {found[1]}, columna {found[2]} ({detail})"
