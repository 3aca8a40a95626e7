"""The web page in a real browser against the mock gateway (tests/browser/mock_gateway.py): fast,
page-level checks of everything the page does, with the gateway's shapes but no services behind it.

The same page against the whole system is tests/browser/test_page.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.mock_gateway import MockGateway
from tests.faces import face_of

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

CHAIN_TIMEOUT_MS = 20_000


@pytest.fixture
def mock() -> Iterator[MockGateway]:
    with MockGateway(tick_s=0.03) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "face.png"
    path.write_bytes(face_of(0))
    return path


def create_character(page: Page, photo: Path, name: str = "Mira") -> str:
    """Fill in and send the create form; the id of the new (selected) character."""
    page.get_by_text("Create a character").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Gender").select_option("woman")
    page.get_by_label("Occupation").fill("painter")
    page.get_by_label("Art style").select_option("photoreal")
    page.get_by_label("Face photo").set_input_files(str(photo))
    page.get_by_role("button", name="Create character").click()
    expect(page.get_by_test_id("character-name")).to_have_text(name)
    return page.locator("#character-panel").get_attribute("data-character-id")


def ask_for_picture(page: Page, request: str) -> str:
    page.get_by_label("Picture request").fill(request)
    page.get_by_test_id("picture-button").click()
    expect(page.get_by_test_id("chain")).to_be_visible()
    expect(page.get_by_test_id("chain-id")).to_have_text(re.compile(r"[0-9a-f-]{36}"))
    return page.get_by_test_id("chain-id").inner_text()


def wait_completed(page: Page) -> None:
    expect(page.get_by_test_id("chain-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)


def log_seqs(page: Page) -> list[int]:
    return [int(s) for s in page.locator("#chain-log li[data-seq]").evaluate_all("ns => ns.map(n => n.dataset.seq)")]


def test_a_built_in_character_without_a_photo_asks_for_one(page: Page, mock: MockGateway, photo: Path) -> None:
    page.goto(mock.url)
    page.get_by_test_id("character-ayla").click()

    notice = page.get_by_test_id("no-reference")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("add a photo of this character before asking for pictures")
    expect(page.get_by_test_id("picture-button")).to_be_disabled()

    page.get_by_label("Photo of the character").set_input_files(str(photo))
    page.get_by_role("button", name="Upload photo").click()

    expect(notice).to_be_hidden()
    expect(page.get_by_test_id("picture-button")).to_be_enabled()
    expect(page.locator("#character-avatar")).to_be_visible()
    assert mock.state.characters["ayla"]["has_reference"]


def test_a_new_character_chats_with_a_streamed_reply_in_offline_mode(page: Page, mock: MockGateway,
                                                                     photo: Path) -> None:
    page.goto(mock.url)
    character = create_character(page, photo)
    expect(page.get_by_test_id(f"character-{character}")).to_have_attribute("aria-pressed", "true")
    # Record every text the reply bubble shows while it streams in, and whether the log was busy
    # (screen readers wait for the whole reply instead of reading each token).
    page.evaluate("""() => {
        window.__seen = [];
        window.__busy = [];
        const log = document.getElementById('chat-log');
        new MutationObserver(() => {
            const last = [...document.querySelectorAll('#chat-log .bubble-character .bubble-text')].pop();
            if (last) window.__seen.push(last.textContent);
            if (last) window.__busy.push(log.getAttribute('aria-busy'));
        }).observe(log, {subtree: true, childList: true, characterData: true});
    }""")

    page.get_by_label("Message").fill("good morning")
    page.keyboard.press("Enter")

    reply = page.locator("#chat-log .bubble-character").last
    expect(reply).to_contain_text("Hello! I am Mira, and you said: good morning")
    expect(reply).not_to_have_attribute("data-streaming", "1")
    seen = [text for text in page.evaluate("window.__seen") if text]
    assert len(set(seen)) >= 3, f"the reply did not stream in parts: {seen}"
    assert "true" in page.evaluate("window.__busy"), "the chat log was not marked busy while the reply streamed"
    expect(page.get_by_test_id("chat-log")).not_to_have_attribute("aria-busy", "true")
    expect(reply.get_by_text("offline persona mode")).to_be_visible()
    expect(page.get_by_test_id("offline-badge")).to_be_visible()
    expect(page.locator("#chat-log .bubble-user")).to_have_text(re.compile("good morning"))


def test_a_picture_is_followed_live_to_its_final_image(page: Page, mock: MockGateway, photo: Path,
                                                       tmp_path: Path) -> None:
    mock.state.tick_s = 0.08
    page.goto(mock.url)
    create_character(page, photo)
    page.evaluate("""() => {
        window.__queue = []; window.__previews = 0;
        new MutationObserver(() => {
            const q = document.getElementById('chain-queue');
            if (!q.hidden) window.__queue.push(q.textContent);
            window.__previews += document.querySelectorAll('img[data-preview="1"]').length;
        }).observe(document.getElementById('chain'), {subtree: true, childList: true, attributes: true, characterData: true});
    }""")

    chain_id = ask_for_picture(page, "on a beach, drift")

    assert re.search(f"chain={chain_id}", page.url)
    steps = page.get_by_test_id("chain-steps").locator(":scope > li")
    expect(steps).to_have_count(3)
    expect(steps.nth(0)).to_contain_text("Step 1 · background")
    expect(page.get_by_test_id("chain-threshold")).to_contain_text("40")
    wait_completed(page)

    # Step 1 drifted once: attempt 1 scored below the threshold and was retried, attempt 2 kept.
    expect(page.get_by_test_id("score-0-1")).to_have_text("face 22.5 < 40")
    expect(page.get_by_test_id("decision-0-1")).to_contain_text("retried")
    expect(page.get_by_test_id("score-0-2")).to_have_text("face 61 ≥ 40")
    expect(page.get_by_test_id("decision-0-2")).to_have_text("accepted")
    for step in range(3):
        expect(page.get_by_test_id(f"step-{step}")).to_have_attribute("data-state", "accepted")
    final = page.get_by_test_id("final-image").locator("img")
    expect(final).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=final.element_handle())
    assert any("position" in text for text in page.evaluate("window.__queue")), "no queue position was shown"
    assert page.evaluate("window.__previews") > 0, "no live preview was shown"
    assert log_seqs(page) == list(range(1, len(mock.state.chains[chain_id].events) + 1))
    expect(page.get_by_test_id("chain-log")).to_contain_text("Completed")

    # One gallery entry per picture (its steps are in the viewer), labelled with its request.
    expect(page.get_by_test_id("gallery").get_by_test_id("picture")).to_have_count(1)
    expect(page.get_by_test_id("gallery").get_by_test_id("picture")).to_have_attribute("data-chain-id", chain_id)
    expect(page.get_by_test_id("tree").locator(".tree-node")).to_have_count(1)
    page.screenshot(path=str(tmp_path / "mock-final.png"), full_page=True)


def test_while_no_renderer_answers_the_page_says_so_until_progress_arrives(page: Page, mock: MockGateway,
                                                                            photo: Path) -> None:
    mock.state.renderer_away = True
    page.goto(mock.url)
    create_character(page, photo)

    ask_for_picture(page, "by the lighthouse")

    queue = page.get_by_test_id("chain-queue")
    expect(queue).to_be_visible()
    expect(queue).to_have_text(re.compile(r"^Waiting for a renderer to come back \(\d+ s of at most 60 s\)\.$"))
    # The line follows the wait as it goes on (one `waiting` event a tick, from 0 s), not just its first event.
    expect(queue).to_have_text(re.compile(r"\([1-9]\d* s of at most 60 s\)"))
    expect(page.get_by_test_id("attempt-0-1")).to_have_attribute("data-state", "rendering")
    assert page.get_by_test_id("progress-0-1").evaluate("p => p.value") == 0

    # The line as it is when the render first moves on: the end of the chain hides it too, so
    # looking only once the chain is done would not tell whether the progress cleared it.
    page.evaluate("""() => {
        window.__atProgress = null;
        new MutationObserver(() => {
            const q = document.getElementById('chain-queue');
            const p = document.querySelector('[data-testid="progress-0-1"]');
            if (window.__atProgress !== null || !(p.value > 0)) return;
            window.__atProgress = {hidden: q.hidden, text: q.textContent};
        }).observe(document.getElementById('chain'), {subtree: true, childList: true, attributes: true, characterData: true});
    }""")
    mock.state.renderer_away = False

    expect(queue).to_be_hidden()
    wait_completed(page)
    assert page.evaluate("window.__atProgress") == {"hidden": True, "text": ""}


def test_a_reload_mid_chain_shows_the_done_steps_again_and_the_rest_live(page: Page, mock: MockGateway,
                                                                        photo: Path, tmp_path: Path) -> None:
    mock.state.tick_s = 0.15
    page.goto(mock.url)
    create_character(page, photo)
    chain_id = ask_for_picture(page, "in a park")
    expect(page.get_by_test_id("step-0")).to_have_attribute("data-state", "accepted", timeout=CHAIN_TIMEOUT_MS)
    assert mock.state.chains[chain_id].status == "running"

    page.reload()

    expect(page.get_by_test_id("chain-id")).to_have_text(chain_id)
    expect(page.get_by_test_id("step-0")).to_have_attribute("data-state", "accepted")
    expect(page.get_by_test_id("score-0-1")).to_contain_text("≥ 40")
    page.screenshot(path=str(tmp_path / "mock-resumed.png"), full_page=True)
    wait_completed(page)
    expect(page.get_by_test_id("step-2")).to_have_attribute("data-state", "accepted")
    assert log_seqs(page) == list(range(1, len(mock.state.chains[chain_id].events) + 1))
    # The character chosen before the reload is chosen again.
    expect(page.get_by_test_id("character-name")).to_have_text("Mira")


def test_a_dropped_stream_resumes_from_the_last_event_id_without_duplicates(page: Page, mock: MockGateway,
                                                                           photo: Path) -> None:
    mock.state.tick_s = 0.1
    page.goto(mock.url)
    create_character(page, photo)
    chain_id = ask_for_picture(page, "in a garden")
    expect(page.get_by_test_id("step-0")).to_have_attribute("data-state", "accepted", timeout=CHAIN_TIMEOUT_MS)

    mock.drop_streams(chain_id)

    wait_completed(page)
    resumed = [last for cid, last in mock.state.stream_opens if cid == chain_id and last is not None]
    assert resumed, f"the browser reconnected without Last-Event-ID: {mock.state.stream_opens}"
    assert log_seqs(page) == list(range(1, len(mock.state.chains[chain_id].events) + 1))


def test_asking_in_chat_starts_a_picture(page: Page, mock: MockGateway, photo: Path) -> None:
    """The chat names the chain before it is recorded (see the mock's `chat_record_delay_s`): the page
    waits for it instead of opening its stream at once, which the gateway would refuse with a 404."""
    page.goto(mock.url)
    create_character(page, photo)

    page.get_by_label("Message").fill("send me a picture of you at the beach")
    page.get_by_role("button", name="Send").click()

    # The picture is part of the conversation: its live card sits in the reply and ends in the picture.
    card = page.locator("#chat-log .bubble-character").last.get_by_test_id("chat-chain-card")
    expect(card).to_have_count(1)
    expect(card.get_by_test_id("card-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)
    expect(card.get_by_test_id("card-final").locator("img")).to_be_visible()
    expect(card.locator('[data-testid="step-0"]')).to_have_attribute("data-state", "accepted")
    expect(card.get_by_test_id("card-download")).to_have_attribute("href", re.compile(r"/images/[0-9a-f]+\?download=1"))
    expect(page.get_by_test_id("chain")).to_be_hidden()  # the chain panel is for requests made with the form


def test_branching_from_a_step_in_the_edit_tree_starts_a_child_chain(page: Page, mock: MockGateway, photo: Path) -> None:
    page.goto(mock.url)
    create_character(page, photo)
    parent = ask_for_picture(page, "on a beach")
    wait_completed(page)
    expect(page.get_by_test_id("gallery").get_by_test_id("picture")).to_have_count(1)

    step = page.get_by_test_id("tree").locator(f'[data-chain-id="{parent}"] li[data-step="0"]')
    step.get_by_test_id("tree-branch").click()
    dialog = page.get_by_test_id("branch-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("From step")).to_have_value("0")
    dialog.get_by_label("What should change from there").fill("in a blue evening dress")
    dialog.get_by_role("button", name="Start branch").click()

    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("chain-id")).not_to_have_text(parent)
    expect(page.locator("#chain-heading")).to_be_focused()  # the keyboard goes on to the new chain
    expect(page.locator("#chain-request")).to_contain_text("a branch from step 1")
    wait_completed(page)
    child = page.get_by_test_id("chain-id").inner_text()
    assert mock.state.chains[child].parent_chain_id == parent
    nested = page.locator(f'.tree-node[data-chain-id="{parent}"] .tree-children .tree-node[data-chain-id="{child}"]')
    expect(nested).to_have_count(1)


def test_the_image_limit_shows_the_gateways_detail(page: Page, mock: MockGateway, photo: Path,
                                                   page_errors) -> None:
    page_errors.allowed.append("403")  # the browser logs the refused request itself
    mock.state.image_limit = 0
    page.goto(mock.url)
    create_character(page, photo)

    page.get_by_label("Picture request").fill("on a beach")
    page.get_by_test_id("picture-button").click()

    notice = page.get_by_test_id("limit-notice")
    expect(notice).to_be_visible()
    expect(notice).to_have_text("You have used all 0 pictures of this session.")
    expect(notice).to_have_attribute("role", "alert")
    expect(page.get_by_test_id("chain")).to_be_hidden()


def test_a_picture_asked_for_in_chat_past_the_limit_says_log_in(page: Page, mock: MockGateway,
                                                               photo: Path) -> None:
    mock.state.image_limit = 0
    page.goto(mock.url)
    create_character(page, photo)

    page.get_by_label("Message").fill("send me a picture of you at the beach")
    page.get_by_role("button", name="Send").click()

    expect(page.locator("#chat-log .bubble-character").last).to_contain_text("Log in and I will send you more")
    notice = page.get_by_test_id("limit-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("log in")
    expect(page.get_by_test_id("chain")).to_be_hidden()


def test_the_page_is_usable_from_the_keyboard_and_every_control_is_labelled(page: Page, mock: MockGateway) -> None:
    page.goto(mock.url)
    expect(page.get_by_test_id("character-ayla")).to_be_visible()

    page.get_by_test_id("character-ayla").focus()
    page.keyboard.press("Enter")

    expect(page.get_by_test_id("character-ayla")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_label("Message")).to_be_focused()
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter(n => !(n.labels && n.labels.length) && !n.getAttribute('aria-label') && !n.textContent.trim())
        .map(n => n.outerHTML)""")
    assert unlabelled == []
    for log in ("chat-log", "chain-log"):
        expect(page.get_by_test_id(log)).to_have_attribute("aria-live", "polite")


