// The batch panel: the chains a `--count N` request fanned out into, one tile per variant (its state
// and, once made, its picture; a click follows that chain in the chain panel), then the grid of all
// their pictures. Nothing about a batch reaches a chain's event stream, so GET /batches/{id} is read
// until the planner has recorded the batch's end. The batch is remembered across reloads, like the chain.

import { ApiError, get } from "./api.js";
import { el, clear } from "./dom.js";
import { followedChain, openChain } from "./follow.js";
import { $, sleep, storage } from "./state.js";

const STORE_KEY = "likeness.batch";
const POLL_MS = 1000;
const RETRY_MAX_MS = 10_000;

let run = null; // the batch shown: { id, count, stopped, running }

// Show batch `batchId` (the id of its first chain); `count`, when the request said it, draws the tiles
// before the planner has.
export function openBatch(batchId, count = null) {
  if (run) run.stopped = true;
  run = { id: batchId, count, stopped: false };
  storage(STORE_KEY, batchId);
  const panel = $("batch");
  panel.hidden = false;
  panel.dataset.batchId = batchId;
  panel.dataset.state = "queued";
  clear($("batch-tiles"));
  $("batch-grid").hidden = true;
  $("batch-heading").textContent = heading(count);
  setStatus("queued", "Waiting for the plan…");
  if (count) tiles(Array.from({ length: count }, (_, i) => ({ variant_index: i, chain_id: null, status: "queued" })), count);
  poll(run);
}

export function closeBatch() {
  if (run) run.stopped = true;
  run = null;
  storage(STORE_KEY, null);
  $("batch").hidden = true;
}

export function resumeBatch() {
  const id = storage(STORE_KEY);
  if (id) openBatch(id);
}

// The tile of the chain the chain panel follows is marked as such.
export function markFollowed() {
  for (const tile of $("batch-tiles").children) {
    const followed = Boolean(tile.dataset.chainId) && tile.dataset.chainId === followedChain();
    tile.querySelector("button").setAttribute("aria-current", String(followed));
  }
}

async function poll(current) {
  let wait = POLL_MS;
  while (!current.stopped) {
    let batch;
    try {
      batch = await get(`/batches/${encodeURIComponent(current.id)}`);
      wait = POLL_MS;
    } catch (error) {
      if (current.stopped) return;
      // Not a batch after all (the request was refused before it fanned out), or not this session's.
      if (error instanceof ApiError && error.status === 404) return closeBatch();
      setStatus($("batch").dataset.state, `Could not read the batch (${error.message}); trying again.`);
      await sleep(wait);
      wait = Math.min(wait * 2, RETRY_MAX_MS);
      continue;
    }
    if (current.stopped) return;
    current.count = batch.count ?? current.count;
    show(batch, current.count ?? batch.chains.length);
    if (batch.status !== "completed") current.running = true;
    else if (current.running) {
      // The chain panel tells the gallery and the tree when its chain ends; the others of a batch end here
      // (seen ending, not found ended after a reload: the page has just loaded them).
      const ids = batch.chains.map((c) => c.chain_id).filter(Boolean);
      document.dispatchEvent(new CustomEvent("batch-ended", { detail: { batchId: current.id, chainIds: ids } }));
    }
    if (batch.status === "completed") return;
    await sleep(POLL_MS);
  }
}

function show(batch, count) {
  const made = batch.chains.filter((c) => c.final_image).length;
  $("batch").dataset.state = batch.status;
  $("batch-heading").textContent = heading(count);
  const note = batch.status === "queued" ? "Waiting for the plan…"
    : batch.status === "completed" ? `${made} of ${count} made.` : `${made} of ${count} made so far.`;
  setStatus(batch.status, note);
  tiles(batch.chains, count);
  grid(batch);
}

const heading = (count) => (count > 1 ? `${count} pictures from one request` : "Pictures from one request");

function setStatus(status, note) {
  $("batch-status").textContent = status;
  $("batch-status").dataset.status = status;
  $("batch-note").textContent = note;
}

// Tiles are updated in place, so a picture already shown is not loaded again at every read.
function tiles(chains, count) {
  const list = $("batch-tiles");
  for (const chain of chains) {
    const index = chain.variant_index;
    let tile = list.querySelector(`[data-index="${index}"]`);
    if (!tile) {
      tile = newTile(index);
      list.append(tile);
    }
    updateTile(tile, chain, count);
  }
  markFollowed();
}

function newTile(index) {
  const button = el("button", { type: "button", class: "batch-tile-button", disabled: true },
    el("span", { class: "batch-thumb", "aria-hidden": "true" }),
    el("span", { class: "batch-tile-text" }, el("span", { class: "batch-tile-name" }), el("span", { class: "badge" })));
  button.addEventListener("click", () => {
    const id = button.closest("li").dataset.chainId;
    if (!id) return;
    openChain(id, { focus: true });
    markFollowed();
  });
  return el("li", { class: "batch-tile", "data-index": String(index), "data-testid": `batch-tile-${index}` }, button);
}

function updateTile(tile, chain, count) {
  tile.dataset.state = chain.status;
  if (chain.chain_id) tile.dataset.chainId = chain.chain_id;
  const name = `Picture ${chain.variant_index + 1} of ${count}`;
  tile.querySelector(".batch-tile-name").textContent = name;
  const button = tile.querySelector("button");
  button.disabled = !chain.chain_id;
  button.setAttribute("aria-label", `${name}, ${chain.status}${chain.chain_id ? ": follow how it is made" : ": not started yet"}`);
  tile.querySelector(".badge").textContent = chain.status;
  tile.querySelector(".badge").className = `badge status-${chain.status}`;
  const final = chain.final_image;
  const thumb = tile.querySelector(".batch-thumb");
  if (final && thumb.dataset.sha256 !== final.sha256) {
    thumb.dataset.sha256 = final.sha256;
    thumb.replaceChildren(el("img", { src: final.thumb_url, alt: "", width: "128", height: "128" }));
    tile.dataset.sha256 = final.sha256;
  }
}

function grid(batch) {
  const figure = $("batch-grid");
  const image = batch.grid_image;
  figure.hidden = !image;
  if (!image || figure.dataset.sha256 === image.sha256) return;
  figure.dataset.sha256 = image.sha256;
  $("batch-grid-link").href = image.url;
  $("batch-grid-img").src = image.url;
  $("batch-grid-caption").textContent = `All ${batch.completed.length} pictures side by side (opens full size).`;
}
