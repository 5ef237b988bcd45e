"""The example app: a small AI gateway whose routes call providers through httpool.

Three named providers live for as long as the app runs, each one long-lived
`httpx.AsyncClient` that keeps its connections open between requests:

- `POST /embed`: embeddings from `voyage` (or `cohere` with `"provider": "cohere"`).
- `POST /chat`: a chat completion from `openai`, answered as JSON.
- `POST /chat/stream`: the same, streamed: the upstream's SSE events are relayed as
  they arrive, and the upstream response is closed when the stream ends or the caller
  goes away.
- `GET /providers`: the pool's state and per-provider statistics.

Upstream failures become small JSON errors (502/503/504) that name the provider and
never carry the upstream's URL, headers, key or error body.

Run it with `python -m example_app`, or `uvicorn example_app.app:app` next to
`python -m example_app.stub_upstream`; see `example_app.settings` for the configuration.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations.

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

import anyio
import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

import httpool

from .schemas import ChatRequest, ChatResponse, EmbedRequest, EmbedResponse
from .settings import ProviderSettings, Settings

__all__ = ["app", "create_app", "providers"]

logger = logging.getLogger("example_app")

OpenAI = Annotated[httpx.AsyncClient, httpool.client("openai")]
Voyage = Annotated[httpx.AsyncClient, httpool.client("voyage")]
Cohere = Annotated[httpx.AsyncClient, httpool.client("cohere")]

T = TypeVar("T")


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(_settings)]


# -- errors -----------------------------------------------------------------------------


class UpstreamAnswerError(Exception):
    """A provider answered 2xx with a body this app does not understand."""

    def __init__(self, provider: str) -> None:
        super().__init__(f"provider {provider!r} sent an answer of an unexpected shape")
        self.provider = provider


async def _answer_error(request: Request, exc: Exception) -> JSONResponse:
    provider = exc.provider if isinstance(exc, UpstreamAnswerError) else None
    logger.warning("%s", exc, extra={"provider": provider})
    message = "the provider's answer was not understood"
    error = {"provider": provider, "kind": "bad_answer", "message": message}
    return JSONResponse({"error": error}, status_code=502)


def _json(response: httpx.Response, provider: str) -> dict[str, Any]:
    """The JSON object of a successful upstream answer (an error status raises, → 502)."""
    response.raise_for_status()
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamAnswerError(provider)
    return data


def _understood(provider: str, read: Callable[[], T]) -> T:
    """`read()`, with any sign of an unexpected answer shape turned into a 502."""
    try:
        return read()
    except (LookupError, TypeError, ValueError):  # pydantic's ValidationError is a ValueError
        raise UpstreamAnswerError(provider) from None


# -- routes -------------------------------------------------------------------------------

router = APIRouter()


@router.get("/", include_in_schema=False)
async def index() -> dict[str, Any]:
    """Where to go from here."""
    return {
        "app": "httpool example",
        "docs": "/docs",
        "routes": ["POST /embed", "POST /chat", "POST /chat/stream", "GET /providers"],
    }


@router.post("/embed", tags=["embeddings"])
async def embed(
    body: EmbedRequest, voyage: Voyage, cohere: Cohere, settings: AppSettings
) -> EmbedResponse:
    """Embed texts with Voyage (default) or Cohere."""
    if body.provider == "cohere":
        return await _embed_with_cohere(cohere, body, body.model or settings.cohere.model)
    return await _embed_with_voyage(voyage, body, body.model or settings.voyage.model)


async def _embed_with_voyage(
    voyage: httpx.AsyncClient, body: EmbedRequest, model: str
) -> EmbedResponse:
    payload = {"input": body.texts, "model": model, "input_type": body.input_type}
    data = _json(await voyage.post("/embeddings", json=payload), "voyage")

    def read() -> EmbedResponse:
        items = sorted(data["data"], key=lambda item: item["index"])
        vectors = [item["embedding"] for item in items]
        tokens = (data.get("usage") or {}).get("total_tokens")
        return _embedded("voyage", data.get("model") or model, vectors, tokens, body)

    return _understood("voyage", read)


async def _embed_with_cohere(
    cohere: httpx.AsyncClient, body: EmbedRequest, model: str
) -> EmbedResponse:
    payload = {"texts": body.texts, "model": model, "input_type": f"search_{body.input_type}"}
    data = _json(await cohere.post("/embed", json=payload), "cohere")

    def read() -> EmbedResponse:
        billed = (data.get("meta") or {}).get("billed_units") or {}
        return _embedded("cohere", model, data["embeddings"], billed.get("input_tokens"), body)

    return _understood("cohere", read)


def _embedded(
    provider: str, model: str, vectors: Any, tokens: Any, body: EmbedRequest
) -> EmbedResponse:
    if len(vectors) != len(body.texts):
        msg = "one vector per text expected"
        raise ValueError(msg)
    return EmbedResponse(
        provider=provider,
        model=model,
        dimensions=len(vectors[0]),
        vectors=vectors,
        input_tokens=tokens,
    )


def _chat_payload(body: ChatRequest, openai: ProviderSettings, *, stream: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": body.model or openai.model,
        "messages": [message.model_dump() for message in body.messages],
    }
    if body.temperature is not None:
        payload["temperature"] = body.temperature
    if stream:
        payload["stream"] = True
    return payload


@router.post("/chat", tags=["chat"])
async def chat(body: ChatRequest, openai: OpenAI, settings: AppSettings) -> ChatResponse:
    """Ask the chat model and wait for the whole answer."""
    payload = _chat_payload(body, settings.openai, stream=False)
    data = _json(await openai.post("/chat/completions", json=payload), "openai")

    def read() -> ChatResponse:
        choice = data["choices"][0]
        return ChatResponse(
            model=data.get("model") or payload["model"],
            answer=choice["message"]["content"],
            finish_reason=choice.get("finish_reason"),
            total_tokens=(data.get("usage") or {}).get("total_tokens"),
        )

    return _understood("openai", read)


_SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the upstream's server-sent events, relayed as they arrive",
        "content": {
            "text/event-stream": {"example": 'data: {"choices": [...]}\n\ndata: [DONE]\n\n'}
        },
    }
}


@router.post(
    "/chat/stream", tags=["chat"], response_class=StreamingResponse, responses=_SSE_RESPONSE
)
async def chat_stream(
    body: ChatRequest, openai: OpenAI, settings: AppSettings
) -> StreamingResponse:
    """Ask the chat model and relay its answer as server-sent events, chunk by chunk."""
    provider = "openai"
    payload = _chat_payload(body, settings.openai, stream=True)
    request = openai.build_request(
        "POST", "/chat/completions", json=payload, headers={"Accept": "text/event-stream"}
    )
    # Send before answering, so an upstream error becomes a clean status code here,
    # not a broken stream.
    upstream = await openai.send(request, stream=True)
    if upstream.is_error or not upstream.headers.get("content-type", "").startswith(
        "text/event-stream"
    ):
        await upstream.aclose()
        upstream.raise_for_status()
        raise UpstreamAnswerError(provider)
    return StreamingResponse(
        _relay(upstream, provider),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _relay(upstream: httpx.Response, provider: str) -> AsyncIterator[bytes]:
    """Yield the upstream's body as it arrives; always close the upstream response.

    The `finally` runs when the stream ends, when the upstream breaks off, and when the
    caller disconnects (Starlette then cancels the response task, or closes this
    generator): the connection goes back to the provider's pool instead of leaking.
    """
    try:
        async for chunk in upstream.aiter_bytes():
            yield chunk
    except httpx.TransportError as exc:  # the status is sent already: report in-band
        logger.warning("provider %r broke off a stream: %s", provider, type(exc).__name__)
        error = {"provider": provider, "kind": "stream_broken", "message": "the stream broke off"}
        yield f"\n\nevent: error\ndata: {json.dumps({'error': error})}\n\n".encode()
    finally:
        with anyio.CancelScope(shield=True):
            await upstream.aclose()


@router.get("/providers", tags=["pool"])
async def pool_stats(request: Request) -> dict[str, Any]:
    """The pool's state and, per provider, its settings and connection counters."""
    pool = httpool.get_pool(request)
    return {"state": pool.state.value, "providers": pool.stats()}


