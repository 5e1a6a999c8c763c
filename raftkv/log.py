"""structlog setup: one event name plus key=value fields per line.

Production (stderr not a terminal, or ``RAFTKV_LOG_FORMAT=json``) writes one JSON object per
line, like etcd's zap logger; a terminal (or ``RAFTKV_LOG_FORMAT=console``) gets
``ts level event key=value ...``. Only events that matter are logged (leader changes,
elections, slow fsync/apply, snapshots, peer links): nothing per request.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

__all__ = ["setup_logging"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def setup_logging(level: str = "info", member: str | None = None) -> None:
    fmt = os.environ.get("RAFTKV_LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json")
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.processors.KeyValueRenderer(
            key_order=["ts", "level", "event"], drop_missing=True
        )
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    if member:
        structlog.contextvars.bind_contextvars(local=member)
    # aiohttp's own access log is per request: keep it off the hot path.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
