"""The example app's own request and response bodies (what /docs shows)."""

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["ChatRequest", "ChatResponse", "EmbedRequest", "EmbedResponse", "Message"]


class EmbedRequest(BaseModel):
    """Texts to embed, and which provider embeds them."""

    texts: list[str] = Field(min_length=1, max_length=128, examples=[["a sunny day", "rain"]])
    provider: Literal["voyage", "cohere"] = "voyage"
    input_type: Literal["query", "document"] = "document"
    model: str | None = Field(default=None, description="default: the provider's default model")


class EmbedResponse(BaseModel):
    """One vector per input text, in order."""

    provider: str
    model: str
    dimensions: int
    vectors: list[list[float]]
    input_tokens: int | None = None


class Message(BaseModel):
    """One turn of a conversation."""

    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """A conversation to continue."""

    messages: list[Message] = Field(
        min_length=1, examples=[[{"role": "user", "content": "Say hello in three words"}]]
    )
    model: str | None = Field(default=None, description="default: gpt-4o-mini")
    temperature: float | None = Field(default=None, ge=0, le=2)


class ChatResponse(BaseModel):
    """The model's answer."""

    model: str
    answer: str
    finish_reason: str | None = None
    total_tokens: int | None = None
