"""Refresh the README's picture of the page: `make screenshot` writes docs/page.png.

It runs the system as `make up` does (in a scratch state directory, the draft render engine since no
ComfyUI is configured, so the picture says "DRAFT"), makes a character from a face photo that ships
with insightface, asks for a picture in the chat, waits for its card to end in the picture and takes
the chat section in Debian's chromium. The PNG is reduced to a small palette so the repo stays light.
Not part of the test run: the picture changes only when someone runs this.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect, sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402
from tests.faces import face_of  # noqa: E402

OUT = REPO / "docs" / "page.png"
WIDTH = 760  # the chat column at a laptop's width; the PNG is scaled to this
COLOURS = 128


def take(out: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        photo = Path(scratch) / "mira.png"
        photo.write_bytes(face_of(1, size=384))
        stack = Stack(Path(scratch) / "state")
        stack.start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(f"http://127.0.0.1:{stack.port}/")
                page.get_by_text("Create a character").click()
                page.get_by_label("Name").fill("Mira")
                page.get_by_label("Occupation").fill("painter")
                page.get_by_label("Face photo").set_input_files(str(photo))
                page.get_by_role("button", name="Create character").click()
                expect(page.get_by_test_id("character-name")).to_have_text("Mira", timeout=60_000)
                page.get_by_label("Message").fill("Hi Mira! Send me a picture of you at the beach at sunset")
                page.get_by_role("button", name="Send").click()
                card = page.get_by_test_id("chat-chain-card").last
                expect(card.get_by_test_id("card-status")).to_have_text("completed", timeout=180_000)
                page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                                       arg=card.locator("img").last.element_handle())
                page.locator("#chat-log").evaluate("log => { log.style.maxHeight = 'none'; }")
                shot = page.locator("#chat").screenshot()
                browser.close()
        finally:
            stack.stop()
    picture = Image.open(io.BytesIO(shot)).convert("RGB")
    picture = picture.resize((WIDTH, round(picture.height * WIDTH / picture.width)), Image.Resampling.LANCZOS)
    picture.quantize(COLOURS, dither=Image.Dither.NONE).save(out, optimize=True)
    print(f"{out.relative_to(REPO)}: {picture.width}x{picture.height}, {out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    take(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
