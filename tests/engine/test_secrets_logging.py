"""No credential can be recovered from DEBUG logs of an HTTP/2 request, in any encoding.

A pool sends requests with a `Secret` header and with basic auth over HTTP/2 (granian
over TLS) while every logger records at DEBUG. Every record (its message, its template
and its arguments, as a structured handler would keep them) is searched for each
credential raw, in hex, in base64 and Huffman-coded, and every bytes literal found in
a record is fed to `hpack.Decoder` as a header block.
"""

from __future__ import annotations

import ast
import base64
import logging
import re
from typing import Any

import hpack
import pytest
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

import httpool

from .conftest import client_context

pytestmark = pytest.mark.anyio

TOKEN = "sk-live-9f8e7d6c5b4a39281706"
PASSWORD = "pw-0a1b2c3d4e5f60718293"
USER = "svc-user"
BYTES_LITERAL = re.compile(r"""b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*\"""")


def _forms(secret: bytes) -> list[str]:
    """How `secret` may show in a log line: raw, hex, base64, Huffman-coded (as bytes or hex)."""
    huffman = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(secret)
    shown = [secret, huffman]
    forms = [repr(b)[2:-1] for b in shown] + [b.hex() for b in shown]
    forms += [base64.b64encode(secret).decode(), secret.decode()]
    return forms


def _record_texts(record: logging.LogRecord) -> list[str]:
    texts = [record.getMessage(), str(record.msg)]
    args: Any = record.args
    if isinstance(args, dict):
        args = tuple(args.values())
    for arg in args or ():
        texts += [repr(arg), str(arg)]
        if isinstance(arg, bytes | bytearray):
            texts.append(bytes(arg).hex())
    return texts


def _decoded_blocks(text: str) -> list[bytes]:
    """Every bytes literal in `text`, and what hpack decodes from each (when it can)."""
    found: list[bytes] = []
    for literal in BYTES_LITERAL.findall(text):
        try:
            block = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            continue
        found.append(block)
        try:
            headers = hpack.Decoder().decode(block, raw=True)
        except Exception:
            continue
        found += [value for _, value in headers]
    return found


async def test_no_credential_can_be_recovered_from_http2_debug_logs(
    granian_h2: str, tls: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG records of hpack and h2 hide header values and header blocks of HTTP/2 requests."""
    context = client_context(tls)
    providers = [
        httpool.Provider(
            "bearer",
            base_url=granian_h2,
            verify=context,
            headers={"Authorization": httpool.Secret(f"Bearer {TOKEN}")},
        ),
        httpool.Provider(
            "basic", base_url=granian_h2, verify=context, auth=(USER, httpool.Secret(PASSWORD))
        ),
    ]
    with caplog.at_level(logging.DEBUG):
        async with httpool.ClientPool(*providers) as pool:
            for name in ("bearer", "basic"):
                for _ in range(2):  # the second request uses hpack's dynamic table
                    response = await pool.client(name).get("/")
                    assert response.json()["http_version"] == "2"
    hpack_records = [r for r in caplog.records if r.name.startswith("hpack")]
    assert any("header block" in r.getMessage() for r in hpack_records), "no hpack block logged"
    secrets = [
        TOKEN.encode(),
        f"Bearer {TOKEN}".encode(),
        PASSWORD.encode(),
        f"{USER}:{PASSWORD}".encode(),
        b"Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()),
    ]
    forms = [form for secret in secrets for form in _forms(secret)]
    for record in caplog.records:
        for text in _record_texts(record):
            for form in forms:
                assert form not in text, (record.name, record.msg)
            for blob in _decoded_blocks(text):
                for secret in secrets:
                    assert secret not in blob, (record.name, record.msg)
