"""Keeping tokens out of logs: a logging filter that scrubs credentials from records.

What counts as a credential is :func:`callcost.web.access.redact`'s to say; this module
puts it on websockets' own loggers (its debug log prints every request line and header)
and, under ``callcost gateway``, on every handler of the process.
"""

from __future__ import annotations

import logging

from callcost.web.access import redact


class RedactTokens(logging.Filter):
    """Scrubs credentials (:func:`callcost.web.access.redact`) from a log record's
    message and traceback: websockets' debug log prints every request line and header,
    and an exception's text may quote a header."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            clean = redact(text)
            if clean != text:
                record.exc_info, record.exc_text = None, clean
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_redaction(target: logging.Logger | logging.Handler) -> None:
    """Add a :class:`RedactTokens` to a logger (its own records) or a handler (every
    record it writes), once."""
    if not any(isinstance(f, RedactTokens) for f in target.filters):
        target.addFilter(RedactTokens())
