"""A stub of the provider APIs the example app calls: a real HTTP server on loopback.

It answers like the real services, closely enough for the example app and its tests:

- `POST /v1/embeddings` (Voyage / OpenAI style): `{"input": [...], "model": ...}` →
  `{"data": [{"embedding": [...], "index": i}], "model": ..., "usage": {...}}`.
- `POST /v1/embed` (Cohere v1 style): `{"texts": [...], "model": ...}` →
  `{"embeddings": [[...]], "texts": [...], "meta": {"billed_units": {...}}}`.
- `GET /v1/models` (OpenAI style): the models it serves; the example app's health
  check (`health_path = "/models"`) calls it. It does not count in `requests`.
- `POST /v1/chat/completions` (OpenAI style): a JSON completion, or with
  `"stream": true` an SSE stream of `data: {...}` chunks a few ms apart and `data: [DONE]`.

Vectors are unit vectors of `DIMENSIONS` numbers derived from a hash of model and text,
so the same text always gets the same vector. Every request needs an
`Authorization: Bearer <key>` header; any key passes unless `api_keys` is given. A
refused key is echoed back in the 401 body, as a careless upstream might do, so tests can
show that the example app never relays an upstream's error body.

Run it alone with `python -m example_app.stub_upstream [--port 8100]`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import itertools
import json
import math
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, Final

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["DEFAULT_PORT", "DIMENSIONS", "StubState", "create_stub_app", "fake_vector"]

DEFAULT_PORT: Final = 8100
DIMENSIONS: Final = 8
STREAM_CHUNKS: Final = 10


@dataclasses.dataclass
class StubState:
    """The stub's options and what it has seen (read by the tests)."""

    api_keys: frozenset[str] | None = None
    chunk_delay: float = 0.005
    requests: int = 0
    streams_open: int = 0
    ids: Iterator[int] = dataclasses.field(default_factory=itertools.count)


