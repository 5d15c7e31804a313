"""Process configuration, read once from environment variables at start."""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ConfigError(Exception):
    """A configuration value is missing or invalid; `variable` names the environment variable."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


class AuthMode(StrEnum):
    DEPLOYS = "deploys"
    STATIC = "static"
    NONE = "none"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    WARNING = "WARNING"
    ERROR = "ERROR"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> timedelta:
    """Parse `90`, `90s`, `15m`, `24h` or `1d` (a bare number is seconds) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError("expected a duration such as 30s, 15m, 24h or 1d")
    number, unit = match.groups()
    return timedelta(seconds=float(number) * _UNIT_SECONDS[unit])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNIT_BYTES = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
}


def parse_size(value: Any) -> int:
    """Parse `1048576`, `500MB` or `100GiB` (a bare number is bytes) into bytes."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError("expected a size such as 500MB, 100GiB or a number of bytes")
    number, unit = match.groups()
    return int(number) * _UNIT_BYTES[unit.upper() if unit else None]


Size = Annotated[int, BeforeValidator(parse_size), Field(ge=1)]


def parse_networks(value: Any) -> tuple[IPNetwork, ...]:
    """Parse a comma-separated list of CIDRs (or single addresses) into networks."""
    if isinstance(value, tuple):
        return value
    entries = [entry.strip() for entry in str(value or "").split(",") if entry.strip()]
    try:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)
    except ValueError as exc:
        raise ValueError(f"expected comma-separated CIDRs such as 35.191.0.0/16: {exc}") from None


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# NoDecode: the variable is a comma-separated list, not JSON.
Networks = Annotated[tuple[IPNetwork, ...], NoDecode, BeforeValidator(parse_networks)]


def is_loopback_host(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Every setting of the three services; each field reads the upper-case variable of its name."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    db_url: str | None = None
    db_pool_max_size: int = Field(default=10, ge=1)
    bucket_name: str | None = None
    storage_path: Path | None = None
    host: str = "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    port: int = Field(default=8080, ge=0, le=65535)
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    log_level: LogLevel = LogLevel.INFO
    log_format: LogFormat = LogFormat.JSON
    internal_secret: str | None = None
    auth_mode: AuthMode = AuthMode.DEPLOYS
    auth_api_url: str = "https://api.deploys.app"
    auth_cache_ttl: Duration = timedelta(seconds=30)
    auth_users: str | None = None
    token_secret: str | None = None
    token_ttl: Duration = timedelta(minutes=5)
    public_url: str | None = None
    cdn_domain: str | None = None
    cdn_signing_key_name: str | None = None
    cdn_signing_key: SecretStr | None = None
    cdn_previous_signing_key_name: str | None = None
    cdn_previous_signing_key: SecretStr | None = None
    cdn_url_ttl: Duration = timedelta(minutes=10)
    trusted_proxies: Networks = ()
    pubsub_subscription: str | None = None
    gc_grace_period: Duration = timedelta(days=1)
    upload_expiry: Duration = timedelta(days=1)
    upload_max_age: Duration = timedelta(days=7)
    upload_sessions_per_project: int = Field(default=10_000, ge=1)
    upload_bytes_per_project: Size = 100 * 1024**3
    jobs_interval: Duration = timedelta(days=1)
    web_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    shutdown_timeout: Duration = timedelta(seconds=30)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("db_url")
    @classmethod
    def _check_db_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("postgres", "postgresql") or not (parts.netloc or parts.query):
            raise ValueError("expected a URL such as postgres://user:pass@host:5432/db")
        return value

    @field_validator("cdn_domain")
    @classmethod
    def _check_domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _DOMAIN.match(value):
            raise ValueError("expected a host name such as cdn.registry.example.com")
        return value.lower()

    @field_validator("auth_api_url", "public_url")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected an http(s) URL")
        return value.rstrip("/")

    def require_db_url(self) -> str:
        """The database URL, or a ConfigError when it is not set."""
        if not self.db_url:
            raise ConfigError("DB_URL", "required (a PostgreSQL connection URL)")
        return self.db_url

    def check_storage(self) -> None:
        """Raise ConfigError unless a storage backend is configured."""
        if self.bucket_name is None and self.storage_path is None:
            raise ConfigError("STORAGE_PATH", "set STORAGE_PATH (filesystem) or BUCKET_NAME (GCS)")

    def check_listeners(self) -> None:
        """Refuse AUTH_MODE=none unless every listener is bound to loopback."""
        if self.auth_mode is AuthMode.NONE and not is_loopback_host(self.host):
            raise ConfigError("AUTH_MODE", "'none' is only allowed when HOST is a loopback address")


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (`overrides` win); ConfigError on bad input."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "configuration"
        raise ConfigError(field.upper(), _short(error["msg"])) from None
    settings.check_listeners()
    return settings


def _short(message: str) -> str:
    return message.removeprefix("Value error, ")
