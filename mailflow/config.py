"""Load the TOML configuration into frozen, validated settings.

Every problem is collected and reported at once, each with its key path
(``roles.jefatura_ugs.members[0]``) and what to do about it, so an operator fixes a
config file in one round instead of one error per restart.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

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
    except EmailNotValidError as exc:
        raise ValueError(f'"{value}" is not a valid address ({exc})') from None
    return checked.normalized.lower()


Address = Annotated[str, AfterValidator(normalize_address)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _resolve_secret(data: Any, info: ValidationInfo, key: str) -> Any:
    """Replace ``key`` / ``key_env`` / ``key_file`` / ``key_credential`` by one secret value."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    given = [k for k in (key, f"{key}_env", f"{key}_file", f"{key}_credential") if k in data]
    if len(given) > 1:
        raise ValueError(f"set only one of {', '.join(given)}")
    context = info.context or {}
    env: Mapping[str, str] = context.get("env", {})
    base: Path = context.get("base", Path.cwd())
    if f"{key}_env" in data:
        name = str(data.pop(f"{key}_env"))
        if name not in env:
            raise ValueError(
                f"{key}_env names ${name}, which is not set: export it, or use {key}_file"
            )
        data[key] = env[name]
    elif f"{key}_credential" in data:
        # systemd's LoadCredential=NAME:PATH: the file NAME in $CREDENTIALS_DIRECTORY,
        # readable only by the service, whatever user it runs as.
        name = str(data.pop(f"{key}_credential"))
        folder = env.get("CREDENTIALS_DIRECTORY")
        if not folder:
            raise ValueError(
                f"{key}_credential needs $CREDENTIALS_DIRECTORY (set by systemd's "
                f"LoadCredential=); outside systemd use {key}_file"
            )
        path = Path(folder) / name
        try:
            data[key] = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(
                f"{key}_credential {name}: {path} cannot be read ({exc.strerror}); "
                f"check LoadCredential={name}:... in the unit"
            ) from None
    elif f"{key}_file" in data:
        path = base / str(data.pop(f"{key}_file"))
        try:
            data[key] = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"{key}_file {path} cannot be read ({exc.strerror})") from None
    return data


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
            raise ValueError(f'"{value}" is not a time zone name (e.g. "America/La_Paz")') from None
        return value

    @model_validator(mode="after")
    def _hours_in_order(self) -> Organization:
        if self.office_hours_start >= self.office_hours_end:
            raise ValueError("office_hours_start must be earlier than office_hours_end")
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
        raise ValueError(f"{path} cannot be read ({exc.strerror})") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return path


CaFile = Annotated[Path | None, AfterValidator(_check_ca_file)]


class Imap(_Section):
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
    poll_seconds: int = Field(60, ge=5, le=3600)
    idle_seconds: int = Field(540, ge=30, le=600)
    timeout_seconds: int = Field(60, ge=5, le=600)

    @model_validator(mode="before")
    @classmethod
    def _secret(cls, data: Any, info: ValidationInfo) -> Any:
        return _resolve_secret(data, info, "password")

    @model_validator(mode="after")
    def _login_complete(self) -> Imap:
        if self.auth == "password" and self.password is None:
            raise ValueError(
                'auth = "password" needs password, password_env or password_file '
                '(or set auth = "xoauth2" with an [oauth2] section)'
            )
        if self.auth == "xoauth2" and self.password is not None:
            raise ValueError('auth = "xoauth2" logs in with a token: remove the password')
        return self


class Smtp(_Section):
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

    @model_validator(mode="before")
    @classmethod
    def _secret(cls, data: Any, info: ValidationInfo) -> Any:
        return _resolve_secret(data, info, "password")

    @model_validator(mode="after")
    def _login_complete(self) -> Smtp:
        if self.auth == "xoauth2":
            if self.username is None:
                raise ValueError('auth = "xoauth2" needs username (the mailbox address)')
            if self.password is not None:
                raise ValueError('auth = "xoauth2" logs in with a token: remove the password')
        elif (self.username is None) != (self.password is None):
            raise ValueError("set both username and a password (or neither, for no login)")
        return self


def _token_url(value: str) -> str:
    """Accept https URLs, and http only to this machine (a local proxy or a test server)."""
    parts = urlsplit(value)
    local = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if (parts.scheme == "https" or (parts.scheme == "http" and local)) and parts.hostname:
        return value
    raise ValueError(
        f'"{value}" is not an https:// URL; the refresh token and client secret must not '
        "travel in clear (e.g. https://login.microsoftonline.com/TENANT/oauth2/v2.0/token)"
    )


