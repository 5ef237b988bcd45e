"""The example app: a small AI gateway whose routes call providers through httpool.

Three named providers live for as long as the app runs, each one long-lived
`httpx.AsyncClient` that keeps its connections open between requests:

- `POST /embed`: embeddings from `voyage` (or `cohere` with `"provider": "cohere"`).
- `POST /chat`: a chat completion from `openai`, answered as JSON.
- `POST /chat/stream`: the same, streamed: `httpool.proxy_stream()` relays the
  upstream's SSE events as they arrive and closes the upstream response when the
  stream ends or the caller goes away.
- `httpool.router()`: the status page at `/`, `GET /stats`, `GET /health` (pings each
  provider's `health_path`) and `GET /metrics` (Prometheus).
- `/docs`: the interactive API docs, served from this app (no CDN), by fastapi-offline.

The providers come from `httpool.providers_from_env()`: `providers.toml` beside this
module points them at the stub upstream, and `HTTPOOL_<NAME>_...` variables override it.
Upstream failures become small JSON errors (httpool's error handlers: 502/503/504) that
name the provider and never carry the upstream's URL, headers, key or error body.

Run it with `python -m example_app`, or `uvicorn example_app.app:app` next to
`python -m example_app.stub_upstream`.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations.

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi_offline import FastAPIOffline

import httpool

from .schemas import ChatRequest, ChatResponse, EmbedRequest, EmbedResponse

__all__ = ["CONFIG", "DEFAULT_STUB_URL", "MODELS", "app", "create_app", "load_providers"]

logger = logging.getLogger("example_app")

#: The providers' settings, read by `providers_from_env`; the environment wins over it.
CONFIG: Final = Path(__file__).with_name("providers.toml")

#: Where `providers.toml` points every provider: the stub upstream's default address.
DEFAULT_STUB_URL: Final = "http://127.0.0.1:8100/v1"

#: The model each provider is asked for when a request names none.
MODELS: Final = {"openai": "gpt-4o-mini", "voyage": "voyage-3", "cohere": "embed-english-v3.0"}

OpenAI = Annotated[httpx.AsyncClient, httpool.client("openai")]
Voyage = Annotated[httpx.AsyncClient, httpool.client("voyage")]
Cohere = Annotated[httpx.AsyncClient, httpool.client("cohere")]

T = TypeVar("T")


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


@router.post("/embed", tags=["embeddings"])
async def embed(body: EmbedRequest, voyage: Voyage, cohere: Cohere) -> EmbedResponse:
    """Embed texts with Voyage (default) or Cohere."""
    model = body.model or MODELS[body.provider]
    if body.provider == "cohere":
        return await _embed_with_cohere(cohere, body, model)
    return await _embed_with_voyage(voyage, body, model)


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


def _chat_payload(body: ChatRequest, *, stream: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": body.model or MODELS["openai"],
        "messages": [message.model_dump() for message in body.messages],
    }
    if body.temperature is not None:
        payload["temperature"] = body.temperature
    if stream:
        payload["stream"] = True
    return payload


@router.post("/chat", tags=["chat"])
async def chat(body: ChatRequest, openai: OpenAI) -> ChatResponse:
    """Ask the chat model and wait for the whole answer."""
    payload = _chat_payload(body, stream=False)
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
async def chat_stream(body: ChatRequest, openai: OpenAI) -> StreamingResponse:
    """Ask the chat model and relay its answer as server-sent events, chunk by chunk."""
    provider = "openai"
    payload = _chat_payload(body, stream=True)
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
        upstream.raise_for_status()  # httpool's error handlers: a 502 naming the provider
        raise UpstreamAnswerError(provider)
    # Relays each chunk as it arrives; closes the upstream response when the stream
    # ends, breaks off, or the caller goes away, so the connection goes back to the pool.
    return httpool.proxy_stream(
        upstream, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


# -- the app ----------------------------------------------------------------------------


def load_providers(stub_url: str | None = None) -> list[httpool.Provider]:
    """The app's providers, from `providers.toml` and `HTTPOOL_<NAME>_...` variables.

    `stub_url` moves the providers that call the stub (at `DEFAULT_STUB_URL`) there.
    Raises `httpool.ConfigError` naming the variable or key of a bad value.
    """
    found = httpool.providers_from_env(["openai", "voyage", "cohere"], toml_file=CONFIG)
    if stub_url is None:
        return found
    return [
        dataclasses.replace(p, base_url=stub_url) if p.base_url == DEFAULT_STUB_URL else p
        for p in found
    ]


def create_app(providers: list[httpool.Provider] | None = None) -> FastAPI:
    """The example app with `providers` (default: `load_providers()`)."""
    app = FastAPIOffline(  # FastAPI whose /docs and /redoc use bundled assets, not a CDN
        title="httpool example",
        summary="Embeddings and chat through long-lived, pooled httpx clients.",
        lifespan=httpool.lifespan(*(load_providers() if providers is None else providers)),
    )
    app.include_router(router)
    app.include_router(httpool.router())  # status page at /, /stats, /health, /metrics
    httpool.install_error_handlers(app)
    app.add_exception_handler(UpstreamAnswerError, _answer_error)
    return app


app = create_app()
