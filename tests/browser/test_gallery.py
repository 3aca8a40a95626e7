"""The gallery in a real browser against the whole system (`likeness up`, the fake ComfyUI, the real
facecheck service): the selected character's pictures only, one entry per picture, labelled with the
request, the date and the face score; the viewer with the chain's steps and a download link; and
deleting a picture, which stays deleted after a reload while its chain is still in the log.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.system import create_character, events, system_fixtures
from tests.e2e.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(600)]

CHAIN_TIMEOUT_MS = 120_000


workdir, stack = system_fixtures("browser-gallery", image_limit=10)


def shown(number: float) -> str:
    """A score as the page writes it: whole numbers bare, others to one decimal."""
    return str(int(number)) if float(number).is_integer() else f"{number:.1f}"


def picture(page: Page, request: str) -> str:
    """Ask for a picture through the form and wait for it; its chain id."""
    # The panel keeps the last chain's id while hidden (another character was picked).
    before = page.get_by_test_id("chain-id").inner_text()
    page.get_by_label("Picture request").fill(request)
    page.get_by_test_id("picture-button").click()
    expect(page.get_by_test_id("chain-id")).to_have_text(re.compile(r"[0-9a-f-]{36}"), timeout=30_000)
    expect(page.get_by_test_id("chain-id")).not_to_have_text(before)
    expect(page.get_by_test_id("chain-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)
    return page.get_by_test_id("chain-id").inner_text()


def select(page: Page, character_id: str) -> None:
    page.get_by_test_id(f"character-{character_id}").click()
    expect(page.locator("#character-panel")).to_have_attribute("data-character-id", character_id)


def test_the_gallery_shows_each_picture_once_opens_it_and_deletes_it(page: Page, stack: Stack, photo: Path,
                                                                     tmp_path: Path) -> None:
    page.goto(f"http://127.0.0.1:{stack.port}/")
    vera = create_character(page, photo, "Vera")
    beach = picture(page, "on a beach at sunset, in a red summer dress")
    park = picture(page, "in a park")
    create_character(page, photo, "Ilse")
    ilse = picture(page, "at a concert")

    gallery = page.get_by_test_id("gallery")
    entries = gallery.get_by_test_id("picture")
    # Ilse's picture only: one entry for the picture, none for its steps.
    expect(entries).to_have_count(1, timeout=30_000)
    expect(entries.first).to_have_attribute("data-chain-id", ilse)
    expect(page.locator("#gallery-heading")).to_have_text("Your pictures of Ilse")

    select(page, vera)
    expect(entries).to_have_count(2, timeout=30_000)
    assert entries.evaluate_all("ns => ns.map(n => n.dataset.chainId)") == [park, beach]  # newest first
    finals = {}
    for chain_id in (park, beach):
        recorded = events(stack, chain_id)
        completed = next(e for e in recorded if e.type == "chain.completed").data
        finals[chain_id] = completed["final_image"]["sha256"]
        threshold = next(e for e in recorded if e.type == "chain.planned").data["threshold"]
        score = next(e for e in reversed(recorded) if e.type == "chain.step_accepted").data["score"]
        entry = gallery.locator(f'[data-chain-id="{chain_id}"]')
        expect(entry).to_have_attribute("data-sha256", finals[chain_id])
        expect(entry.get_by_test_id("picture-score")).to_have_text(f"face {shown(score)} ≥ {shown(threshold)}")
        expect(entry.get_by_test_id("picture-date")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
        expect(entry.get_by_test_id("picture-date")).not_to_be_empty()
    expect(gallery.locator(f'[data-chain-id="{beach}"]').get_by_test_id("picture-request")).to_have_text(
        "“on a beach at sunset, in a red summer dress”")
    page.screenshot(path=str(tmp_path / "gallery.png"), full_page=True)

    # The viewer: the picture large, each step with its seed and score, a download link; Escape closes it.
    gallery.locator(f'[data-chain-id="{beach}"]').get_by_role("button", name=re.compile("View the picture")).click()
    viewer = page.get_by_test_id("viewer")
    expect(viewer).to_be_visible()
    recorded = events(stack, beach)
    planned = next(e for e in recorded if e.type == "chain.planned").data["steps"]
    accepted = {e.data["step"]: e.data for e in recorded if e.type == "chain.step_accepted"}
    seeds = {e.data["step"]: e.data["seed"] for e in recorded if e.type == "chain.step_requested"}
    steps = viewer.get_by_test_id("viewer-steps").locator(":scope > li")
    expect(steps).to_have_count(len(planned))
    assert len(planned) >= 2, planned
    for index, step in enumerate(planned):
        row = steps.nth(index)
        expect(row).to_contain_text(f"Step {index + 1} · {step['kind']}")
        expect(row).to_contain_text(f"seed {seeds[index]}")
        expect(row.get_by_test_id(f"viewer-score-{index}")).to_contain_text("≥")
        expect(row.locator("img")).to_have_attribute("src", f"/images/{accepted[index]['image']['sha256']}?thumb=1")
    expect(viewer.get_by_test_id("viewer-image")).to_have_attribute("src", f"/images/{finals[beach]}")
    download = viewer.get_by_test_id("viewer-download")
    expect(download).to_have_attribute("href", f"/images/{finals[beach]}?download=1")
    answer = page.request.get(f"http://127.0.0.1:{stack.port}{download.get_attribute('href')}")
    assert answer.ok and answer.headers["content-disposition"].startswith("attachment")
    page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    # Deleting asks first.
    asked: list[str] = []

    def confirm(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    gallery.locator(f'[data-chain-id="{park}"]').get_by_role("button", name=re.compile("Delete")).click()
    expect(entries).to_have_count(1)
    expect(entries.first).to_have_attribute("data-chain-id", beach)
    assert len(asked) == 1 and "in a park" in asked[0]

    # Still gone after a reload (the page selects Vera again); the chain itself is still in the log.
    page.reload()
    expect(page.get_by_test_id("character-name")).to_have_text("Vera", timeout=30_000)
    expect(entries).to_have_count(1, timeout=30_000)
    expect(entries.first).to_have_attribute("data-chain-id", beach)
    assert "chain.completed" in {e.type for e in events(stack, park)}