def test_a_chain_that_cannot_be_opened_is_said_so_and_forgotten(page: Page, mock: MockGateway, page_errors) -> None:
    page_errors.allowed.append("404")  # the browser logs each refused stream itself
    page.goto(f"{mock.url}/#chain=00000000-0000-4000-8000-000000000000")

    expect(page.get_by_test_id("chain-status")).to_have_text("disconnected", timeout=CHAIN_TIMEOUT_MS)
    expect(page.get_by_test_id("chain-log")).to_contain_text("could not be opened")
    assert "chain=" not in page.url
    assert page.evaluate("localStorage.getItem('likeness.chain')") is None


def test_the_chat_follows_a_long_reply_unless_the_reader_scrolled_up(page: Page, mock: MockGateway,
                                                                     photo: Path) -> None:
    mock.state.tick_s = 0.02
    page.goto(mock.url)
    create_character(page, photo)
    long_text = " ".join(f"word{n}" for n in range(150))
    page.get_by_label("Message").fill(long_text)
    page.keyboard.press("Enter")
    reply = page.locator("#chat-log .bubble-character").last
    expect(reply).to_contain_text("word149")
    expect(reply).not_to_have_attribute("data-streaming", "1")
    log = page.get_by_test_id("chat-log")
    # The reply grew far below the log's height, and its end is in view.
    assert log.evaluate("l => l.scrollHeight > 2 * l.clientHeight")
    assert log.evaluate("l => l.scrollHeight - l.scrollTop - l.clientHeight") <= 24

    page.get_by_label("Message").fill(long_text)
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('#chat-log .bubble-character').length === 2")
    log.evaluate("l => { l.scrollTop = 0; }")  # the reader goes back up while the reply streams
    expect(page.locator("#chat-log .bubble-character").last).not_to_have_attribute("data-streaming", "1")
    assert log.evaluate("l => l.scrollTop") == 0


