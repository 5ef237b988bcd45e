"""httpool's clients with other libraries: OpenTelemetry tracing and the OpenAI SDK."""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations.

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import httpx
import openai
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import httpool
from httpool.testing import assert_no_leaks

from .servers import serve_app
from .upstream import Upstream

Up = Annotated[httpx.AsyncClient, httpool.client("up")]


# -- OpenTelemetry ---------------------------------------------------------------------


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider of the test's own (not the global one) and its in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def traced_app(upstream: Upstream, tracer_provider: TracerProvider) -> FastAPI:
    """An app whose own lifespan instruments every client of the pool when it starts."""

    @contextlib.asynccontextmanager
    async def telemetry(app: FastAPI) -> AsyncIterator[None]:
        pool = httpool.get_pool(app)
        for name in pool.names:
            HTTPXClientInstrumentor.instrument_client(
                pool.client(name), tracer_provider=tracer_provider
            )
        yield

    provider = httpool.Provider("up", base_url=upstream.url)
    app = FastAPI(lifespan=httpool.lifespan(provider, wrap=telemetry))

    @app.get("/relay")
    async def relay(up: Up, path: str) -> Any:
        return {"status": (await up.get(path)).status_code}

    return app


def summary(span: ReadableSpan) -> tuple[str, Any, Any, str]:
    """A span's name, URL, HTTP status and status code, whichever conventions it follows."""
    attributes = dict(span.attributes or {})
    url = attributes.get("url.full", attributes.get("http.url"))
    status = attributes.get("http.response.status_code", attributes.get("http.status_code"))
    return span.name, url, status, span.status.status_code.name