class OAuth2(_Section):
    """The provider's token endpoint and this app's registration, for XOAUTH2 logins."""

    token_url: Annotated[str, AfterValidator(_token_url)]
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    refresh_token: SecretStr
    scope: str | None = None
    ca_file: CaFile = None
    timeout_seconds: int = Field(30, ge=5, le=300)

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any, info: ValidationInfo) -> Any:
        data = _resolve_secret(data, info, "client_secret")
        return _resolve_secret(data, info, "refresh_token")


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
                f"{value:g} is out of range: give more than 0 and at most {MAX_ATTACH_MB} "
                "(MB of files per mail; 15 keeps mails under the 25 MB that Gmail and "
                "Exchange Online accept)"
            )
        return value

    @property
    def attach_max_bytes(self) -> int:
        """Return the bound in bytes."""
        return int(self.attach_max_mb * 1024 * 1024)


class Store(_Section):
    url: str = "sqlite:///store/mailflow.db"
    archive_dir: Path = Path("store/archive")


class SubstituteEntry(_Section):
    address: Address
    replaces: Address | None = None
    start: date = Field(alias="from")
    until: date

    @model_validator(mode="after")
    def _in_order(self) -> SubstituteEntry:
        if self.until < self.start:
            raise ValueError("until must not be earlier than from")
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


class SecuritySettings(_Section):
    secret: SecretStr = Field(min_length=16)
    trusted_authserv_id: str | None = None
    # A privileged opening (``directa``, ``eliminacion``) the trusted server does not vouch
    # for is held until its sender answers CONFIRMO to a tokened mail (docs/security.md).
    confirm_openings: bool = True
    confirm_days: int = Field(3, ge=1, le=30)  # business days the confirmation stays valid

    @model_validator(mode="before")
    @classmethod
    def _secret(cls, data: Any, info: ValidationInfo) -> Any:
        return _resolve_secret(data, info, "secret")


Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class Schedule(_Section):
    reminder_time: time = time(9, 0)
    reminders_before_escalation: int = Field(2, ge=1, le=20)
    digest_weekday: Weekday = "monday"
    digest_time: time = time(8, 0)
    digest_to: tuple[str, ...] = ("jefatura_ugs", "direccion_ejecutiva")
    cronograma_default_days: int = Field(5, ge=1, le=90)