def test_an_old_error_goes_away_when_the_next_action_is_sent(page: Page, mock: MockGateway, photo: Path,
                                                             tmp_path: Path, page_errors) -> None:
    page_errors.allowed.append("415")  # the browser logs the refused upload itself
    page.goto(mock.url)
    create_character(page, photo)
    not_a_photo = tmp_path / "notes.png"
    not_a_photo.write_text("these are notes, not a picture")
    page.get_by_text("Create a character").click()
    page.get_by_label("Name").fill("Broken")
    page.get_by_label("Gender").select_option("woman")
    page.get_by_label("Occupation").fill("painter")
    page.get_by_label("Face photo").set_input_files(str(not_a_photo))
    page.get_by_role("button", name="Create character").click()
    banner = page.locator("#error-notice")
    expect(banner).to_be_visible()

    page.get_by_label("Message").fill("hello again")
    page.keyboard.press("Enter")
    expect(page.locator("#chat-log .bubble-character").last).to_contain_text("you said: hello again")
    expect(banner).to_be_hidden()


def test_a_new_photo_shows_as_the_avatar_without_a_reload(page: Page, mock: MockGateway, photo: Path) -> None:
    page.goto(mock.url)
    listed = page.get_by_test_id("character-ayla")
    expect(listed.locator(".avatar-initial")).to_be_visible()  # no photo yet: her initial
    listed.click()
    page.get_by_label("Photo of the character").set_input_files(str(photo))
    page.get_by_role("button", name="Upload photo").click()
    # Both avatars show the photo now, each from a URL naming this photo (no stale cached one).
    for image in (page.locator("#character-avatar"), listed.locator("img.avatar")):
        expect(image).to_be_visible()
        expect(image).to_have_attribute("src", re.compile(r"/avatar/ayla\?v=[0-9a-f]{12}$"))
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())


