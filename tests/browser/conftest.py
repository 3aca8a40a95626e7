"""A real browser (Debian's chromium, driven by Playwright) for the web page tests.

Playwright's own browser downloads are never used: the browser is /usr/bin/chromium, which
`make test` installs with apt-get when it is missing. Each test gets a fresh context (its own
cookies, so its own anonymous session and localStorage) and a page whose console errors and
uncaught exceptions fail the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("LIKENESS_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the web page in a real headless chromium")


@pytest.fixture(scope="package")
def playwright() -> Iterator:
    """One Playwright for every browser test: its sync API runs an event loop in this thread, and a second
    one started while the first runs is refused ("Sync API inside the asyncio loop")."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - an install problem, said plainly
        pytest.fail("browser tests need the `playwright` Python package (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        pytest.fail(f"browser tests need chromium at {CHROMIUM} (apt-get install chromium; `make test` does it)")
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="package")
def browser(playwright) -> Iterator:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


class PageErrors(list):
    """What went wrong in a page: console errors, uncaught exceptions and HTTP answers >= 400.

    Each entry is `what` (matched against `allowed`) and `where` (the URL, only reported): a status
    allowed by a test ("403") is never matched by accident inside an id or a hash of a URL. Chromium
    writes some refusals to the console without their URL (an EventSource's "response has a status
    404"), so every failed answer is recorded with its URL too, and so are requests that never got
    an answer (shown with the errors, not counted: closing a live stream aborts its request).
    """

    def __init__(self) -> None:
        super().__init__()
        self.allowed: list[str] = []
        self.failed_requests: list[str] = []

    def add(self, what: str, where: str = "") -> None:
        self.append((what, where))

    def unexpected(self) -> list[str]:
        return [f"{what} [{where}]" if where else what for what, where in self
                if not any(a in what for a in self.allowed)]

    def report(self) -> str:
        lines = ["the page logged errors:", *self.unexpected()]
        if self.failed_requests:
            lines += ["requests that got no answer:", *self.failed_requests]
        return "\n".join(lines)


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


def _on_console(errors: PageErrors, message) -> None:
    if message.type == "error":
        errors.add(f"console: {message.text}", (message.location or {}).get("url", ""))


def _on_response(errors: PageErrors, response) -> None:
    if response.status >= 400:
        errors.add(f"http {response.status} {response.request.method}", response.url)


@pytest.fixture
def page(browser, page_errors: PageErrors) -> Iterator:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: page_errors.add(f"uncaught: {exc}"))
    page.on("console", lambda message: _on_console(page_errors, message))
    page.on("response", lambda response: _on_response(page_errors, response))
    page.on("requestfailed", lambda request: page_errors.failed_requests.append(
        f"{request.method} {request.url}: {request.failure}"))
    try:
        yield page
    finally:
        context.close()
    if page_errors.unexpected():
        pytest.fail(page_errors.report(), pytrace=False)
