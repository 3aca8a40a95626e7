"""The draft render engine in the page, with a photo whose face touches its lower edge (issue 13, point 1).

With no ComfyUI configured, `likeness up` renders with the draft engine. It once wrote its caption over
the lower part of the picture: a photo framed with the face low was accepted as a reference, then every
picture failed "face drifted ... best score 0.0". The draft keeps the photo pixel for pixel and adds its
band below it, so the face check finds the same face.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops
from playwright.sync_api import Page, expect

from tests.browser.system import create_character
from tests.browser.test_page import CHAIN_TIMEOUT_MS
from tests.e2e.stack import Stack, started
from tests.faces import face_at_bottom

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-draft")


@pytest.fixture(scope="module")
def stack(workdir: Path) -> Iterator[Stack]:
    yield from started(Stack(workdir / "stack"))  # no LIKENESS_COMFYUI_URLS: the draft engine renders


def test_a_photo_with_the_face_at_its_lower_edge_makes_draft_pictures_that_keep_the_face(
        page: Page, stack: Stack, tmp_path: Path) -> None:
    photo = tmp_path / "low-face.png"
    photo.write_bytes(face_at_bottom(3))
    page.goto(f"http://127.0.0.1:{stack.port}/")
    create_character(page, photo, "Tove")
    page.get_by_label("Picture request").fill("in a cafe, in a green coat")
    page.get_by_test_id("picture-button").click()
    expect(page.get_by_test_id("chain-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)
    for step in range(2):
        score = page.get_by_test_id(f"score-{step}-1")
        expect(score).to_have_class(re.compile(r"\bpass\b"))
    final = page.get_by_test_id("final-image")
    response = page.request.get(f"http://127.0.0.1:{stack.port}/images/{final.get_attribute('data-sha256')}")
    picture = Image.open(io.BytesIO(response.body()))
    reference = Image.open(photo).convert("RGBA")
    # The draft says what it is (its band's height in the PNG), and the photo above the band is untouched.
    band = int(picture.info["likeness-draft-band"])
    assert picture.height == reference.height + band and picture.width == reference.width
    kept = picture.convert("RGBA").crop((0, 0, reference.width, reference.height))
    assert ImageChops.difference(kept, reference).getbbox() is None
