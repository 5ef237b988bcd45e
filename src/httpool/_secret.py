"""`Secret`: a header value that never shows, and the redaction used in every repr and log."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
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


#: hpack's DEBUG messages (their format strings) and which of their arguments is an
#: encoded header block, a header value, or a header. In any other record of those
#: loggers every bytes argument is replaced by its length.
_BLOCK, _VALUE, _HEADER = range(3)
_HPACK_ARGS: Final[dict[str, dict[int, int]]] = {
    "Encoded header block to %s": {0: _BLOCK},
    "Decoding %s": {0: _BLOCK},
    "Adding %s=%s to the header table, sensitive:%s, huffman:%s": {1: _VALUE},
    "Evicting %s: %s from the header table": {1: _VALUE},
    "Decoded %s, consumed %d": {0: _HEADER},
    "Decoded %s, total consumed %d bytes, indexed %s": {0: _HEADER},
}
_PAIR = 2


def _hidden(value: object, kind: int = _BLOCK) -> object:
    """`value` without what could carry a credential: a header block becomes its length,
    a header value `***`, a `(name, value)` header keeps its name."""
    if kind == _VALUE:
        return MASK
    if isinstance(value, tuple) and len(value) == _PAIR and isinstance(value[0], bytes | str):
        name = value[0].decode("latin-1") if isinstance(value[0], bytes) else value[0]
        return f"({name!r}, {MASK!r})"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, list | tuple):
        return [_hidden(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """Hide header values and header blocks in the records of the HTTP/2 stack.

    hpack logs every header it encodes or decodes at DEBUG, as text and as the encoded
    block (Huffman-coded bytes that a decoder turns back into the credential). In the
    records of those loggers every header value becomes `***` and every block (any
    bytes) its length; header names stay. Known `Secret` values are masked in the rest.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            known = _HPACK_ARGS.get(record.msg) if isinstance(record.msg, str) else None
            if known is None:
                record.args = tuple(_hidden(arg) for arg in args)
            else:
                record.args = tuple(
                    _hidden(arg, known[i]) if i in known else arg for i, arg in enumerate(args)
                )
        elif isinstance(args, Mapping) and args:
            record.args = {key: _hidden(value) for key, value in args.items()}
        if _registry._pattern is not None:
            message = record.getMessage()
            redacted = _registry.redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


#: Loggers of the HTTP stack that log header values or header blocks at DEBUG.
_HEADER_LOGGERS = (
    "hpack.hpack",
    "hpack.table",
    "hpack",
    "h2.connection",
    "h2.stream",
    "h2",
    "httpcore.http2",
    "httpcore.http11",
)
_filter = RedactingFilter()


def install_log_redaction() -> None:
    """Attach the redacting filter to the loggers that can print header values."""
    for name in _HEADER_LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