def test_instrument_client_traces_the_pooled_client(
    upstream: Upstream, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """Instrumenting the pool's clients at startup gives a client span per upstream request."""
    tracer_provider, exporter = tracing
    app = traced_app(upstream, tracer_provider)
    with TestClient(app) as client:
        assert client.get("/relay", params={"path": "/v1/ping"}).json() == {"status": 200}
        assert client.get("/relay", params={"path": "/status?code=503"}).json() == {"status": 503}
    spans = exporter.get_finished_spans()
    assert [summary(s) for s in spans] == [
        ("GET", f"{upstream.url}/v1/ping", 200, "UNSET"),
        ("GET", f"{upstream.url}/status?code=503", 503, "ERROR"),
    ]
    assert all(s.kind.name == "CLIENT" for s in spans)
    assert upstream.connections == 1  # tracing wraps the transport; the pool still pools


def test_instrumentation_propagates_the_trace_context(
    upstream: Upstream, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """The upstream receives a traceparent header that names the client span."""
    tracer_provider, exporter = tracing
    with TestClient(traced_app(upstream, tracer_provider)) as client:
        client.get("/relay", params={"path": "/v1/ping"})
    (span,) = exporter.get_finished_spans()
    traceparent = upstream.requests[-1]["headers"].get("traceparent", "")
    assert f"{span.context.trace_id:032x}" in traceparent


def test_global_instrumentation_traces_the_httpx_transport(
    upstream: Upstream, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """HTTPXClientInstrumentor().instrument() traces providers that use transport='httpx'."""
    tracer_provider, exporter = tracing
    provider = httpool.Provider("up", base_url=upstream.url, transport="httpx")
    app = FastAPI(lifespan=httpool.lifespan(provider))

    @app.get("/relay")
    async def relay(up: Up) -> Any:
        return {"status": (await up.get("/v1/ping")).status_code}

    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        with TestClient(app) as client:
            assert client.get("/relay").json() == {"status": 200}
    finally:
        instrumentor.uninstrument()
    assert [summary(s) for s in exporter.get_finished_spans()] == [
        ("GET", f"{upstream.url}/v1/ping", 200, "UNSET")
    ]


# -- a provider SDK that takes `http_client` -------------------------------------------

OPENAI_KEY = "sk-test-openai-5e6f"


class FakeOpenAI:
    """What a local OpenAI-compatible server saw: requests, and TCP connections."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.clients: set[tuple[str, int]] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answer /v1/embeddings as the API does, and anything else with a 404 error."""
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"]  # lifespan.startup, then lifespan.shutdown
                await send({"type": f"{kind}.complete"})
                if kind == "lifespan.shutdown":
                    return
        self.clients.add(tuple(scope["client"]))
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append(
            {"path": scope["path"], "headers": headers, "json": json.loads(body or b"{}")}
        )
        if scope["path"] == "/v1/embeddings":
            texts = self.requests[-1]["json"]["input"]
            texts = [texts] if isinstance(texts, str) else texts
            status, payload = (
                200,
                {
                    "object": "list",
                    "data": [
                        {"object": "embedding", "index": i, "embedding": [float(len(t)), 0.5]}
                        for i, t in enumerate(texts)
                    ],
                    "model": self.requests[-1]["json"]["model"],
                    "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)},
                },
            )
        else:
            status, payload = (
                404,
                {"error": {"message": "no such route", "type": "invalid_request_error"}},
            )
        data = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})


@pytest.fixture
def fake_openai() -> Iterator[tuple[FakeOpenAI, str]]:
    """A local OpenAI-compatible server on loopback, and its API root URL."""
    fake = FakeOpenAI()
    with serve_app(fake) as url:
        yield fake, f"{url}/v1"


def sdk(http_client: httpx.AsyncClient, base_url: str) -> openai.AsyncOpenAI:
    """The real OpenAI SDK on a pooled client.

    openai 3.x types `http_client` as an `httpx2.AsyncClient` and takes an
    `httpx.AsyncClient` too, which is what the pool hands out.
    """
    return openai.AsyncOpenAI(
        api_key=OPENAI_KEY,
        base_url=base_url,
        http_client=http_client,  # type: ignore[arg-type]
        max_retries=0,
    )


@pytest.mark.anyio
async def test_the_openai_sdk_on_a_pooled_client(fake_openai: tuple[FakeOpenAI, str]) -> None:
    """The OpenAI SDK sends its requests through the pool's client, on one connection."""
    fake, base_url = fake_openai
    provider = httpool.Provider(
        "openai", base_url=base_url, timeout=httpx.Timeout(30.0, connect=2.0)
    )
    async with httpool.ClientPool(provider) as pool:
        client = sdk(pool.client("openai"), base_url)
        for text in ["a", "bb", "ccc"]:
            result = await client.embeddings.create(model="text-embedding-3-small", input=text)
            assert result.data[0].embedding == [float(len(text)), 0.5]
        # The SDK adopts the client's timeout (as its own httpx2.Timeout).
        assert repr(client.timeout) == repr(provider.timeout)
        assert_no_leaks(pool)
    assert len(fake.requests) == 3
    assert fake.requests[0]["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
    assert len(fake.clients) == 1


@pytest.mark.anyio
async def test_sdk_errors_leave_the_pool_clean(fake_openai: tuple[FakeOpenAI, str]) -> None:
    """An API error from the SDK returns its connection; the next call reuses it."""
    fake, base_url = fake_openai
    async with httpool.ClientPool(httpool.Provider("openai", base_url=base_url)) as pool:
        client = sdk(pool.client("openai"), base_url)
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("gpt-nothing")
        assert_no_leaks(pool)
        await client.embeddings.create(model="m", input="ok")
    assert len(fake.clients) == 1


def test_the_openai_sdk_in_a_route(fake_openai: tuple[FakeOpenAI, str]) -> None:
    """A dependency wraps the route's pooled client in the SDK; requests share connections."""
    fake, base_url = fake_openai
    app = FastAPI(lifespan=httpool.lifespan(httpool.Provider("openai", base_url=base_url)))

    def openai_sdk(
        client: Annotated[httpx.AsyncClient, httpool.client("openai")],
    ) -> openai.AsyncOpenAI:
        return sdk(client, base_url)  # cheap: it opens no connection

    @app.post("/embed")
    async def embed(text: str, client: Annotated[openai.AsyncOpenAI, Depends(openai_sdk)]) -> Any:
        result = await client.embeddings.create(model="text-embedding-3-small", input=text)
        return result.data[0].embedding

    with TestClient(app) as test_client:
        for _ in range(5):
            assert test_client.post("/embed", params={"text": "four"}).json() == [4.0, 0.5]
    assert len(fake.requests) == 5
    assert len(fake.clients) == 1


@pytest.mark.anyio
async def test_the_sdk_cannot_send_the_key_elsewhere(fake_openai: tuple[FakeOpenAI, str]) -> None:
    """An SDK pointed at another origin is refused by the provider's origin check."""
    fake, base_url = fake_openai
    async with httpool.ClientPool(httpool.Provider("openai", base_url=base_url)) as pool:
        client = sdk(pool.client("openai"), "http://127.0.0.1:9/v1")
        with pytest.raises(httpool.OriginNotAllowedError, match="refused a request to"):
            await client.embeddings.create(model="m", input="x")
    assert fake.requests == []


@pytest.mark.anyio
async def test_closing_the_sdk_leaves_the_pooled_client_open(
    fake_openai: tuple[FakeOpenAI, str],
) -> None:
    """`await sdk.close()` (or `async with AsyncOpenAI(...)`) leaves the pool's client open."""
    _, base_url = fake_openai
    async with httpool.ClientPool(httpool.Provider("openai", base_url=base_url)) as pool:
        async with sdk(pool.client("openai"), base_url) as first:
            await first.embeddings.create(model="m", input="x")
        await sdk(pool.client("openai"), base_url).close()
        assert not pool.client("openai").is_closed
        await sdk(pool.client("openai"), base_url).embeddings.create(model="m", input="y")
