"""Logging: structlog over the standard library, JSON in production, readable in a terminal.

Every line logged while a call's tasks run carries that call's ``session`` id: the id is
bound in a context variable before the call's tasks (ours and aiortc's) are created, and
tasks inherit the context they were created in.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["bind_session", "configure_logging", "get_logger"]


def configure_logging(fmt: str = "console", level: int | str = logging.INFO) -> None:
    """Route structlog and stdlib logging through one formatter (``console`` or ``json``)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aioice", "aiortc", "bm25s", "numba", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def bind_session(session_id: str) -> None:
    """Tag every log line of the current context (and tasks created from it) with the call."""
    structlog.contextvars.bind_contextvars(session=session_id)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
