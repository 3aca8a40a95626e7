"""The whole system for the browser tests: `likeness up` rendering through the fake ComfyUI, and its log."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.fakes import start_fake_comfyui
from tests.e2e.stack import Recorded, Stack, started

__all__ = ["create_character", "events", "system", "system_fixtures"]


def system(workdir: Path, *, step_delay_s: float = 0.0, image_limit: int = 10) -> Iterator[Stack]:
    """`yield from` it in a module fixture: the fake ComfyUI (it outputs its input picture, so the face stays;
    `step_delay_s` per sampler step) and the system rendering through it, for the module's life."""
    process, url = start_fake_comfyui(workdir, *(("--step-delay", str(step_delay_s)) if step_delay_s else ()))
    try:
        yield from started(Stack(workdir / "stack", env={"LIKENESS_COMFYUI_URLS": url,
                                                         "LIKENESS_GATEWAY_ANONYMOUS_IMAGE_LIMIT": str(image_limit)}))
    finally:
        process.stop()


def events(stack: Stack, chain_id: str) -> list[Recorded]:
    """The chain's stream from the events table (in a thread: Playwright's loop runs in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(stack.events, chain_id).result()


def system_fixtures(name: str, **options: float):
    """A module's `workdir` and `stack` fixtures: `workdir, stack = system_fixtures("browser-x", image_limit=2)`."""

    @pytest.fixture(scope="module")
    def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
        return tmp_path_factory.mktemp(name)

    @pytest.fixture(scope="module")
    def stack(workdir: Path) -> Iterator[Stack]:
        yield from system(workdir, **options)

    return workdir, stack


def create_character(page: Page, photo: Path, name: str) -> str:
    """A character of one's own, made with a face photo through the page's form; its id."""
    page.get_by_text("Create a character").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Gender").select_option("woman")
    page.get_by_label("Occupation").fill("painter")
    page.get_by_label("Face photo").set_input_files(str(photo))
    page.get_by_role("button", name="Create character").click()
    expect(page.get_by_test_id("character-name")).to_have_text(name, timeout=30_000)
    expect(page.get_by_test_id("no-reference")).to_be_hidden()
    expect(page.get_by_test_id("picture-button")).to_be_enabled()
    return page.locator("#character-panel").get_attribute("data-character-id")