def test_picking_another_character_puts_the_last_ones_picture_away(page: Page, mock: MockGateway,
                                                                   photo: Path) -> None:
    page.goto(mock.url)
    mira = create_character(page, photo, "Mira")
    create_character(page, photo, "Ines")
    ask_for_picture(page, "on a beach at sunset")
    expect(page.get_by_test_id("chain")).to_have_attribute("data-character-id", re.compile("ines"))
    page.get_by_test_id(f"character-{mira}").click()
    expect(page.get_by_test_id("chain")).to_be_hidden()
    assert "#chain=" not in page.url


def test_a_persona_is_written_when_the_character_is_created(page: Page, mock: MockGateway, photo: Path) -> None:
    page.goto(mock.url)
    page.get_by_text("Create a character").click()
    page.get_by_label("Name").fill("Noor")
    page.get_by_label("Gender").select_option("woman")
    page.get_by_label("Persona", exact=True).fill("Noor is a marine biologist who answers with a tide fact.")
    page.get_by_label("Face photo").set_input_files(str(photo))
    page.get_by_role("button", name="Create character").click()
    expect(page.get_by_test_id("character-name")).to_have_text("Noor")
    page.locator("#persona summary").click()
    expect(page.locator("#persona-text")).to_have_value("Noor is a marine biologist who answers with a tide fact.")


