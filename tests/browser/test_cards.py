"""Character cards on the web page, in a real browser against the whole system (`likeness up`, every
service its own process, the real facecheck service judging the card's picture): a SillyTavern card
imported through the sidebar becomes a selected character with its persona, and its export downloads a
card that reads back.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from playwright.sync_api import Page, expect

from tests.e2e.stack import Stack, started
from tests.faces import no_face_image

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(600)]

PERSONA = ("Sefa maps coral reefs and explains them to anyone who asks.\n\n"
           "Scenario: the user joins her boat at dawn.")


def card(name: str) -> dict:
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": {
        "name": name, "description": "{{char}} maps coral reefs and explains them to anyone who asks.",
        "personality": "patient, precise", "scenario": "{{user}} joins her boat at dawn.", "first_mes": "",
        "mes_example": "", "creator_notes": "", "system_prompt": "", "post_history_instructions": "",
        "alternate_greetings": [], "tags": [], "creator": "", "character_version": "", "extensions": {}}}


def card_png(document: dict, picture: bytes, path: Path) -> Path:
    """The card as SillyTavern writes one: base64 JSON in the picture's `chara` text chunk."""
    info = PngInfo()
    info.add_text("chara", base64.b64encode(json.dumps(document).encode()).decode())
    Image.open(io.BytesIO(picture)).save(path, format="PNG", pnginfo=info)
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-cards")


@pytest.fixture(scope="module")
def stack(workdir: Path) -> Iterator[Stack]:
    yield from started(Stack(workdir / "stack"))


@pytest.fixture
def url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.port}/"


def import_card(page: Page, path: Path) -> None:
    page.get_by_text("Import a character card").click()
    page.get_by_label("Character card").set_input_files(str(path))
    page.get_by_role("button", name="Import card").click()


def test_a_card_with_a_face_is_imported_and_exported(page: Page, url: str, photo: Path, tmp_path: Path) -> None:
    page.goto(url)
    import_card(page, card_png(card("Sefa"), photo.read_bytes(), tmp_path / "sefa.png"))

    expect(page.get_by_test_id("character-name")).to_have_text("Sefa", timeout=30_000)
    expect(page.get_by_test_id("import-status")).to_have_text("Imported Sefa.")
    listed = page.get_by_test_id("character-list").locator("[data-character-id]", has_text="Sefa")
    expect(listed).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("no-reference")).to_be_hidden()
    expect(page.get_by_test_id("picture-button")).to_be_enabled()
    expect(page.locator("#character-meta")).to_contain_text("patient, precise")
    page.locator("#persona summary").click()
    expect(page.locator("#persona-text")).to_have_value(PERSONA)

    with page.expect_download() as downloading:
        page.get_by_test_id("export-png").click()
    download = downloading.value
    assert download.suggested_filename == "Sefa.png"
    with Image.open(download.path()) as exported:
        document = json.loads(base64.b64decode(exported.text["chara"]))
        assert exported.size == Image.open(photo).size
    assert document["spec"] == "chara_card_v2"
    assert document["data"]["name"] == "Sefa" and document["data"]["description"] == PERSONA
    assert document["data"]["personality"] == "patient, precise"


def test_a_card_without_a_face_asks_for_a_photo(page: Page, url: str, tmp_path: Path) -> None:
    page.goto(url)
    import_card(page, card_png(card("Tomo"), no_face_image(), tmp_path / "tomo.png"))

    expect(page.get_by_test_id("character-name")).to_have_text("Tomo", timeout=30_000)
    expect(page.get_by_test_id("import-status")).to_contain_text("no reference photo yet")
    expect(page.get_by_test_id("no-reference")).to_be_visible()
    expect(page.get_by_test_id("picture-button")).to_be_disabled()
    expect(page.get_by_test_id("export-png")).to_be_hidden()
    with page.expect_download() as downloading:
        page.get_by_test_id("export-json").click()
    exported = json.loads(Path(downloading.value.path()).read_text())
    assert exported["data"]["name"] == "Tomo" and exported["data"]["description"].startswith("Tomo maps coral")
