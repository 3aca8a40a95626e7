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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.fakes import start_fake_comfyui
from tests.e2e.stack import Recorded, Stack, started

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(600)]

# Seconds per sampler step of the fake ComfyUI: a photoreal step samples 8 steps, ~2.4 s a render.
STEP_DELAY_S = 0.3
CHAIN_TIMEOUT_MS = 120_000
THREE_STEPS = "on a beach at sunset, sitting on a towel, in a red summer dress"
# Pictures an anonymous session may ask for: each test starts its own session (its own cookies).
IMAGE_LIMIT = 2


def events(stack: Stack, chain_id: str) -> list[Recorded]:
    """The chain's stream from the events table (in a thread: Playwright's loop runs in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(stack.events, chain_id).result()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-e2e")


@pytest.fixture(scope="module")
def comfy_url(workdir: Path) -> Iterator[str]:
    """A slow fake ComfyUI: it outputs its input picture (the face stays), one sampler step at a time."""
    process, url = start_fake_comfyui(workdir, "--step-delay", str(STEP_DELAY_S))
    try:
        yield url
    finally:
        process.stop()


@pytest.fixture(scope="module")
def stack(workdir: Path, comfy_url: str) -> Iterator[Stack]:
    yield from started(Stack(workdir / "stack", env={"LIKENESS_COMFYUI_URLS": comfy_url,
                                                     "LIKENESS_GATEWAY_ANONYMOUS_IMAGE_LIMIT": str(IMAGE_LIMIT)}))


@pytest.fixture
def url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.port}/"


def create_character(page: Page, photo: Path, name: str) -> None:
    """A character of one's own, made with a face photo through the page's form."""
    page.get_by_text("Create a character").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Gender").select_option("woman")
    page.get_by_label("Occupation").fill("painter")
    page.get_by_label("Face photo").set_input_files(str(photo))
    page.get_by_role("button", name="Create character").click()
    expect(page.get_by_test_id("character-name")).to_have_text(name, timeout=30_000)
    expect(page.get_by_test_id("no-reference")).to_be_hidden()
    expect(page.get_by_test_id("picture-button")).to_be_enabled()


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
    expect(gallery.locator('li[data-step="final"]')).to_have_count(1, timeout=30_000)
    expect(gallery.locator("li[data-step]")).to_have_count(4)  # the three steps and the picture
    node = page.get_by_test_id("tree").locator(f'[data-chain-id="{chain_id}"]')
    expect(node.locator(".tree-head .badge")).to_have_text("completed", timeout=30_000)
    page.screenshot(path=str(tmp_path / "completed.png"), full_page=True)


def test_a_picture_asked_in_chat_a_branch_from_one_of_its_steps_then_the_limit(
        page: Page, url: str, stack: Stack, photo: Path, tmp_path: Path, page_errors) -> None:
    page.goto(url)
    create_character(page, photo, "Noor")

    page.get_by_label("Message").fill("send me a picture of you at the beach")
    page.get_by_role("button", name="Send").click()

    expect(page.get_by_test_id("chain-id")).to_have_text(re.compile(r"[0-9a-f-]{36}"), timeout=30_000)
    parent = page.get_by_test_id("chain-id").inner_text()
    expect(page.get_by_test_id("chain-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)
    expect(page.locator("#chat-log .bubble-character").last.get_by_role("button")).to_have_text(
        "Watch the picture being made")

    step = page.get_by_test_id("gallery").locator('li[data-step="0"]')
    expect(step).to_have_count(1, timeout=30_000)
    step.get_by_role("button", name="Branch from here").click()
    dialog = page.get_by_test_id("branch-dialog")
    dialog.get_by_label("What should change from there").fill("in a blue evening dress")
    dialog.get_by_role("button", name="Start branch").click()

    expect(page.get_by_test_id("chain-id")).not_to_have_text(parent, timeout=30_000)
    child = page.get_by_test_id("chain-id").inner_text()
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
