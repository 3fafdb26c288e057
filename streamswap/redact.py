"""Credentials never shown: one function that takes them out of anything meant for a person or a
file (logs, error lines, progress, `--json` summaries, metrics, cluster reports).

`redact_url(text)` finds every URL in `text` (or `text` is one URL) and replaces
- its user information (`rtsp://admin:PASSWORD@cam/` -> `rtsp://***@cam/`; a user name alone can
  be a token too, so it goes as well), and
- the value of every token-like query or fragment parameter (`?token=...`, `&X-Amz-Signature=...`,
  `access_token`, `api_key`, `password`, `sig`, ...; names compared case-insensitively, also with
  a prefix such as `session_token` or `X-Amz-Security-Token`) with `***`.

Only what is shown is redacted: the job keeps the real URL to connect with.
`redact_data(obj)` applies it to every string in a JSON-able structure;
`install_log_redaction()` (called by the CLI's `main`) applies it to every log record of the
process, its traceback included.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

#: parameter names whose values are secrets (compared case-insensitively), alone or as the last
#: word of a longer name (`session_token`, `X-Amz-Security-Token`, `client-secret`)
SECRET_WORDS = (
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "key",
    "apikey",
    "api_key",
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "secret",
    "signature",
    "sig",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "jwt",
    "session",
    "sessionid",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
)
_WORDS = "|".join(sorted((re.escape(w) for w in SECRET_WORDS), key=len, reverse=True))

# scheme://userinfo@ : userinfo runs to the last '@' before the host (a password may hold '@'),
# never across whitespace, a path, a query or a quote
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@\"'<>\\]*(?:@[^\s/?#@\"'<>\\]*)*@")
# ?name=value, &name=value, ;name=value, #name=value
_PARAM = re.compile(rf"(?i)([?&;#](?:[\w.\-]*[_.\-])?(?:{_WORDS}))=([^&;#\s\"'<>]*)")


def redact_url(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***` (see the module docstring).
    Anything that is not a str is returned unchanged."""
    if not isinstance(text, str) or ("@" not in text and "=" not in text):
        return text
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    return _PARAM.sub(_mask_value, text)


def _mask_value(m: re.Match[str]) -> str:
    value = m.group(2)
    if not value:
        return m.group(0)
    kept = value[len(value.rstrip(":,.)]}")) :]  # punctuation after the URL belongs to the sentence
    return f"{m.group(1)}={MASK}{kept}"


def redact_data(obj: Any) -> Any:
    """A copy of a JSON-able structure (dicts, lists, tuples, strings, numbers) with every string,
    keys included, passed through `redact_url`."""
    if isinstance(obj, str):
        return redact_url(obj)
    if isinstance(obj, dict):
        return {redact_url(k) if isinstance(k, str) else k: redact_data(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_data(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(redact_data(v) for v in obj)
    return obj


class RedactFilter(logging.Filter):
    """A logging filter that rewrites a record's message (arguments merged in) and its traceback
    text through `redact_url`; it never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: logging reports it at emit time
            return True
        clean = redact_url(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_url(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_url(record.stack_info)
        return True


_FILTER = RedactFilter()


def install_log_redaction() -> None:
    """Pass every log record of this process through `RedactFilter` as it is made, whichever
    logger and handler it goes to (handlers added later included). Idempotent."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_streamswap_redacts", False):
        return

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        _FILTER.filter(record)
        return record

    make.__dict__["_streamswap_redacts"] = True  # a function attribute, read back with getattr above
    logging.setLogRecordFactory(make)


__all__ = ["MASK", "SECRET_WORDS", "RedactFilter", "install_log_redaction", "redact_data", "redact_url"]
