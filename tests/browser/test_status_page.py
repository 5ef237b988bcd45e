"""The status page in a real headless Chromium: its gauges fill in and follow the traffic."""

# No `from __future__ import annotations`: FastAPI resolves the routes' annotations.

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import httpool

from ..servers import serve_app
from ..upstream import Upstream

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]

#: Set HTTPOOL_UPDATE_SCREENSHOT=1 to refresh the screenshot in the docs.
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "status-page.png"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium through chromedriver, with a fresh profile and no outside traffic."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--window-size=1200,640",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(15)
    try:
        yield driver
    finally:
        driver.quit()


def make_app(upstream: Upstream) -> FastAPI:
    """An app with three providers on loopback (one unreachable), the router at /httpool."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    app = FastAPI(
        lifespan=httpool.lifespan(
            httpool.Provider(
                "chat",
                base_url=upstream.url,
                health_path="/ping",
                limits=httpx.Limits(max_connections=4),
            ),
            httpool.Provider(
                "embeddings", base_url=f"{upstream.url}/v1", limits=httpx.Limits(max_connections=20)
            ),
            httpool.Provider("search", base_url=f"http://127.0.0.1:{dead_port}"),
        )
    )
    app.include_router(httpool.router(prefix="/httpool"))

    @app.get("/call/{name}")
    async def call(name: str, path: str = "/ping") -> Any:
        try:
            response = await httpool.get_pool(app).client(name).get(path)
        except httpx.TransportError as exc:
            return {"error": type(exc).__name__}
        return {"status": response.status_code}

    return app


def text_of(driver: Any, provider: str, field: str) -> str:
    """The text of one field of one provider's card."""
    css = f'[data-provider="{provider}"] [data-field="{field}"]'
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def test_status_page_shows_live_gauges(upstream: Upstream, browser: Any, tmp_path: Path) -> None:
    """After some traffic the page shows each provider's counters and the requests in flight."""
    with serve_app(make_app(upstream)) as url, httpx.Client(base_url=url, timeout=10) as http:
        for name, count in (("chat", 40), ("embeddings", 25), ("search", 3)):
            for _ in range(count):
                http.get(f"/call/{name}")
        browser.get(f"{url}/httpool/")
        wait = WebDriverWait(browser, 10, poll_frequency=0.1)
        wait.until(lambda d: text_of(d, "chat", "requests_served") == "40")
        assert text_of(browser, "embeddings", "requests_served") == "25"
        assert text_of(browser, "search", "errors") == "3"
        assert text_of(browser, "search", "kinds") == "ConnectError 3"
        assert browser.find_element(By.ID, "live").text == "Live"
        assert browser.title == "httpool status"
        names = [
            e.get_attribute("data-provider")
            for e in browser.find_elements(By.CSS_SELECTOR, "[data-provider]")
        ]
        assert names == ["chat", "embeddings", "search"]

        # Six slow calls on "chat" (at most 4 connections): 4 in use, 2 waiting, while
        # "embeddings" gets steady traffic, and the page refreshes by itself meanwhile.
        stop = threading.Event()

        def steady_traffic() -> None:
            deadline = time.monotonic() + 20
            while not stop.is_set() and time.monotonic() < deadline:
                http.get("/call/embeddings")
                stop.wait(0.04)

        with ThreadPoolExecutor(7) as pool:
            steady = pool.submit(steady_traffic)
            slow = [
                pool.submit(http.get, "/call/chat", params={"path": "/slow?s=4"}) for _ in range(6)
            ]
            try:
                wait.until(lambda d: text_of(d, "chat", "waiters") == "2")
                wait.until(lambda d: text_of(d, "chat", "connections_in_use") == "4")
                wait.until(lambda d: text_of(d, "embeddings", "rate").strip("0").isdigit())
                assert text_of(browser, "chat", "requests_in_flight") == "6"
                card = browser.find_element(By.CSS_SELECTOR, '[data-provider="chat"]')
                assert card.get_attribute("data-level") == "warn"
                assert (
                    text_of(browser, "chat", "note")
                    == "Every connection is busy: 2 waiting for one"
                )
                meter = card.find_element(By.CSS_SELECTOR, '[role="meter"]')
                assert meter.get_attribute("aria-valuenow") == "4"
                assert meter.get_attribute("aria-valuemax") == "4"
                time.sleep(0.5)  # let the bars' width transition end
                shot = tmp_path / "status-page.png"
                assert browser.save_screenshot(str(shot))
            finally:
                stop.set()
            assert all(call.result(timeout=15).status_code == 200 for call in slow)
            steady.result(timeout=5)
        wait.until(lambda d: text_of(d, "chat", "requests_served") == "46")
        assert text_of(browser, "chat", "connections_in_use") == "0"
        assert text_of(browser, "chat", "waiters") == "0"
        assert not browser.find_element(By.CSS_SELECTOR, '[data-field="note"]').is_displayed()
    assert shot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("HTTPOOL_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)


def test_status_page_shows_each_providers_proxy_masked(upstream: Upstream, browser: Any) -> None:
    """A provider that goes through a proxy says so on its card, its credentials masked;
    a direct one shows no proxy."""
    from ..proxies import serve_proxy

    with serve_proxy(auth=("alice", "page-proxy-pw")) as proxy:
        secret = proxy.url.replace("http://", "http://alice:page-proxy-pw@")
        app = FastAPI(
            lifespan=httpool.lifespan(
                httpool.Provider("via", base_url=upstream.url, proxy=secret),
                httpool.Provider("direct", base_url=upstream.url, trust_env=False),
            )
        )
        app.include_router(httpool.router(prefix="/httpool"))
        with serve_app(app) as url:
            browser.get(f"{url}/httpool/")
            wait = WebDriverWait(browser, 10, poll_frequency=0.1)
            masked = proxy.url.replace("http://", "via http://***@")
            wait.until(lambda d: text_of(d, "via", "proxy") == masked)
            direct = '[data-provider="direct"] [data-field="proxy"]'
            assert not browser.find_element(By.CSS_SELECTOR, direct).is_displayed()
            assert "page-proxy-pw" not in browser.page_source
            assert "page-proxy-pw" not in httpx.get(f"{url}/httpool/stats").text
