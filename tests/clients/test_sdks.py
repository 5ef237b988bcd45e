"""The OpenAI (3.x) and Anthropic (2.x) SDKs on pooled httpx2 clients, against a local fake API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

import httpool

from ..servers import serve_app

pytestmark = pytest.mark.anyio

KEY = "sk-test-fake-9d1c"


class FakeAPI:
    """What the fake API saw: each request's path and headers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.busy_left = 0  # answers of 429 still to give

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next: Any) -> Response:
            self.seen.append((request.url.path, dict(request.headers)))
            if self.busy_left:
                self.busy_left -= 1
                error = {"error": {"type": "rate_limit_error", "message": "slow down"}}
                return JSONResponse(error, 429, headers={"retry-after-ms": "10"})
            response: Response = await call_next(request)
            return response

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            text = "hello from the fake"
            if body.get("stream"):

                def events() -> Iterator[bytes]:
                    for word in text.split():
                        chunk = {
                            "id": "c1",
                            "object": "chat.completion.chunk",
                            "created": 1,
                            "model": body["model"],
                            "choices": [
                                {"index": 0, "delta": {"content": word}, "finish_reason": None}
                            ],
                        }
                        yield f"data: {json.dumps(chunk)}\n\n".encode()
                    yield b"data: [DONE]\n\n"

                return StreamingResponse(events(), media_type="text/event-stream")
            return JSONResponse(
                {
                    "id": "c1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5},
                }
            )

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> Response:
            body = await request.json()
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [
                {"object": "embedding", "index": i, "embedding": [float(len(t)), 0.5]}
                for i, t in enumerate(texts)
            ]
            usage = {"prompt_tokens": 1, "total_tokens": 1}
            payload = {"object": "list", "data": data, "model": body["model"], "usage": usage}
            return JSONResponse(payload)

        @app.post("/v1/messages")
        async def messages(request: Request) -> Response:
            body = await request.json()
            message = {
                "id": "m1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": "hi from the fake"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 3, "output_tokens": 4},
            }
            if not body.get("stream"):
                return JSONResponse(message)

            def events() -> Iterator[bytes]:
                start = {**message, "content": [], "stop_reason": None}
                sequence: list[dict[str, Any]] = [
                    {"type": "message_start", "message": start},
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                    *(
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": word + " "},
                        }
                        for word in ("hi", "from", "the", "fake")
                    ),
                    {"type": "content_block_stop", "index": 0},
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": 4},
                    },
                    {"type": "message_stop"},
                ]
                for event in sequence:
                    yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()

            return StreamingResponse(events(), media_type="text/event-stream")

        return app


@pytest.fixture(scope="module")
def fake_api() -> Iterator[tuple[FakeAPI, str]]:
    """One fake API for the module (uvicorn on loopback), and its URL."""
    fake = FakeAPI()
    with serve_app(fake.app()) as url:
        yield fake, url


@pytest.fixture
def fake(fake_api: tuple[FakeAPI, str]) -> tuple[FakeAPI, str]:
    """The module's fake API, its record cleared for this test."""
    api, url = fake_api
    api.seen.clear()
    api.busy_left = 0
    return api, url


async def test_openai_sdk_on_a_pooled_httpx2_client(fake: tuple[FakeAPI, str]) -> None:
    """Chat, embeddings, streaming and a retried 429, through the pool's httpx2 client."""
    api, url = fake
    provider = httpool.Provider("openai", base_url=f"{url}/v1")
    async with httpool.ClientPool(provider) as pool:
        pooled = pool.client("openai", httpx2.AsyncClient)
        async with openai.AsyncOpenAI(api_key=KEY, base_url=f"{url}/v1", http_client=pooled) as sdk:
            chat = await sdk.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
            assert chat.choices[0].message.content == "hello from the fake"
            vectors = await sdk.embeddings.create(model="e", input=["ab", "abc"])
            assert [d.embedding[0] for d in vectors.data] == [2.0, 3.0]
            stream = await sdk.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            words = [c.choices[0].delta.content async for c in stream]
            assert words == ["hello", "from", "the", "fake"]
            api.busy_left = 1
            again = await sdk.embeddings.create(model="e", input="x")
            assert again.data[0].embedding == [1.0, 0.5]
        assert not pooled.is_closed  # the SDK's close left the pool's client open
        assert (await pooled.post("/embeddings", json={"model": "e", "input": "y"})).is_success
        stats = pool.stats()["openai"]
    paths = [path for path, _ in api.seen]
    assert paths.count("/v1/embeddings") == 4  # the 429 and its retry among them
    assert all(h["authorization"] == f"Bearer {KEY}" for _, h in api.seen[:-1])
    assert stats["requests_in_flight"] == 0
    assert stats["connections_opened"] == 1


async def test_anthropic_sdk_on_a_pooled_httpx2_client(fake: tuple[FakeAPI, str]) -> None:
    """Messages, a streamed message and a retried 429 through the pool's httpx2 client."""
    api, url = fake
    provider = httpool.Provider("anthropic", base_url=url)
    async with httpool.ClientPool(provider) as pool:
        pooled = pool.client("anthropic", httpx2.AsyncClient)
        async with anthropic.AsyncAnthropic(api_key=KEY, base_url=url, http_client=pooled) as sdk:
            message = await sdk.messages.create(
                model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
            )
            assert message.content[0].type == "text"
            assert message.content[0].text == "hi from the fake"
            async with sdk.messages.stream(
                model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                text = "".join([t async for t in stream.text_stream])
            assert text == "hi from the fake "
            api.busy_left = 1
            retried = await sdk.messages.create(
                model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "x"}]
            )
            assert retried.id == "m1"
        assert not pooled.is_closed
        assert pool.stats()["anthropic"]["requests_in_flight"] == 0
    assert [path for path, _ in api.seen].count("/v1/messages") == 4
    sent = [h.get("x-api-key", "") + h.get("authorization", "") for _, h in api.seen]
    assert len(sent) == 4
    assert all(KEY in credentials for credentials in sent)


async def test_anthropic_refuses_an_httpx_client_so_ask_for_httpx2(
    fake: tuple[FakeAPI, str],
) -> None:
    """The Anthropic SDK refuses httpx's client: the reason the httpx2 kind exists."""
    _, url = fake
    async with httpool.ClientPool(httpool.Provider("anthropic", base_url=url)) as pool:
        wrong: Any = pool.client("anthropic")  # an httpx client, refused at run time
        with pytest.raises(TypeError, match="httpx2"):
            anthropic.AsyncAnthropic(api_key=KEY, base_url=url, http_client=wrong)
