"""How long and how wide each section runs: the full run and the quick smoke run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .servers import SAME_SERVER, UPSTREAMS

__all__ = ["FULL", "QUICK", "Settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    """Knobs of one bench run (all bounded: seconds or request counts)."""

    rounds: int
    client_upstreams: tuple[str, ...]
    client_concurrency: tuple[int, ...]
    #: The client section's nginx pair (`servers.SAME_SERVER`) runs at these only.
    same_server_concurrency: tuple[int, ...]
    same_server_upstreams: tuple[str, ...]
    client_seconds: float
    client_warmup_seconds: float
    client_max_warmup_seconds: float
    e2e_concurrency: tuple[int, ...]
    e2e_seconds: float
    e2e_warmup_seconds: float
    count_concurrency: tuple[int, ...]
    count_upstreams: tuple[str, ...]
    count_requests: int
    count_rounds: int
    count_seconds: float
    latency_delay_ms: float
    latency_server_ms: tuple[int, ...]
    latency_requests: int
    first_rounds: int

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


FULL = Settings(
    rounds=3,
    client_upstreams=UPSTREAMS,
    client_concurrency=(1, 10, 50, 200),
    same_server_concurrency=(50,),
    same_server_upstreams=SAME_SERVER,
    client_seconds=1.0,
    client_warmup_seconds=0.3,
    client_max_warmup_seconds=3.0,
    e2e_concurrency=(50, 200),
    e2e_seconds=5.0,
    e2e_warmup_seconds=1.0,
    count_concurrency=(50, 200),
    count_upstreams=("h1", "h2-tls"),
    count_requests=1000,
    count_rounds=1,
    count_seconds=10.0,
    latency_delay_ms=20.0,
    latency_server_ms=(0, 150),
    latency_requests=15,
    first_rounds=8,
)

QUICK = FULL.replace(
    rounds=1,
    client_upstreams=("h1",),
    client_concurrency=(1, 50),
    same_server_upstreams=(),
    client_seconds=0.5,
    client_warmup_seconds=0.1,
    client_max_warmup_seconds=1.0,
    e2e_concurrency=(50,),
    e2e_seconds=1.0,
    e2e_warmup_seconds=1.0,
    count_concurrency=(50,),
    count_upstreams=("h1",),
    count_requests=300,
    count_rounds=1,
    count_seconds=5.0,
    latency_server_ms=(150,),
    latency_requests=3,
    first_rounds=2,
)
