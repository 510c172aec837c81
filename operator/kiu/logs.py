"""Log lines of every ``kiu`` process: text or JSON, with the id of the call they are about.

The gateway sets :data:`request_id` while it answers a call (the id it returns as
``x-amzn-RequestId``); every line logged meanwhile, by any module, carries it, so
the id a client reports finds the lines about its call.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

#: The id of the call being answered in this context, if any.
request_id: ContextVar[str | None] = ContextVar("kiu_request_id", default=None)

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} request_id={rid}" if rid else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message and, when
    set, request_id and the exception's traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if rid := getattr(record, "request_id", None):
            entry["request_id"] = rid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(*, level: str, format: str) -> None:
    """Send every logger's records to stderr in ``format`` (``text`` or ``json``)."""
    handler = logging.StreamHandler()
    handler.addFilter(_RequestId())
    handler.setFormatter(JsonFormatter() if format == "json" else _Text(_TEXT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
