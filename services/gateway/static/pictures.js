// Asking for a picture of the selected character with the picture form.

import { ApiError, get, post } from "./api.js";
import { openChain } from "./follow.js";
import { showError } from "./notices.js";
import { $, sleep, state } from "./state.js";

const JOB_POLL_MS = 250;
const JOB_TIMEOUT_MS = 120_000;

export async function askForPicture(event) {
  event.preventDefault();
  const character = state.current;
  const text = $("picture-input").value.trim();
  if (!character || !text) return;
  const status = $("picture-status");
  $("picture-button").disabled = true;
  status.textContent = "Asking for a picture…";
  try {
    const started = await post("/chat/generate-image", { character_id: character.id, request: text });
    const chainId = started.chain_id ?? await waitForChain(started.job_id);
    status.textContent = "";
    $("picture-input").value = "";
    openChain(chainId);
    document.dispatchEvent(new Event("picture-requested"));  // the account's pictures left
  } catch (error) {
    status.textContent = "";
    showError(error);
  } finally {
    $("picture-button").disabled = !state.current?.has_reference;
  }
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