def test_a_guest_sees_the_pictures_left_signs_up_and_logs_in_elsewhere_with_the_key(
        page: Page, mock: MockGateway, photo: Path, browser) -> None:
    mock.state.image_limit = 3
    page.goto(mock.url)
    status = page.get_by_test_id("account-status")
    expect(status).to_have_text("Guest: 3 pictures left")
    create_character(page, photo)
    ask_for_picture(page, "on a beach")
    expect(status).to_have_text("Guest: 2 pictures left")

    page.get_by_role("button", name="Sign up").click()
    key = page.locator("#new-key-value")
    expect(key).to_have_text(re.compile(r"^lk_\w+$"))
    expect(status).to_have_text("Logged in")
    expect(page.get_by_role("button", name="Sign up")).to_be_hidden()

    # Another browser (no cookie) logs in with the key and is the same user.
    other = browser.new_context().new_page()
    other.goto(mock.url)
    expect(other.get_by_test_id("account-status")).to_have_text("Guest: 3 pictures left")
    other.get_by_role("button", name="Log in with a key").click()
    other.get_by_label("API key").fill(key.inner_text())
    other.get_by_role("button", name="Log in", exact=True).click()
    expect(other.get_by_test_id("account-status")).to_have_text("Logged in")
    other.get_by_role("button", name="Log out").click()
    expect(other.get_by_test_id("account-status")).to_have_text(re.compile("^Guest: "))
    other.context.close()
