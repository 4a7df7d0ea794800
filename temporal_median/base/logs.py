"""Structured JSON logs on stdout, one object per line, as Cloud Logging parses them."""

from __future__ import annotations

import json
import logging
import sys

from temporal_median.base.settings import get_settings

_SEVERITY = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL"}
_FIELDS = ("job_id", "tile", "function", "attempt", "message_id", "seconds", "error", "code")


class JsonFormatter(logging.Formatter):
    """Format a record as {"severity", "message", job_id, tile, ...} JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"severity": _SEVERITY.get(record.levelname, "DEFAULT"), "message": record.getMessage()}
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value if isinstance(value, (int, float, bool)) else str(value)
        extra = getattr(record, "fields", None)
        if extra:
            entry.update(extra)
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        entry["logger"] = record.name
        return json.dumps(entry, default=str)


def get_logger(name: str = "temporal_median", level: str | None = None) -> logging.Logger:
    """A logger writing JSON lines to stdout; configured once per process.

    ``level`` defaults to TM_LOG_LEVEL (temporal_median.base.settings).
    """
    if level is None:
        level = get_settings().log_level
    logger = logging.getLogger(name)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    return logger
