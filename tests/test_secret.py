"""`Secret` as a value, and the log filter of the HTTP/2 stack on records it did not plan
for: mapping arguments, lists of headers, buffers."""

from __future__ import annotations

import logging

import pytest

import httpool
from httpool._secret import RedactingFilter


def test_a_secret_takes_a_str_and_compares_by_its_value() -> None:
    """Equal secrets are equal and hash alike; a secret is never equal to its text."""
    with pytest.raises(TypeError, match=r"Secret\(value\) takes a str, got bytes"):
        httpool.Secret(b"sk-bytes")  # type: ignore[arg-type]
    assert httpool.Secret("sk-1") == httpool.Secret("sk-1")
    assert hash(httpool.Secret("sk-1")) == hash(httpool.Secret("sk-1"))
    assert httpool.Secret("sk-1") != httpool.Secret("sk-2")
    assert httpool.Secret("sk-1") != "sk-1"


def _record(msg: str, args: object) -> logging.LogRecord:
    return logging.LogRecord("hpack.hpack", logging.DEBUG, __file__, 1, msg, args, None)  # type: ignore[arg-type]


def test_mapping_arguments_keep_names_and_hide_values() -> None:
    """A record with mapping arguments: headers keep their names, values and header
    blocks are hidden, wherever they sit (in a list too)."""
    headers = [(b"authorization", b"Bearer sk-live-1234"), ("x-api-key", "key-5678")]
    record = _record("sent %(headers)s in %(block)s", {"headers": headers, "block": b"\x82\x86"})
    assert RedactingFilter().filter(record)
    message = record.getMessage()
    assert "sk-live-1234" not in message
    assert "key-5678" not in message
    assert "'authorization'" in message
    assert "'x-api-key'" in message
    assert "<2 bytes>" in message


def test_buffers_of_every_kind_become_their_length() -> None:
    """bytes, bytearray and memoryview arguments are shown as their length only."""
    record = _record("%s %s %s", (b"abc", bytearray(b"abcd"), memoryview(b"abcde")))
    RedactingFilter().filter(record)
    assert record.getMessage() == "<3 bytes> <4 bytes> <5 bytes>"