# -- the app ----------------------------------------------------------------------------


def providers(settings: Settings) -> list[httpool.Provider]:
    """The app's providers: where each API is, its key, and its timeouts and limits."""

    def auth(p: ProviderSettings) -> dict[str, str | httpool.Secret]:
        return {"Authorization": p.api_key}

    return [
        # A chat answer can take a minute; a dead host should fail in seconds.
        httpool.Provider(
            "openai",
            base_url=settings.openai.base_url,
            headers=auth(settings.openai),
            timeout=httpx.Timeout(60.0, connect=5.0),
        ),
        httpool.Provider(
            "voyage",
            base_url=settings.voyage.base_url,
            headers=auth(settings.voyage),
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=50),
        ),
        httpool.Provider(
            "cohere",
            base_url=settings.cohere.base_url,
            headers=auth(settings.cohere),
            timeout=httpx.Timeout(30.0, connect=5.0),
        ),
    ]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The example app for `settings` (default: read from the environment)."""
    settings = Settings.from_env() if settings is None else settings
    app = FastAPI(
        title="httpool example",
        summary="Embeddings and chat through long-lived, pooled httpx clients.",
        lifespan=httpool.lifespan(*providers(settings)),
    )
    app.state.settings = settings
    app.include_router(router)
    httpool.install_error_handlers(app)
    app.add_exception_handler(UpstreamAnswerError, _answer_error)
    return app


app = create_app()
