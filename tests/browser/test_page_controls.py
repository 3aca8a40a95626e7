"""The page's account keys, picture options and --count batches in a real browser against the whole system
(`likeness up` rendering through the fake ComfyUI, as in test_page.py).

What the options write is checked twice: modifiers.js run in the page, its output read back by the
planner's own parser (so the page writes exactly the syntax the planner reads), and a request made with
the controls, whose recorded request text is read from the chain.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from services.planner.planning.modifiers import Modifiers, parse_modifiers
from tests.browser.system import create_character, events, system_fixtures
from tests.e2e.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(600)]

STEP_DELAY_S = 0.05
CHAIN_TIMEOUT_MS = 120_000


workdir, stack = system_fixtures("browser-controls", step_delay_s=STEP_DELAY_S, image_limit=10)


@pytest.fixture
def url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.port}/"


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "1")


# -- modifiers.js, read back by the planner's parser ---------------------------------------------------

CASES = [
    ({}, ""),
    ({"style": "anime", "width": "768", "height": 1024, "seed": "7", "count": 2, "negative": "hat, glasses"},
     '--style anime -w 768 -h 1024 --seed 7 --count 2 --no "hat, glasses"'),
    ({"model": "qwen-image-edit", "seed": "18446744073709551615"},
     "--model qwen-image-edit --seed 18446744073709551615"),
    ({"negative": 'a "big" hat'}, "--no 'a \"big\" hat'"),
    ({"negative": "don't   smile"}, '--no "don\'t smile"'),
    ({"negative": "it's a \"hat\""}, "--no \"it's a 'hat'\""),
    ({"style": " ", "width": "", "seed": None, "negative": "  "}, ""),
]


def run_module(page: Page, body: str, arg: object = None):
    """Evaluate `body` (an async function of `m`, the module, and `arg`) in the page."""
    return page.evaluate(f"async (arg) => {{ const m = await import('/static/modifiers.js'); {body} }}", arg)


def test_the_options_are_written_as_the_flags_the_planner_reads(page: Page, url: str) -> None:
    open_page(page, url)
    written = run_module(page, "return arg.map(([options]) => m.withModifiers('on a beach', options));", CASES)
    assert written == [f"on a beach {flags}".strip() for _, flags in CASES]

    parsed = [parse_modifiers(text) for text in written]
    assert all(p.text == "on a beach" for p in parsed)
    assert parsed[1].modifiers == Modifiers(style="anime", width=768, height=1024, seed=7, count=2,
                                            negative_prompt="hat, glasses")
    assert parsed[2].modifiers == Modifiers(model="qwen-image-edit", seed=2**64 - 1)
    assert [p.modifiers.negative_prompt for p in parsed[3:6]] == ['a "big" hat', "don't smile", "it's a 'hat'"]
    assert parsed[6].modifiers == Modifiers()


def test_wrong_option_values_and_flags_given_twice_are_said_before_sending(page: Page, url: str) -> None:
    open_page(page, url)
    errors = run_module(page, """
        const attempt = (text, options) => {
            try { return m.withModifiers(text, options); } catch (e) { return `${e instanceof m.ModifierError}:${e.message}`; }
        };
        return arg.map(([text, options]) => attempt(text, options));""", [
        ["x", {"width": "100"}], ["x", {"height": "4096"}], ["x", {"count": "5"}], ["x", {"seed": "-1"}],
        ["x", {"seed": "18446744073709551616"}], ["x", {"style": "Anime Style"}],
        ["x --seed 3", {"seed": "4"}], ["x -w 512 -s 1", {"width": "512", "seed": "2"}],
        ["x --no hat", {"negative": "glasses"}], ["a t-shirt -ish", {"width": "512"}],
    ])
    assert errors[:6] == [
        "true:Width must be a multiple of 8", "true:Height must be between 64 and 2048",
        "true:Count must be between 1 and 4", "true:Seed must be a whole number",
        "true:Seed must be between 0 and 18446744073709551615",
        "true:--style takes a name of letters, digits, '-', '_' or '.'",
    ]
    assert errors[6] == "true:--seed is both in the request and in More options: keep one"
    assert errors[7] == "true:--width and --seed are both in the request and in More options: keep one"
    # --no may repeat, and a dash inside a word is no flag.
    assert errors[8] == 'x --no hat --no "glasses"' and parse_modifiers(errors[8]).modifiers.negative_prompt == "hat, glasses"
    assert errors[9] == "a t-shirt -ish -w 512"
    counts = run_module(page, "return arg.map((t) => m.countOf(t));",
                        ["on a beach", "x --count 3", "x -c=2", "x --count '4'", "x --counter 2"])
    assert counts == [1, 3, 2, 4, 1]


# -- API keys -------------------------------------------------------------------------------------------


def key_rows(page: Page):
    return page.get_by_test_id("keys-list").locator("tr")


def test_a_registered_user_creates_lists_and_revokes_an_api_key(page: Page, url: str, tmp_path: Path) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url.rstrip("/"))
    open_page(page, url)
    expect(page.get_by_test_id("account-status")).to_have_text(re.compile("^Guest: "))
    expect(page.get_by_test_id("keys")).to_be_hidden()  # a guest has no keys

    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_test_id("account-status")).to_have_text("Logged in")
    first = page.locator("#new-key-value").inner_text()
    page.get_by_text("API keys", exact=True).click()
    expect(key_rows(page)).to_have_count(1)
    expect(key_rows(page).first).to_have_attribute("data-prefix", first[:8])

    page.get_by_role("button", name="Create a key").click()
    expect(page.locator("#new-key-value")).not_to_have_text(first)
    second = page.locator("#new-key-value").inner_text()
    assert re.fullmatch(r"lk_[\w-]+", second), second
    expect(key_rows(page)).to_have_count(2)
    expect(key_rows(page).first).to_have_attribute("data-prefix", second[:8])  # newest first
    page.get_by_role("button", name="Copy the key").click()
    expect(page.locator("#new-key-copied")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == second

    # The revocation is asked about first: dismissed, nothing changes.
    newest = key_rows(page).first
    page.once("dialog", lambda dialog: dialog.dismiss())
    newest.get_by_role("button", name=f"Revoke the key {second[:8]}…").click()
    expect(newest).to_have_attribute("data-state", "active")
    page.once("dialog", lambda dialog: dialog.accept())
    newest.get_by_role("button", name=f"Revoke the key {second[:8]}…").click()
    expect(key_rows(page).first).to_have_attribute("data-state", "revoked")
    expect(key_rows(page).first).to_contain_text("revoked")
    expect(key_rows(page).nth(1)).to_have_attribute("data-state", "active")
    page.screenshot(path=str(tmp_path / "keys.png"))

    listed = {k["prefix"]: k["revoked_at"] for k in page.request.get(f"{url}auth/keys").json()}
    assert listed[first[:8]] is None and listed[second[:8]] is not None
    assert page.request.get(f"{url}me", headers={"Authorization": f"Bearer {second}"}).status == 401


# -- the options on a real request, and a --count batch ------------------------------------------------


def test_the_options_make_a_batch_of_two_shown_picture_by_picture_then_as_a_grid(
        page: Page, url: str, stack: Stack, photo: Path, tmp_path: Path) -> None:
    open_page(page, url)
    create_character(page, photo, "Vera")
    page.get_by_label("Picture request").fill("on a beach")
    page.get_by_text("More options").click()
    expect(page.locator("#option-style option[value=anime]")).to_have_count(1)  # the styles are loaded
    # Only models that edit a picture are offered: a chain is a sequence of edits.
    models = page.locator("#option-model option").evaluate_all("os => os.map(o => o.value)")
    assert models == ["", "qwen-image-edit", "flux-kontext-dev"], models
    page.locator("#option-style").select_option("anime")
    page.get_by_label("Width (px)").fill("512")
    page.get_by_label("Height (px)").fill("576")
    page.get_by_label("Seed").fill("7")
    page.get_by_label("How many pictures").fill("2")
    page.get_by_label("Negative prompt").fill('hat, "big" glasses')
    flags = "--style anime -w 512 -h 576 --seed 7 --count 2 --no 'hat, \"big\" glasses'"
    expect(page.get_by_test_id("picture-flags")).to_have_text(flags)
    page.get_by_test_id("picture-button").click()

    expect(page.get_by_test_id("chain-id")).to_have_text(re.compile(r"[0-9a-f-]{36}"), timeout=30_000)
    first = page.get_by_test_id("chain-id").inner_text()
    expect(page.locator("#chain-request")).to_contain_text(f"on a beach {flags}", timeout=30_000)
    chain = page.request.get(f"{url}chains/{first}").json()
    assert chain["request_text"] == f"on a beach {flags}"
    assert chain["batch_id"] == first and chain["variant_index"] == 0

    batch = page.get_by_test_id("batch")
    expect(batch).to_be_visible()
    tiles = page.get_by_test_id("batch-tiles").locator(":scope > li")
    expect(tiles).to_have_count(2)
    expect(page.get_by_test_id("batch-tile-1")).to_have_attribute("data-chain-id", re.compile(r"[0-9a-f-]{36}"),
                                                                  timeout=CHAIN_TIMEOUT_MS)
    second = page.get_by_test_id("batch-tile-1").get_attribute("data-chain-id")
    assert second != first and page.get_by_test_id("batch-tile-0").get_attribute("data-chain-id") == first
    expect(page.get_by_test_id("batch-status")).to_have_text("completed", timeout=CHAIN_TIMEOUT_MS)

    for index, chain_id in enumerate((first, second)):
        tile = page.get_by_test_id(f"batch-tile-{index}")
        expect(tile).to_have_attribute("data-state", "completed")
        completed = next(e for e in events(stack, chain_id) if e.type == "chain.completed")
        assert tile.get_attribute("data-sha256") == completed.data["final_image"]["sha256"]
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=tile.locator("img").element_handle())
    grid = page.get_by_test_id("batch-grid").locator("img")
    expect(grid).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=grid.element_handle())
    body = page.request.get(f"{url}batches/{first}").json()
    assert page.get_by_test_id("batch-grid").get_attribute("data-sha256") == body["grid_image"]["sha256"]
    assert body["completed"] == [first, second]
    # The gallery and the tree learn of the batch's end, not only of the chain the chain panel follows.
    other = page.get_by_test_id("tree").locator(f'[data-chain-id="{second}"] .tree-head .badge')
    expect(other).to_have_text("completed", timeout=30_000)

    # A tile follows its own chain in the chain panel.
    page.get_by_test_id("batch-tile-1").get_by_role("button").click()
    expect(page.get_by_test_id("chain-id")).to_have_text(second)
    expect(page.get_by_test_id("batch-tile-1").get_by_role("button")).to_have_attribute("aria-current", "true")
    assert page.request.get(f"{url}chains/{second}").json()["variant_index"] == 1
    page.screenshot(path=str(tmp_path / "batch.png"), full_page=True)

    # After a reload the batch is shown again, complete.
    page.reload()
    expect(page.get_by_test_id("batch-status")).to_have_text("completed")
    expect(tiles).to_have_count(2)
