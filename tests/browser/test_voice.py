"""Push-to-talk in a real browser against the whole system: Chromium's fake microphone plays a request
espeak-ng spoke into a WAV; the test holds Space, lets go, and sees the transcript as the user's bubble and
the picture the request asked for start in the reply, as for typed text. The gateway transcribes with the
embedded PocketSphinx (the default backend), and the chat's own phrase rules read the transcript.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest
from playwright.sync_api import Page, expect

from services.runtime.settings import to_asyncpg_dsn
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.system import create_character, events, system_fixtures
from tests.e2e.stack import Stack
from tests.fakes.speech import ESPEAK, speak

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(600)]

# A request the chat's phrase rules take for a picture, in a voice the offline recognizer hears well.
REQUEST = "show me a picture of you on the beach"
LEAD_S = 0.4
CHAIN_TIMEOUT_MS = 120_000

workdir, stack = system_fixtures("browser-voice")


@pytest.fixture(scope="module")
def microphone(workdir: Path) -> Path:
    """What the fake microphone plays, once, from the moment the page opens it."""
    if ESPEAK is None:
        pytest.fail("the voice browser test needs espeak-ng to speak its request: apt-get install espeak-ng")
    path = workdir / "request.wav"
    path.write_bytes(speak(REQUEST, pad_s=LEAD_S))
    return path


@pytest.fixture(scope="module")
def browser(playwright, microphone: Path) -> Iterator:
    """This module's chromium, from the tests' one Playwright: its microphone is the WAV (`%noloop`: played
    once, then silence), and the page may use it without asking."""
    args = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}%noloop"]
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
    try:
        yield browser
    finally:
        browser.close()


def spoken_messages(stack: Stack) -> list[dict]:
    """Every user message with a voice in the events table (in a thread: Playwright's loop runs in this one)."""

    async def read() -> list[dict]:
        conn = await asyncpg.connect(to_asyncpg_dsn(stack.database_url), timeout=10)
        try:
            rows = await conn.fetch("SELECT data FROM events WHERE type = 'chat.user_message_sent' "
                                    "AND data ? 'voice' AND data->'voice' <> 'null'::jsonb", timeout=10)
        finally:
            await conn.close(timeout=10)
        return [json.loads(row["data"]) for row in rows]

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


def test_hold_space_speak_let_go_and_the_picture_starts(page: Page, stack: Stack, photo: Path,
                                                       microphone: Path) -> None:
    page.goto(f"http://127.0.0.1:{stack.port}/")
    create_character(page, photo, "Vera")
    button = page.get_by_test_id("voice-button")
    expect(button).to_be_visible()

    # Space is push-to-talk when the focus is not in a text field or on a button: click beside them.
    page.locator("#chat-heading").click()
    page.keyboard.down("Space")
    expect(button).to_have_attribute("data-state", "listening")
    expect(button).to_have_attribute("aria-pressed", "true")
    # Held as long as the request takes to say, and a little more: no voice activity detection ends it.
    page.wait_for_timeout((len(microphone.read_bytes()) - 44) / 2 / 22050 * 1000 + 700)
    page.keyboard.up("Space")

    mine = page.locator("#chat-log .bubble-user").last
    expect(mine).to_have_attribute("data-voice", "1", timeout=60_000)
    heard = mine.locator(".bubble-text").inner_text()
    assert re.search(r"\bpicture\b", heard) and re.search(r"\bbeach\b", heard), heard

    # The reply and its picture card, exactly as for a typed request.
    reply = page.locator("#chat-log .bubble-character").last
    expect(reply).not_to_have_attribute("data-streaming", "1", timeout=60_000)
    card = reply.get_by_test_id("chat-chain-card")
    expect(card).to_have_count(1, timeout=30_000)
    chain_id = card.get_attribute("data-chain-id")
    assert "chain.requested" in {e.type for e in events(stack, chain_id)}
    expect(card.get_by_test_id("card-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)
    expect(button).to_have_attribute("data-state", "idle")

    # The conversation's log says how the message was heard; the recording itself was not kept.
    (message,) = [m for m in spoken_messages(stack) if m["text"] == heard]
    assert message["voice"]["backend"] == "pocketsphinx" and message["voice"]["audio_media_type"] == "audio/wav"
    assert message["voice"]["seconds"] > 0 and message["voice"]["kept"] is False


# Records with MediaRecorder in the page's own format, then posts the recording to /chat/voice as it is.
_RECORD_AND_SEND = """async ([mime, ms, characterId]) => {
  const stream = await navigator.mediaDevices.getUserMedia(
    {audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
  const recorder = new MediaRecorder(stream, {mimeType: mime});
  const chunks = [];
  recorder.ondataavailable = (event) => chunks.push(event.data);
  const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
  recorder.start();
  await new Promise((resolve) => setTimeout(resolve, ms));
  recorder.stop();
  await stopped;
  stream.getTracks().forEach((track) => track.stop());
  const form = new FormData();
  form.append("audio", new Blob(chunks, {type: mime}), "recording.webm");
  form.append("character_id", characterId);
  const response = await fetch("/chat/voice", {method: "POST", body: form});
  return [response.status, await response.text()];
}"""


def test_what_chromium_records_is_read_as_it_comes(page: Page, stack: Stack, microphone: Path, page_errors) -> None:
    """WebM as Chromium's MediaRecorder writes it, straight to the API: PCM and Opus are both heard (Opus
    decoded by the gateway with PyAV before the offline recognizer reads it)."""
    page.goto(f"http://127.0.0.1:{stack.port}/")
    character = page.evaluate("async () => (await (await fetch('/characters')).json())[0].id")
    hold_ms = (len(microphone.read_bytes()) - 44) / 2 / 22050 * 1000 + 700

    status, body = page.evaluate(_RECORD_AND_SEND, ["audio/webm;codecs=pcm", hold_ms, character])
    assert status == 200, body
    transcript = json.loads(body.split("event: transcript\ndata: ", 1)[1].split("\n", 1)[0])
    assert re.search(r"\bpicture\b", transcript["text"]) and transcript["audio_media_type"] == "audio/webm"
    assert "event: reply" in body

    status, body = page.evaluate(_RECORD_AND_SEND, ["audio/webm;codecs=opus", hold_ms, character])
    assert status == 200, body
    transcript = json.loads(body.split("event: transcript\ndata: ", 1)[1].split("\n", 1)[0])
    assert re.search(r"\bpicture\b", transcript["text"]) and transcript["audio_media_type"] == "audio/webm"
