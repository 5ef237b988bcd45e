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
    try:
        import prometheus_client
    except ImportError:
        pass
    else:  # a block that registers a collector does so in a registry of its own
        monkeypatch.setattr(prometheus_client, "REGISTRY", prometheus_client.CollectorRegistry())
    yield


@pytest.fixture
def page_files(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """For a block marked `fixture:page_files`: what its page shows around it, set up.

    Every fence of the page with a `title="<file name>"` (and not Python) is written to
    a temporary directory, which becomes the working directory; every `export NAME=value`
    line of the page's `bash` fences is set in the environment. So the block runs on
    the files and variables the reader sees, not on copies kept here.
    """
    import re
    import shlex

    from markdown_it import MarkdownIt

    page = request.node.path.read_text(encoding="utf-8")
    for token in MarkdownIt("commonmark").parse(page):
        if token.type != "fence":
            continue
        info = token.info.strip("{} ")
        title = re.search(r'title="([^"]+)"', info)
        if title and not info.lstrip(".").startswith("python"):
            (tmp_path / title.group(1)).write_text(token.content, encoding="utf-8")
        if info.split()[:1] == ["bash"]:
            for line in token.content.splitlines():
                if line.startswith("export "):
                    name, _, value = line.removeprefix("export ").partition("=")
                    monkeypatch.setenv(name, shlex.split(value)[0] if value else "")
    monkeypatch.chdir(tmp_path)
