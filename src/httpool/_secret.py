"""`Secret`: a header value that never shows, and the redaction used in every repr and log."""

from __future__ import annotations

import logging
import re
import threading
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MASK", "Secret", "redact_text", "redact_url"]

MASK: Final = "***"

#: Query parameter names whose values are credentials.
_SECRET_PARAM = re.compile(
    r"^(?:.*[_-])?(?:key|apikey|token|secret|password|passwd|pwd|sig|signature|auth|"
    r"credential|credentials|access[_-]?token|client[_-]?secret)$",
    re.IGNORECASE,
)


class Secret:
    """A header value that never appears in a repr, str, log line, stats output or error.

    ```python
    key = httpool.Secret("Bearer sk-...")
    httpool.Provider("openai", base_url=..., headers={"Authorization": key})
    ```

    The real value is only read by httpool when it builds the client
    (`get_secret_value()`). Two secrets are equal when their values are.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):  # a runtime check for untyped callers
            msg = f"Secret(value) takes a str, got {type(value).__name__}"
            raise TypeError(msg)
        self._value = value
        _registry.add(value)

    def get_secret_value(self) -> str:
        """Return the real value. Only pass it to code that needs it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, format_spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> str | tuple[object, ...]:
        msg = "a httpool.Secret cannot be pickled"
        raise TypeError(msg)


class _SecretRegistry:
    """The values of every `Secret` made in this process, for the logging filter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        if len(value) < 4 or value in self._values:  # too short to redact safely
            return
        with self._lock:
            self._values.add(value)
            # Longest first, so "Bearer sk-1" is masked whole before "sk-1".
            alternatives = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, alternatives)))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(MASK, text)


_registry = _SecretRegistry()


def redact_text(text: str) -> str:
    """Mask every known `Secret` value that appears in `text`."""
    return _registry.redact(text)


def redact_url(url: object) -> str:
    """Show a URL with its user-info and credential-like query parameters masked."""
    parts = urlsplit(str(url))
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SECRET_PARAM.match(k) else v) for k, v in pairs], safe="*")
    return redact_text(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


class RedactingFilter(logging.Filter):
    """Mask `Secret` values in records of libraries that log header values (hpack)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _registry._pattern is None:
            return True
        message = record.getMessage()
        redacted = _registry.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


#: Loggers of the HTTP stack that log raw header values at DEBUG.
_HEADER_LOGGERS = ("hpack.hpack", "hpack.table", "h2.connection", "httpcore.http2")
_filter = RedactingFilter()


def install_log_redaction() -> None:
    """Attach the redacting filter to the loggers that can print header values."""
    for name in _HEADER_LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
