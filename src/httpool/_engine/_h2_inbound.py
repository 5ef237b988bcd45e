"""The checks of a received HTTP/2 response header block, done by httpool instead of h2.

RFC 9113 §8.2 and §8.3 say what a well-formed response header block is; h2 checks it
when `validate_inbound_headers` is on, with a chain of generators that look at each
byte of each field in Python: about 6 % of an HTTP/2 request's client time in
`bench.inmemory`. `problem()` makes the same checks a response needs with two regular
expressions per field, and `tests/engine/test_http2_inbound.py` holds it to h2's own
verdict on the same header blocks (hypothesis), h2 with validation on being the
reference. It is stricter in one place: `:status` must be three digits from 100 to 599
(h2 takes any value; `int()` of a malformed one would fail later, without a clear error).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["problem"]

#: A field name (§8.2.1): no byte 0x00-0x20, 0x41-0x5a (upper case) or 0x7f-0xff, no
#: colon but a pseudo-header's leading one.
_NAME: Final = re.compile(rb":?[\x21-\x39\x3b-\x40\x5b-\x7e]+")
#: A field value (§8.2.1): no NUL, CR or LF, and no SP or HTAB at either end.
_VALUE: Final = re.compile(rb"(?:[^\x00\n\r\t ](?:[^\x00\n\r]*[^\x00\n\r\t ])?)?")
#: Connection-specific fields (§8.2.2), which HTTP/2 forbids.
_CONNECTION: Final = frozenset(
    (b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade")
)
_STATUS: Final = re.compile(rb"[1-5][0-9][0-9]")


def problem(  # noqa: PLR0911 (one return per kind of problem)
    fields: list[tuple[bytes, bytes]], *, trailers: bool = False
) -> str | None:
    """What makes a received response header block (or trailer block) malformed, named
    by field name only (a value may hold a secret), or `None` when it is well-formed."""
    status = None
    regular = False
    for name, value in fields:
        if _NAME.fullmatch(name) is None:
            return "a field name with a character HTTP/2 forbids (or none)"
        if _VALUE.fullmatch(value) is None:
            return f"the value of {name.decode('ascii')!r} has a forbidden character or space"
        if name[0] == 0x3A:  # a pseudo-header field
            if trailers or regular or name != b":status" or status is not None:
                return f"pseudo-header field {name.decode('ascii')!r} out of place"
            status = value
        else:
            regular = True
            if name in _CONNECTION:
                return f"connection-specific field {name.decode('ascii')!r}"
            if name == b"te" and value.lower() != b"trailers":
                return "a 'te' field other than 'trailers'"
    if trailers:
        return None
    if status is None:
        return "no ':status'"
    if _STATUS.fullmatch(status) is None:
        return "a ':status' that is not a three-digit status code"
    return None
