"""`proxy_stream()`: pass an upstream streamed response to the client, and always close it."""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import httpx
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["UpstreamStreamingResponse", "proxy_stream"]

#: Headers that describe the upstream connection or encoding, not the relayed body.
_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
)


class UpstreamStreamingResponse(StreamingResponse):
    """A `StreamingResponse` that relays an open `httpx.Response` and closes it.

    The upstream response is closed when the body is done, when the client disconnects
    (watched on `receive`, so the upstream stops generating tokens nobody reads), when
    the task is cancelled, or when sending fails — never left to garbage collection.
    """

    def __init__(
        self,
        upstream: httpx.Response,
        *,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.upstream = upstream
        super().__init__(
            upstream.aiter_bytes(),
            status_code=upstream.status_code if status_code is None else status_code,
            headers=headers,
            media_type=media_type or upstream.headers.get("content-type"),
            background=background,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_disconnect)
                await self.stream_response(send)
                tg.cancel_scope.cancel()
        except* OSError:
            pass  # the client went away while we were sending (raised in the task group)
        finally:
            with anyio.CancelScope(shield=True):
                # the relay's generator first (left mid-way when sending failed), then
                # the upstream response it reads
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
                await self.upstream.aclose()
        if self.background is not None:
            await self.background()


def proxy_stream(
    upstream: httpx.Response,
    *,
    headers: Mapping[str, str] | None = None,
    media_type: str | None = None,
) -> UpstreamStreamingResponse:
    """Relay a streamed upstream response (SSE from a chat API, say) to the client.

    ```python
    @app.post("/chat/stream")
    async def chat_stream(openai: OpenAI) -> StreamingResponse:
        request = openai.build_request("POST", "/chat/completions", json=...)
        return httpool.proxy_stream(await openai.send(request, stream=True))
    ```

    The status and content type are passed on; connection and encoding headers are
    not (the body is relayed decoded). The upstream response is always closed, also
    when the client disconnects mid-stream.
    """
    passed = {k: v for k, v in (headers or {}).items() if k.lower() not in _HOP_HEADERS}
    return UpstreamStreamingResponse(upstream, headers=passed, media_type=media_type)
