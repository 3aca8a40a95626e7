"""The web page in a real browser against the whole system: `likeness up` (every service its own
process, embedded NATS and Postgres) rendering through the fake ComfyUI, face-checked by the real
facecheck service.

The fake ComfyUI sleeps between sampler steps (`--step-delay`), so a three-step chain takes long
enough to reload the page in the middle of it and watch it resume: the steps already done are
shown again from the log, the later ones arrive live. Page-level details (retries, queue position,
previews, limits, branching dialogs) are covered quickly against the mock in test_page_mock.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.system import create_character, events, system_fixtures
from tests.e2e.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(600)]

# Seconds per sampler step of the fake ComfyUI: a photoreal step samples 8 steps, ~2.4 s a render.
STEP_DELAY_S = 0.3
CHAIN_TIMEOUT_MS = 120_000
THREE_STEPS = "on a beach at sunset, sitting on a towel, in a red summer dress"
# Pictures an anonymous session may ask for: each test starts its own session (its own cookies).
IMAGE_LIMIT = 2


workdir, stack = system_fixtures("browser-e2e", step_delay_s=STEP_DELAY_S, image_limit=IMAGE_LIMIT)


@pytest.fixture
def url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.port}/"


def test_create_chat_and_watch_a_picture_survive_a_reload(page: Page, url: str, stack: Stack, photo: Path,
                                                          tmp_path: Path) -> None:
    page.goto(url)
    create_character(page, photo, "Mira")

    # A chat reply, streamed; no language model is configured, so the persona answers offline.
    page.get_by_label("Message").fill("Hello, how was your day?")
    page.keyboard.press("Enter")
    reply = page.locator("#chat-log .bubble-character").last
    expect(reply).not_to_have_attribute("data-streaming", "1", timeout=30_000)
    expect(reply.locator(".bubble-text")).not_to_be_empty()
    assert int(reply.get_attribute("data-deltas") or 0) >= 1, "the reply came with no delta"
    expect(page.get_by_test_id("offline-badge")).to_be_visible()

    # A picture: three steps, each rendered slowly by the fake ComfyUI, whose progress and preview
    # frames reach the page live.
    page.evaluate("""() => {
        window.__live = {previews: 0, progress: 0};
        new MutationObserver((records) => {
            for (const r of records) {
                if (r.target.matches?.('img[data-preview="1"]') && r.attributeName === 'src') window.__live.previews++;
                if (r.target.tagName === 'PROGRESS' && r.attributeName === 'value') window.__live.progress++;
            }
        }).observe(document.getElementById('chain'), {subtree: true, attributes: true});
    }""")
    page.get_by_label("Picture request").fill(THREE_STEPS)
    page.get_by_test_id("picture-button").click()
    expect(page.get_by_test_id("chain-id")).to_have_text(re.compile(r"[0-9a-f-]{36}"), timeout=30_000)
    chain_id = page.get_by_test_id("chain-id").inner_text()
    steps = page.get_by_test_id("chain-steps").locator(":scope > li")
    expect(steps).to_have_count(3, timeout=30_000)
    expect(page.get_by_test_id("chain-threshold")).to_contain_text("40")

    # Reload once the first step is accepted and the last has not started.
    expect(page.get_by_test_id("step-0")).to_have_attribute("data-state", "accepted", timeout=CHAIN_TIMEOUT_MS)
    assert page.get_by_test_id("step-2").get_attribute("data-state") != "accepted"
    score_before = page.get_by_test_id("score-0-1").get_attribute("data-score")
    live = page.evaluate("window.__live")
    assert live["progress"] > 0 and live["previews"] > 0, f"no live progress or preview reached the page: {live}"
    page.reload()

    assert f"chain={chain_id}" in page.url
    expect(page.get_by_test_id("chain-id")).to_have_text(chain_id)
    expect(page.get_by_test_id("step-0")).to_have_attribute("data-state", "accepted")
    expect(page.get_by_test_id("score-0-1")).to_have_attribute("data-score", score_before or "")
    assert "chain.completed" not in {e.type for e in events(stack, chain_id)}, "the chain ended before the reload"
    page.screenshot(path=str(tmp_path / "resumed.png"), full_page=True)

    expect(page.get_by_test_id("chain-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)
    for step in range(3):
        expect(page.get_by_test_id(f"step-{step}")).to_have_attribute("data-state", "accepted")
    final = page.get_by_test_id("final-image").locator("img")
    expect(final).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=final.element_handle())
    completed = [e for e in events(stack, chain_id) if e.type == "chain.completed"]
    assert page.get_by_test_id("final-image").get_attribute("data-sha256") == completed[0].data["final_image"]["sha256"]

    # Every persisted event shown once, in order, across the reload.
    seqs = page.locator("#chain-log li[data-seq]").evaluate_all("ns => ns.map(n => Number(n.dataset.seq))")
    assert seqs == [e.version for e in events(stack, chain_id)]

    gallery = page.get_by_test_id("gallery")
    expect(gallery.get_by_test_id("picture")).to_have_count(1, timeout=30_000)  # one entry per picture
    expect(gallery.get_by_test_id("picture")).to_have_attribute("data-chain-id", chain_id)
    node = page.get_by_test_id("tree").locator(f'[data-chain-id="{chain_id}"]')
    expect(node.locator(".tree-head .badge")).to_have_text("completed", timeout=30_000)
    page.screenshot(path=str(tmp_path / "completed.png"), full_page=True)


def test_a_picture_asked_in_chat_a_branch_from_one_of_its_steps_then_the_limit(
        page: Page, url: str, stack: Stack, photo: Path, tmp_path: Path, page_errors) -> None:
    page.goto(url)
    create_character(page, photo, "Noor")

    page.get_by_label("Message").fill("send me a picture of you at the beach")
    page.get_by_role("button", name="Send").click()

    card = page.locator("#chat-log .bubble-character").last.get_by_test_id("chat-chain-card")
    expect(card.get_by_test_id("card-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)
    parent = card.get_attribute("data-chain-id")

    step = page.get_by_test_id("tree").locator(f'[data-chain-id="{parent}"] li[data-step="0"]')
    expect(step).to_have_count(1, timeout=30_000)
    step.get_by_test_id("tree-branch").click()
    dialog = page.get_by_test_id("branch-dialog")
    dialog.get_by_label("What should change from there").fill("in a blue evening dress")
    dialog.get_by_role("button", name="Start branch").click()

    expect(page.get_by_test_id("chain-id")).to_have_text(re.compile(r"[0-9a-f-]{36}"), timeout=30_000)
    child = page.get_by_test_id("chain-id").inner_text()
    assert child != parent
    expect(page.locator("#chain-request")).to_contain_text("a branch from step 1", timeout=30_000)
    expect(page.get_by_test_id("chain-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)
    requested = next(e for e in events(stack, child) if e.type == "chain.requested").data
    assert requested["parent_chain_id"] == parent and requested["branch_from_step"] == 0
    nested = page.locator(f'.tree-node[data-chain-id="{parent}"] .tree-children .tree-node[data-chain-id="{child}"]')
    expect(nested).to_have_count(1, timeout=30_000)
    page.screenshot(path=str(tmp_path / "branched.png"), full_page=True)

    # Two pictures made: the anonymous session's limit. The gateway's 403 detail is shown as it is.
    page_errors.allowed.append("403")  # the browser logs the refused request itself
    page.get_by_label("Picture request").fill("in a garden")
    page.get_by_test_id("picture-button").click()
    notice = page.get_by_test_id("limit-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text(f"an anonymous session may make {IMAGE_LIMIT} pictures")


def test_the_api_docs_work_without_the_internet(page: Page, url: str, page_errors) -> None:
    """Swagger UI and ReDoc come from the gateway itself: every request off this machine is refused.

    ReDoc's sidebar still asks for Redocly's logo, an image it hides when it does not load: that one
    cosmetic request is allowed to fail; no script, style or data may come from outside."""
    page_errors.allowed.append("net::ERR_FAILED")  # that logo, refused by the route below (checked there)
    outside: list[tuple[str, str]] = []
    base = url.rstrip("/")

    def only_local(route) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            outside.append((route.request.resource_type, route.request.url))
            route.abort()

    page.route("**/*", only_local)
    page.goto(f"{base}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Likeness")
    expect(page.get_by_role("button", name="Authorize")).to_be_visible()
    page.goto(f"{base}/redoc")
    expect(page.locator("redoc h1, [role=main] h1").first).to_contain_text("Likeness")
    assert [(kind, where) for kind, where in outside if kind != "image"] == [], outside


def say(page: Page, text: str) -> None:
    """Send a chat message and wait for the whole reply."""
    before = page.locator("#chat-log .bubble-character").count()
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()
    reply = page.locator("#chat-log .bubble-character").nth(before)
    expect(reply).to_be_visible(timeout=30_000)
    expect(reply).not_to_have_attribute("data-streaming", "1", timeout=30_000)


def last_card(page: Page):
    return page.locator("#chat-log .bubble-character").last.get_by_test_id("chat-chain-card").last


def test_pictures_in_the_chat_build_on_each_other_go_back_regenerate_and_cancel(
        page: Page, url: str, stack: Stack, photo: Path, tmp_path: Path) -> None:
    page.goto(url)
    page.get_by_role("button", name="Sign up").click()  # past a guest's picture limit
    expect(page.get_by_test_id("account-status")).to_have_text("Logged in")
    create_character(page, photo, "Ines")

    # A picture asked in the chat is a live card in the reply: steps, scores against the threshold, the picture.
    say(page, "send me a picture of you at the beach")
    first_card = last_card(page)
    expect(first_card.get_by_test_id("card-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)
    first = first_card.get_attribute("data-chain-id")
    expect(first_card.locator(".score").first).to_have_text(re.compile(r"face \d+(\.\d)? ≥ 40"))
    expect(first_card.get_by_test_id("card-final").locator("img")).to_be_visible()

    # The lightbox: the picture large, each step with its seed and score, a download.
    first_card.get_by_test_id("card-open").click()
    viewer = page.get_by_test_id("viewer")
    expect(viewer).to_be_visible()
    expect(viewer.get_by_test_id("viewer-image")).to_be_visible(timeout=30_000)
    expect(viewer).to_contain_text("seed")
    expect(viewer.get_by_test_id("viewer-download")).to_be_visible()
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    # "now make her wave" edits that picture: a branch from its last step, nested under it in the edit tree.
    say(page, "now make her wave")
    wave_card = last_card(page)
    expect(wave_card.get_by_test_id("card-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)
    wave = wave_card.get_attribute("data-chain-id")
    requested = next(e for e in events(stack, wave) if e.type == "chain.requested").data
    assert requested["parent_chain_id"] == first and requested["input_image"] is not None
    completed = next(e for e in events(stack, first) if e.type == "chain.completed").data
    assert requested["input_image"]["sha256"] == completed["final_image"]["sha256"]
    nested = page.locator(f'.tree-node[data-chain-id="{first}"] .tree-children .tree-node[data-chain-id="{wave}"]')
    expect(nested).to_have_count(1, timeout=30_000)

    # "go back to the previous picture" shows it again and makes nothing; the next edit starts from it.
    say(page, "go back to the previous picture")
    back = page.locator("#chat-log .bubble-character").last
    expect(back.locator(".picked-note")).to_have_text("Back to this picture:")
    expect(back.get_by_test_id("chat-chain-card")).to_have_attribute("data-chain-id", first)
    say(page, "now put her in a red dress")
    dress_card = last_card(page)
    expect(dress_card).to_have_attribute("data-chain-id", re.compile(r"[0-9a-f-]{36}"), timeout=30_000)
    dress = dress_card.get_attribute("data-chain-id")
    expect(dress_card.get_by_test_id("card-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)
    requested = next(e for e in events(stack, dress) if e.type == "chain.requested").data
    assert requested["parent_chain_id"] == first

    # "start over" edits the reference photo again.
    say(page, "start over, send me a pic of you in a cafe")
    cafe = last_card(page).get_attribute("data-chain-id")
    expect(last_card(page).get_by_test_id("card-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)
    assert next(e for e in events(stack, cafe) if e.type == "chain.requested").data["parent_chain_id"] is None
    page.screenshot(path=str(tmp_path / "chat-pictures.png"), full_page=True)

    # Regenerate: another take of the same request (new seeds) in a card of its own, under the first.
    cafe_card = last_card(page)
    cafe_card.get_by_test_id("card-regenerate").click()
    again_card = page.locator(f'[data-testid="chat-chain-card"][data-chain-id="{cafe}"] + [data-testid="chat-chain-card"]')
    expect(again_card).to_have_count(1, timeout=30_000)
    again = again_card.get_attribute("data-chain-id")
    expect(again_card.get_by_test_id("card-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)
    first_seeds = [e.data["seed"] for e in events(stack, cafe) if e.type == "chain.step_requested"]
    again_seeds = [e.data["seed"] for e in events(stack, again) if e.type == "chain.step_requested"]
    assert first_seeds != again_seeds
    # Compare the two takes side by side: per step both pictures, their seeds and scores, how far apart.
    again_card.get_by_test_id("card-compare").click()
    compare = page.get_by_test_id("compare-dialog")
    expect(compare).to_be_visible()
    expect(compare.get_by_test_id("compare-row")).to_have_count(len(first_seeds))
    expect(compare.get_by_test_id("compare-row").first).to_contain_text(f"seed {first_seeds[0]}")
    # (this fake ComfyUI gives back its input picture, so the two takes' pictures are alike)
    expect(compare.get_by_test_id("compare-row").first).to_contain_text(re.compile("the same picture|bits apart"))
    page.keyboard.press("Escape")
    expect(compare).to_be_hidden()

    # Cancel: a long picture stopped from its card.
    say(page, f"start over and send me a picture of you {THREE_STEPS}")
    long_card = last_card(page)
    expect(long_card.locator('[data-testid="step-0"]')).to_have_count(1, timeout=30_000)
    long_card.get_by_test_id("card-cancel").click()
    expect(long_card.get_by_test_id("card-status")).to_have_text("cancelled", timeout=CHAIN_TIMEOUT_MS)
    expect(long_card.get_by_test_id("card-regenerate")).to_be_visible()


def test_the_conversation_is_kept_by_the_server_for_another_browser_until_deleted(
        page: Page, url: str, photo: Path, browser) -> None:
    page.goto(url)
    page.get_by_role("button", name="Sign up").click()
    key = page.locator("#new-key-value")
    expect(key).to_have_text(re.compile(r"^lk_[\w-]+$"))
    create_character(page, photo, "Sol")
    say(page, "Hello Sol, what are you painting today?")
    say(page, "send me a picture of you at the beach")
    expect(last_card(page).get_by_test_id("card-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)
    chain_id = last_card(page).get_attribute("data-chain-id")

    # Another browser, no storage of this one's: logged in with the key, it shows the same conversation.
    other = browser.new_context().new_page()
    try:
        other.goto(url)
        other.get_by_role("button", name="Log in with a key").click()
        other.get_by_label("API key").fill(key.inner_text())
        other.get_by_role("button", name="Log in", exact=True).click()
        expect(other.get_by_test_id("account-status")).to_have_text("Logged in")
        other.get_by_test_id("character-list").get_by_role("button", name=re.compile("Sol")).first.click()
        log = other.get_by_test_id("chat-log")
        expect(log.locator(".bubble-user")).to_have_count(2, timeout=30_000)
        expect(log.locator(".bubble-user").first).to_contain_text("what are you painting today?")
        card = log.get_by_test_id("chat-chain-card")
        expect(card).to_have_attribute("data-chain-id", chain_id)
        expect(card.get_by_test_id("card-status")).to_have_text("completed", timeout=30_000)

        # Deleting it there hides it everywhere; a reload starts afresh.
        other.once("dialog", lambda dialog: dialog.accept())
        other.get_by_test_id("chat-delete").click()
        expect(log.locator(".bubble")).to_have_count(0)
    finally:
        other.context.close()
    page.reload()
    page.get_by_test_id("character-list").get_by_role("button", name=re.compile("Sol")).first.click()
    expect(page.get_by_test_id("chat-log").locator(".bubble")).to_have_count(0)
    expect(page.get_by_test_id("chat-delete")).to_be_hidden()


def test_a_built_in_persona_is_adjusted_for_oneself_alone(page: Page, url: str, browser) -> None:
    page.goto(url)
    page.get_by_test_id("character-luna").click()
    page.locator("#persona summary").click()
    text = page.locator("#persona-text")
    expect(text).not_to_have_value("", timeout=30_000)
    shared = text.input_value()
    expect(text).to_be_editable()
    expect(page.locator("#persona-status")).to_contain_text("your own version")
    text.fill("You are Luna. With me you are bold and tell a joke about lighthouses in every answer.")
    page.get_by_role("button", name="Save persona").click()
    expect(page.locator("#persona-status")).to_have_text("Saved, for your chats with this character.")
    page.reload()
    page.get_by_test_id("character-luna").click()
    page.locator("#persona summary").click()
    expect(page.locator("#persona-text")).to_have_value(re.compile("lighthouses"), timeout=30_000)

    # Someone else's Luna keeps the shared persona.
    other = browser.new_context().new_page()
    try:
        other.goto(url)
        other.get_by_test_id("character-luna").click()
        other.locator("#persona summary").click()
        expect(other.locator("#persona-text")).to_have_value(shared, timeout=30_000)
    finally:
        other.context.close()
