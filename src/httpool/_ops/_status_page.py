"""The status page of `httpool.router()`: one static HTML file, served with a strict CSP."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from importlib.resources import files

from starlette.responses import HTMLResponse

__all__ = ["status_page_response"]

_BLOCK = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def _hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


@functools.cache
def _page() -> tuple[str, dict[str, str]]:
    """The page and its headers: only its own inline script and style may run."""
    html = files("httpool._ops").joinpath("static/status.html").read_text(encoding="utf-8")
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, source in _BLOCK.findall(html):
        hashes[kind].append(_hash(source))
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(hashes['script'])}",
            f"style-src {' '.join(hashes['style'])}",
            "connect-src 'self'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers = {
        "Content-Security-Policy": policy,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    return html, headers


def status_page_response() -> HTMLResponse:
    """The status page, whose script reads `stats` next to it every 1.5 s."""
    html, headers = _page()
    return HTMLResponse(html, headers=headers)
