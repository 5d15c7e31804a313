"""What the two migration commands share: arguments, configuration, logging, exit codes.

Exit codes: 0 when every item was migrated or skipped, 1 when an item failed or the run
stopped on an error, 2 for a configuration error (nothing was done).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import structlog
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from registry_common.logging import configure_logging
from registry_common.settings import ConfigError, LogFormat, Settings, load_settings
from registry_tools.migrate.progress import MigrationSummary

EXIT_FAILED = 1
EXIT_CONFIG = 2

ConfigT = TypeVar("ConfigT", bound=BaseSettings)
log = structlog.get_logger("registry.migrate")


def parse_arguments(command: str, description: str, argv: Sequence[str] | None) -> bool:
    """Parse the command line (only `--dry-run`); whether this is a dry run."""
    parser = argparse.ArgumentParser(
        prog=command,
        description=description,
        epilog="Configuration comes from environment variables; see README.md, "
        "'Migrating from Cloudflare'.",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read everything and report what would be copied, without writing anything",
    )
    arguments = parser.parse_args(argv)
    return bool(arguments.dry_run)


def load_config(model: type[ConfigT], **overrides: Any) -> ConfigT:
    """Read a migration configuration from the environment; ConfigError names a bad variable."""
    try:
        return model(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = str(error["loc"][0]).upper() if error["loc"] else model.__name__
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "required"
        raise ConfigError(variable, message) from None


def check_http_url(value: str) -> str:
    """An http(s) URL without a trailing slash, or ValueError."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http(s) URL")
    return value.rstrip("/")


def load_registry_settings() -> Settings:
    """The registry's own settings (DB_URL, storage, logging); console logs on a terminal
    unless LOG_FORMAT says otherwise."""
    overrides: dict[str, Any] = {}
    if "LOG_FORMAT" not in os.environ and sys.stderr.isatty():
        overrides["log_format"] = LogFormat.CONSOLE
    return load_settings(**overrides)


def run_command(
    command: str,
    settings: Settings,
    summary: MigrationSummary,
    migration: Callable[[], Coroutine[Any, Any, None]],
) -> NoReturn:
    """Run `migration`, print `summary` to stdout, and exit with the code the module doc says."""
    configure_logging(settings)
    code = 0
    try:
        asyncio.run(migration())
    except KeyboardInterrupt:
        summary.stopped = True
        log.error("migration_interrupted")
        code = EXIT_FAILED
    except Exception as exc:
        # The run stopped; what it did so far stays and a re-run picks up from there.
        summary.stopped = True
        log.error("migration_stopped", error=f"{type(exc).__name__}: {exc}")
        log.debug("migration_stopped_traceback", exc_info=True)
        print(f"{command}: stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = EXIT_FAILED
    print(summary.render(), flush=True)
    if summary.failed:
        code = EXIT_FAILED
    sys.exit(code)


def exit_on_config_error(command: str, error: ConfigError) -> NoReturn:
    """Report a configuration error and exit with EXIT_CONFIG."""
    print(f"{command}: configuration error: {error}", file=sys.stderr)
    sys.exit(EXIT_CONFIG)
