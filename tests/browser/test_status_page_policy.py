"""The status page's policy lines in a real headless Chromium: answers, retries, limits,
the breaker."""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations.

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import httpool

from ..policy.stub import Stub, serve_stub
from ..servers import serve_app
from .test_status_page import CHROMEDRIVER, CHROMIUM, browser, text_of

pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs chromium and chromedriver"),
]
__all__ = ["browser"]


def make_app(stub: Stub) -> FastAPI:
    policy = httpool.Provider(
        "chat",
        base_url=stub.url,
        retry=httpool.Retry(backoff_initial=0.001, backoff_max=0.001),
        rate_limit="50/second",
        max_concurrency=4,
        breaker=httpool.Breaker(failures=3, cooldown=60.0),
    )
    app = FastAPI(lifespan=httpool.lifespan(policy))
    app.include_router(httpool.router(prefix="/httpool"))

    @app.get("/call")
    async def call() -> Any:
        try:
            response = await httpool.get_pool(app).client("chat").get("/a")
        except httpx.TransportError as exc:
            return {"error": type(exc).__name__}
        return {"status": response.status_code}

    return app


def test_status_page_shows_answers_retries_limits_and_the_breaker(browser: Any) -> None:
    """A 429 retried, then an outage that opens the breaker: the card says so."""
    for stub in serve_stub():
        stub.plan.append((429, {}))
        with serve_app(make_app(stub)) as url, httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/call").json() == {"status": 200}
            stub.respond = lambda seen: (500, {})
            for _ in range(2):
                http.get("/call")  # each is tried 3 times: the 3rd failure opens it
            assert http.get("/call").json() == {"error": "CircuitOpenError"}
            browser.get(f"{url}/httpool/")
            wait = WebDriverWait(browser, 10, poll_frequency=0.1)
            wait.until(lambda d: "breaker open" in text_of(d, "chat", "breaker"))
            answers = text_of(browser, "chat", "answers")
            assert "2xx 1" in answers
            assert "429 1" in answers
            assert "5xx 3" in answers
            assert "429 1" in text_of(browser, "chat", "retries")
            limits = text_of(browser, "chat", "limits")
            assert "concurrency 0/4" in limits
            assert "rate 50/second (memory)" in limits
            card = browser.find_element(By.CSS_SELECTOR, '[data-provider="chat"]')
            assert card.get_attribute("data-level") == "bad"