class Paths(_Section):
    procedures_dir: Path = PROJECT_ROOT / "config" / "procedures"
    templates_dir: Path = PROJECT_ROOT / "templates" / "mail"
    report_templates_dir: Path = PROJECT_ROOT / "templates" / "report"


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
            raise ValueError(f'"{value}" is not HOST:PORT, e.g. "127.0.0.1:9464"')
        if host not in ("127.0.0.1", "localhost", "::1", "[::1]") and not host.startswith("127."):
            raise ValueError(
                f'"{value}": the endpoint has no authentication; listen on 127.0.0.1 and '
                "let a local Prometheus or a proxy with TLS reach it"
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


# Seeded from the POAI 2023 of the content technician (functions, results, sources of
# verification and weights as written there). The POAI gives no quantities: the targets
# are examples, to be set from the unit's POA.
DEFAULT_POAI_FUNCTIONS = (
    PoaiFunction(
        id="generacion",
        name="Generación de contenidos para las redes sociales de la institución",
        result="Implementar estrategias creativas comunicacionales respecto a generación "
        "de contenidos digitales",
        verification="Informe y/o registro fotográfico, y/o capturas de pantalla",
        weight=30,
        target=120,
        actions=("ENTREGO",),
    ),
    PoaiFunction(
        id="difusion",
        name="Difusión y viralización de contenidos institucionales en redes sociales",
        result="Registro y/o difusión de los productos o materiales digitales",
        verification="Archivo de productos visuales o audiovisuales elaborados y/o "
        "difundidos (enlaces y/o capturas de pantalla)",
        weight=20,
        target=240,
        actions=("PUBLICADO",),
    ),
    PoaiFunction(
        id="monitoreo",
        name="Monitoreo de información coyuntural y otros que se convenga en plataformas digitales",
        result="Diseño y difusión de productos de comunicación",
        verification="Archivo de productos visuales o audiovisuales elaborados y/o "
        "difundidos (enlaces y/o capturas de pantalla)",
        weight=20,
        target=60,
        product_types=(ProductType.POST, ProductType.FOTOGRAFIA),
        procedures=("directa",),
    ),
    PoaiFunction(
        id="rutinaria_contenidos",
        name="Generación de contenidos para las redes sociales",
        kind="rutinaria",
        result="Registro y/o difusión de los productos o materiales",
        verification="Nº de productos diseñados y difundidos",
        weight=20,
        target=120,
    ),
    PoaiFunction(
        id="encomendadas",
        name="Realizar las funciones que sean encomendadas por sus superiores, en el ámbito "
        "de su competencia",
        kind="rutinaria",
        result="A requerimiento",
        verification="Nº de productos diseñados y difundidos",
        weight=10,
        target=24,
        procedures=("promocion", "imagenes_diseno", "informacion_especifica"),
    ),
)


class Poai(_Section):
    """Describe the individual annual plan the POAI report measures products against."""

    position: str = "Técnico en generación y difusión de contenidos para redes sociales"
    default_product_type: ProductType = ProductType.POST
    functions: tuple[PoaiFunction, ...] = DEFAULT_POAI_FUNCTIONS

    @model_validator(mode="after")
    def _consistent(self) -> Poai:
        ids = [f.id for f in self.functions]
        if len(set(ids)) != len(ids):
            raise ValueError("functions: every id must be different")
        total = sum(f.weight for f in self.functions)
        if self.functions and abs(total - 100) > 0.01:
            raise ValueError(f"functions: the weights add up to {total:g}, not 100")
        return self


class Settings(_Section):
    """The whole validated configuration; built once at start and never changed."""

    source: Path
    organization: Organization
    imap: Imap
    smtp: Smtp
    oauth2: OAuth2 | None = None
    mail: MailSettings = MailSettings()
    store: Store = Store()
    roles: dict[str, RoleEntry]
    units: dict[str, UnitEntry] = {}
    security: SecuritySettings
    schedule: Schedule = Schedule()
    paths: Paths = Paths()
    logging: Logging = Logging()
    metrics: Metrics = Metrics()
    poai: Poai = Poai()

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
                f"roles.{role_id}: unknown role id; use one of {', '.join(STATIC_ROLES)}"
            )
        if not isinstance(entry, dict):
            continue
        superior = entry.get("superior")
        if superior is not None and superior not in roles:
            problems.append(f'roles.{role_id}.superior: "{superior}" is not a configured role')
        if superior == role_id:
            problems.append(f"roles.{role_id}.superior: a role cannot be its own superior")
        if not entry.get("members") and superior is None:
            problems.append(
                f"roles.{role_id}: the role is vacant (no members) and has no superior "
                "to act for it; add members or a superior"
            )
    for role_id in STATIC_ROLES:
        if role_id not in roles:
            problems.append(f"roles.{role_id}: missing; every procedure role needs a section")
    for name in ("imap", "smtp"):
        section = raw.get(name)
        if isinstance(section, dict) and section.get("auth") == "xoauth2" and "oauth2" not in raw:
            problems.append(
                f'{name}.auth: "xoauth2" needs an [oauth2] section (token_url, client_id, '
                "refresh_token; see docs/providers.md)"
            )
    schedule = raw.get("schedule") if isinstance(raw.get("schedule"), dict) else {}
    assert isinstance(schedule, dict)
    for i, role_id in enumerate(schedule.get("digest_to", ())):
        if role_id not in known:
            problems.append(f'schedule.digest_to[{i}]: "{role_id}" is not a configured role')
    return problems


def _format_error(err: Mapping[str, Any]) -> str:
    path = ""
    for part in err["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        message = "missing; this key is required (see config/mailflow.toml for an example)"
    elif err["type"] == "extra_forbidden":
        message = "unknown key; check its spelling against config/mailflow.toml"
    return f"{path or '(top level)'}: {message}"


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
                }
            ),
        }
    )


def parse_settings(raw: Mapping[str, Any], source: Path, env: Mapping[str, str]) -> Settings:
    """Validate an already-parsed TOML mapping; raise ConfigError listing every problem."""
    base = source.parent
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(
            {**raw, "source": source}, context={"env": env, "base": base}
        )
    except ValidationError as exc:
        problems.extend(_format_error(e) for e in exc.errors())
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


def load_settings(path: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the config file at ``path``."""
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            str(path),
            [
                "file not found; pass --config PATH, set $MAILFLOW_CONFIG, or copy "
                "config/mailflow.toml from the source tree and edit it"
            ],
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
    return parse_settings(raw, path.resolve(), env)
