"""structlog set-up: JSON lines with a Cloud Logging `severity` in production, colours locally."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from registry_common.settings import LogFormat, Settings

_SEVERITY = {"warn": "WARNING", "exception": "ERROR", "critical": "CRITICAL"}


def _add_severity(_: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    level = event_dict.get("level", method_name)
    event_dict["severity"] = _SEVERITY.get(level, str(level).upper())
    return event_dict


def configure_logging(settings: Settings) -> None:
    """Route structlog and the standard library's logging to stderr in the configured format."""
    level = logging.getLevelName(
        "WARNING" if settings.log_level.value == "WARN" else settings.log_level.value
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if settings.log_format is LogFormat.JSON:
        shared.append(_add_severity)
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())

    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log duplicates ours.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
