"""What every python block of README.md and docs/ runs with (pytest-markdown-docs).

The blocks are run as written, as the reader would paste them, with two things of the
test run's own: dummy API keys in the environment, and each provider's transport
pointed at the example app's stub upstream (`example_app.stub_upstream`), served in
process. So `https://api.openai.com/v1/chat/completions` is answered by the stub, and
nothing leaves the machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

#: The variables the examples read their keys from.
KEYS = ("OPENAI_API_KEY", "VOYAGE_API_KEY", "ANTHROPIC_API_KEY", "COHERE_API_KEY")


@pytest.fixture(autouse=True)
def _docs_examples_call_the_stub(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """For a documentation block: dummy keys, and every named transport on the stub."""
    if request.node.get_closest_marker("markdown-docs") is None:
        yield
        return
    import httpx  # imported here, not at collection: coverage of httpool starts first

    from example_app.stub_upstream import create_stub_app
    from httpool import _clients

    for key in KEYS:
        monkeypatch.setenv(key, "sk-docs-example")
    stub = create_stub_app()
    make_transport = _clients.make_transport

    def to_stub(provider: Any) -> httpx.AsyncBaseTransport:
        if isinstance(provider.transport, str):  # "httpool", "httpx", "aiohttp"
            return httpx.ASGITransport(app=stub)
        return make_transport(provider)  # the block's own transport: a MockTransport...

    monkeypatch.setattr(_clients, "make_transport", to_stub)
    yield
