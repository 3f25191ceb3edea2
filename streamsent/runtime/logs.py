"""How `streamsent run` logs: JSON lines for machines (not a terminal), readable lines for people.

In a container or under a supervisor stderr is not a terminal, and log shippers want one JSON object per line;
on a terminal a person reads the lines (above the live dashboard, when it is on).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["JsonLinesFormatter", "configure_logging"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601, UTC), level, logger, message, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False, default=str)


def configure_logging(mode: Literal["json", "text", "rich"], console: Any = None, level: int = logging.INFO) -> None:
    """Route the root logger to stderr as JSON lines or text, or (`rich`) to a rich Console above a live display."""
    if mode == "rich":
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))  # RichHandler shows time and level
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLinesFormatter() if mode == "json" else logging.Formatter(_TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])  # a no-op where logging is set up already (tests)
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python narrates every connection at INFO
