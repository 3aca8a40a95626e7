// Asking for a picture of the selected character with the picture form, and its "More options"
// (style, model, size, seed, count, negative prompt), which become flags of the request text.

import { ApiError, get, post } from "./api.js";
import { closeBatch, openBatch } from "./batch.js";
import { el } from "./dom.js";
import { openChain } from "./follow.js";
import { countOf, ModifierError, withModifiers } from "./modifiers.js";
import { showError } from "./notices.js";
import { $, sleep, state } from "./state.js";

const JOB_POLL_MS = 250;
const JOB_TIMEOUT_MS = 120_000;
const OPTIONS = ["style", "model", "width", "height", "seed", "count", "negative"];

export async function askForPicture(event) {
  event.preventDefault();
  const character = state.current;
  const typed = $("picture-input").value.trim();
  if (!character || !typed) return;
  let text;
  try {
    text = withModifiers(typed, chosenOptions());
  } catch (error) {
    showError(error);
    return;
  }
  const status = $("picture-status");
  $("picture-button").disabled = true;
  status.textContent = "Asking for a picture…";
  try {
    const started = await post("/chat/generate-image", { character_id: character.id, request: text });
    const chainId = started.chain_id ?? await waitForChain(started.job_id);
    status.textContent = "";
    $("picture-input").value = "";
    openChain(chainId);
    // A --count batch is named by its first chain; a single picture puts the last batch away.
    const count = countOf(text);
    if (count > 1) openBatch(chainId, count);
    else closeBatch();
    document.dispatchEvent(new Event("picture-requested"));  // the account's pictures left
  } catch (error) {
    status.textContent = "";
    showError(error);
  } finally {
    $("picture-button").disabled = !state.current?.has_reference;
  }
}

// The options the user set (an untouched control is empty and adds no flag); they stay set for the
// next request, as in other image tools.
function chosenOptions() {
  return Object.fromEntries(OPTIONS.map((name) => [name, $(`option-${name}`).value]));
}

// What will be added to the request, shown as the options change; a wrong value is said here too.
export function previewOptions() {
  const out = $("picture-flags");
  try {
    out.textContent = withModifiers("", chosenOptions()) || "nothing";
    out.dataset.valid = "1";
  } catch (error) {
    if (!(error instanceof ModifierError)) throw error;
    out.textContent = error.message;
    out.dataset.valid = "0";
  }
}

export function clearOptions() {
  for (const name of OPTIONS) $(`option-${name}`).value = "";
  previewOptions();
}

// The styles and models are asked for when the options are first opened, so the simple path asks nothing.
let catalogLoaded = false;

export async function loadCatalog() {
  if (catalogLoaded || !$("picture-options").open) return;
  catalogLoaded = true;
  try {
    const [styles, models] = await Promise.all([get("/styles"), get("/models")]);
    fill($("option-style"), styles.map((s) => ({ value: s.name, title: s.description })));
    // A chain edits a picture: a model that only makes new ones (kind t2i) would be refused.
    fill($("option-model"), models.filter((m) => m.kind === "edit").map((m) => ({ value: m.name, title: m.description })));
  } catch (error) {
    catalogLoaded = false;
    throw error;
  }
}

function fill(select, entries) {
  const keep = select.value;
  select.replaceChildren(select.options[0]);
  for (const { value, title } of entries) select.append(el("option", { value, title }, value));
  select.value = entries.some((e) => e.value === keep) ? keep : "";
}

// An invalid option inside the closed "More options" could not show the browser's message: open it.
export function revealInvalid(event) {
  if (event.target.closest?.("#picture-options")) $("picture-options").open = true;
}

// A picture job answers at once; it names its chain as soon as the request is in the log.
async function waitForChain(jobId) {
  const deadline = Date.now() + JOB_TIMEOUT_MS;
  for (;;) {
    const job = await get(`/chat/job/${encodeURIComponent(jobId)}`);
    const chainId = job.chain_id ?? job.result?.chain_id;
    if (chainId) return chainId;
    const status = String(job.status ?? "").toLowerCase();
    if (["failed", "error", "refused", "cancelled"].includes(status)) {
      throw new ApiError(200, job.error ?? status, job.detail ?? job.reason ?? `The picture request ${status}.`);
    }
    if (Date.now() > deadline) throw new Error("The picture request is taking too long; try again.");
    await sleep(JOB_POLL_MS);
  }
}