def fake_vector(text: str, model: str, dimensions: int = DIMENSIONS) -> list[float]:
    """A deterministic unit vector for `text`: the same input always gives the same one."""
    digest = hashlib.sha256(f"{model}\0{text}".encode()).digest()
    raw = [(byte - 127.5) / 127.5 for byte in digest[:dimensions]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


def _tokens(texts: Iterable[str]) -> int:
    return sum(max(1, len(text.split())) for text in texts)


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def _refusal(request: Request, state: StubState) -> JSONResponse | None:
    """A 401 answer when the bearer token is missing or not accepted, else `None`."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return _error(401, "missing API key: send 'Authorization: Bearer <key>'", "auth_error")
    if state.api_keys is not None and token not in state.api_keys:
        return _error(401, f"invalid API key: {token}", "auth_error")
    return None


async def _json_body(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the request body is not JSON", "invalid_request_error")
    if not isinstance(body, dict):
        return _error(400, "the request body must be a JSON object", "invalid_request_error")
    return body


def _strings(value: object) -> list[str] | None:
    """`value` as a non-empty list of strings (a single string counts), or `None`."""
    items = [value] if isinstance(value, str) else value
    if isinstance(items, list) and items and all(isinstance(i, str) for i in items):
        return items
    return None


async def _checked(request: Request) -> tuple[StubState, dict[str, Any]] | JSONResponse:
    """The stub's state and the request's JSON body, or the error to answer with."""
    state: StubState = request.app.state.stub
    state.requests += 1
    refusal = _refusal(request, state)
    if refusal is not None:
        return refusal
    body = await _json_body(request)
    return body if isinstance(body, JSONResponse) else (state, body)


#: What `GET /v1/models` lists.
MODELS: Final = ("gpt-4o-mini", "voyage-3", "embed-english-v3.0")


async def models(request: Request) -> Response:
    """`GET /v1/models`, OpenAI style: cheap, so health checks call it."""
    refusal = _refusal(request, request.app.state.stub)
    if refusal is not None:
        return refusal
    data = [{"id": name, "object": "model", "owned_by": "stub"} for name in MODELS]
    return JSONResponse({"object": "list", "data": data})


async def embeddings(request: Request) -> Response:
    """`POST /v1/embeddings`, Voyage / OpenAI style."""
    checked = await _checked(request)
    if isinstance(checked, JSONResponse):
        return checked
    _, body = checked
    texts, model = _strings(body.get("input")), str(body.get("model", "voyage-3"))
    if texts is None:
        return _error(400, "'input' must be a string or a list of strings", "invalid_request_error")
    data = [
        {"object": "embedding", "embedding": fake_vector(text, model), "index": i}
        for i, text in enumerate(texts)
    ]
    usage = {"total_tokens": _tokens(texts)}
    return JSONResponse({"object": "list", "data": data, "model": model, "usage": usage})


async def cohere_embed(request: Request) -> Response:
    """`POST /v1/embed`, Cohere v1 style."""
    checked = await _checked(request)
    if isinstance(checked, JSONResponse):
        return checked
    state, body = checked
    texts, model = _strings(body.get("texts")), str(body.get("model", "embed-english-v3.0"))
    if texts is None:
        return _error(400, "'texts' must be a list of strings", "invalid_request_error")
    return JSONResponse(
        {
            "id": f"stub-embed-{next(state.ids)}",
            "embeddings": [fake_vector(text, model) for text in texts],
            "texts": texts,
            "meta": {
                "api_version": {"version": "1"},
                "billed_units": {"input_tokens": _tokens(texts)},
            },
            "response_type": "embeddings_floats",
        }
    )


def _answer(messages: Sequence[Any], model: str) -> str:
    said = next(
        (
            str(m.get("content", ""))
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        "",
    )
    return f"Hello from the stub upstream ({model})! You said: {said}"


def _pieces(text: str, count: int = STREAM_CHUNKS) -> list[str]:
    size = max(1, math.ceil(len(text) / count))
    return [text[i : i + size] for i in range(0, len(text), size)]


async def chat_completions(request: Request) -> Response:
    """`POST /v1/chat/completions`, OpenAI style, streamed as SSE when `"stream": true`."""
    checked = await _checked(request)
    if isinstance(checked, JSONResponse):
        return checked
    state, body = checked
    messages, model = body.get("messages"), str(body.get("model", "gpt-4o-mini"))
    if not isinstance(messages, list) or not messages:
        return _error(400, "'messages' must be a non-empty list", "invalid_request_error")
    answer = _answer(messages, model)
    prompt_tokens = _tokens(str(m) for m in messages)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": _tokens([answer]),
        "total_tokens": prompt_tokens + _tokens([answer]),
    }
    head = {"id": f"chatcmpl-stub-{next(state.ids)}", "created": int(time.time()), "model": model}
    if not body.get("stream"):
        message = {"role": "assistant", "content": answer}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return JSONResponse(
            {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        )
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    return StreamingResponse(
        _chat_events(state, head, answer, usage if with_usage else None),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


async def _chat_events(
    state: StubState, head: dict[str, Any], answer: str, usage: dict[str, int] | None
) -> AsyncIterator[bytes]:
    """The SSE events of a streamed completion: role, ~10 content pieces, stop, [DONE]."""

    def event(delta: dict[str, str], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        chunk = {**head, "object": "chat.completion.chunk", "choices": [choice]}
        return f"data: {json.dumps(chunk)}\n\n".encode()

    state.streams_open += 1
    try:
        yield event({"role": "assistant", "content": ""})
        for piece in _pieces(answer):
            await asyncio.sleep(state.chunk_delay)
            yield event({"content": piece})
        yield event({}, "stop")
        if usage is not None:
            tail = {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            yield f"data: {json.dumps(tail)}\n\n".encode()
        yield b"data: [DONE]\n\n"
    finally:
        state.streams_open -= 1


def create_stub_app(
    *, api_keys: Iterable[str] | None = None, chunk_delay: float = 0.005
) -> Starlette:
    """The stub as an ASGI app; `api_keys` limits the accepted keys (default: any)."""
    app = Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/embed", cohere_embed, methods=["POST"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        ]
    )
    keys = None if api_keys is None else frozenset(api_keys)
    app.state.stub = StubState(api_keys=keys, chunk_delay=chunk_delay)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m example_app.stub_upstream`: serve the stub until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m example_app.stub_upstream",
        description="Serve a stub of the embedding and chat APIs on loopback.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    parser.add_argument(
        "--chunk-delay",
        type=float,
        default=0.005,
        help="seconds between streamed chunks (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    print(f"stub upstream: http://127.0.0.1:{args.port}/v1 (Ctrl-C to stop)", flush=True)
    app = create_stub_app(chunk_delay=args.chunk_delay)
    uvicorn.run(app, host="127.0.0.1", port=args.port, ws="none", log_level="info")


if __name__ == "__main__":
    main()
