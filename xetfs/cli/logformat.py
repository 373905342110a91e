"""Log set-up of every command: ``--log-format text`` (default) or ``json``, one JSON object per line
(docs/architecture.md, "Logs")::

    {"time": "2026-01-02T03:04:05.678Z", "level": "INFO", "logger": "xetfs.fs.mount", "message": "mounted ..."}

plus ``"exception"`` (the formatted traceback) when a record carries one, ``"stack"`` with ``stack_info``, and
the fields a call passes with ``extra=`` (e.g. the server's access log: method, path, status, bytes,
duration_ms), which the text format leaves out.
In JSON mode Python warnings are logged too (logger ``py.warnings``), so stderr holds nothing else.
"""
from __future__ import annotations

import json
import logging
import time

FORMATS = ("text", "json")
# The attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = {*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages and tracebacks are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        obj: dict[str, object] = {"time": f"{stamp}.{int(record.msecs):03d}Z", "level": record.levelname,
                                  "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            obj["exception"] = record.exc_text
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in obj:
                obj[key] = value
        return json.dumps(obj, default=str)


def configure_logging(debug: bool, log_format: str = "text") -> None:
    """Root handler on stderr: DEBUG with ``--debug``, else WARNING (commands raise their own loggers); like
    ``logging.basicConfig``, nothing changes when the root logger has handlers already."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])
    if log_format == "json":
        logging.captureWarnings(True)
