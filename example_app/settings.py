"""The example app's configuration, read from the environment (plain `os.environ`).

By default every provider points at the stub upstream (`python -m example_app.stub_upstream`)
with a dummy key, so the app runs without accounts or network. A provider switches to a
real API when its base URL is set, and then needs its key:

| provider | base URL (switch) | key | model (optional) |
|---|---|---|---|
| `openai` | `OPENAI_BASE_URL` | `OPENAI_API_KEY` | `OPENAI_MODEL` |
| `voyage` | `VOYAGE_BASE_URL` | `VOYAGE_API_KEY` | `VOYAGE_MODEL` |
| `cohere` | `COHERE_BASE_URL` | `COHERE_API_KEY` | `COHERE_MODEL` |

A key alone does not switch: many shells export `OPENAI_API_KEY`, and `make run` should
not start spending it. `EXAMPLE_STUB_URL` moves the stub (default `DEFAULT_STUB_URL`).
Keys are kept in `httpool.Secret`, so they never show in a repr, log line or error.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Final

import httpool

__all__ = ["DEFAULT_STUB_URL", "STUB_KEY", "ProviderSettings", "Settings"]

#: Where `python -m example_app` serves the stub upstream.
DEFAULT_STUB_URL: Final = "http://127.0.0.1:8100/v1"

#: The dummy key sent to the stub, which accepts any bearer token by default.
STUB_KEY: Final = "stub-key-not-a-secret"

#: (provider name, env prefix, default model, an example of the real API's base URL)
_PROVIDERS: Final = (
    ("openai", "OPENAI", "gpt-4o-mini", "https://api.openai.com/v1"),
    ("voyage", "VOYAGE", "voyage-3", "https://api.voyageai.com/v1"),
    ("cohere", "COHERE", "embed-english-v3.0", "https://api.cohere.com/v1"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Where one provider's API is, the key to send it, and the model to ask for."""

    base_url: str
    api_key: httpool.Secret
    model: str
    stub: bool = False

    @property
    def where(self) -> str:
        """A one-line description for the start-up banner (never the key)."""
        return f"{self.base_url} ({'stub' if self.stub else 'real API'}, model {self.model})"


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """The configuration of the example app: one `ProviderSettings` per provider."""

    openai: ProviderSettings
    voyage: ProviderSettings
    cohere: ProviderSettings

    @classmethod
    def for_stub(cls, stub_url: str = DEFAULT_STUB_URL, *, api_key: str = STUB_KEY) -> Settings:
        """Every provider at the stub upstream `stub_url`, sending `api_key`."""
        return cls.from_env({"EXAMPLE_STUB_URL": stub_url}, stub_key=api_key)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, stub_key: str = STUB_KEY
    ) -> Settings:
        """Read the settings from `environ` (default: `os.environ`).

        Raises `ValueError` naming the variable when a base URL is set without its key.
        """
        env = os.environ if environ is None else environ
        stub_url = env.get("EXAMPLE_STUB_URL") or DEFAULT_STUB_URL
        found: dict[str, ProviderSettings] = {}
        for name, prefix, default_model, example in _PROVIDERS:
            base_url = env.get(f"{prefix}_BASE_URL", "").strip()
            model = env.get(f"{prefix}_MODEL", "").strip() or default_model
            if not base_url:
                key = httpool.Secret(f"Bearer {stub_key}")
                found[name] = ProviderSettings(stub_url, key, model, stub=True)
                continue
            api_key = env.get(f"{prefix}_API_KEY", "").strip()
            if not api_key:
                msg = (
                    f"{prefix}_BASE_URL is set, so provider {name!r} calls a real API, but "
                    f"{prefix}_API_KEY is empty: export it too, or unset {prefix}_BASE_URL "
                    f"to use the stub (real API example: {prefix}_BASE_URL={example})"
                )
                raise ValueError(msg)
            found[name] = ProviderSettings(base_url, httpool.Secret(f"Bearer {api_key}"), model)
        return cls(**found)

    def items(self) -> list[tuple[str, ProviderSettings]]:
        """`(name, settings)` of every provider, in a fixed order."""
        return [(field.name, getattr(self, field.name)) for field in dataclasses.fields(self)]

    @property
    def uses_stub(self) -> bool:
        """Whether any provider points at the stub upstream."""
        return any(p.stub for _, p in self.items())
