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
def browser() -> Iterator:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - an install problem, said plainly
        pytest.fail("browser tests need the `playwright` Python package (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        pytest.fail(f"browser tests need chromium at {CHROMIUM} (apt-get install chromium; `make test` does it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class PageErrors(list):
    """Console errors and uncaught exceptions of a page; some are expected and can be allowed."""

    def __init__(self) -> None:
        super().__init__()
        self.allowed: list[str] = []

    def unexpected(self) -> list[str]:
        return [e for e in self if not any(a in e for a in self.allowed)]


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def page(browser, page_errors: PageErrors) -> Iterator:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: page_errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: page_errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    try:
        yield page
    finally:
        context.close()
    assert not page_errors.unexpected(), "the page logged errors:\n" + "\n".join(page_errors.unexpected())
