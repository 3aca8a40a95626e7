// The dialog that starts a branch: a new chain that keeps a chain up to one step and edits from there.

import { post } from "./api.js";
import { el, clear } from "./dom.js";
import { openChain } from "./follow.js";
import { showError } from "./notices.js";
import { $, state } from "./state.js";
import { findNode } from "./tree.js";

export function openBranch(chainId, step) {
  const dialog = $("branch-dialog");
  const select = $("branch-step");
  clear(select);
  const known = (findNode(state.trees, chainId)?.steps ?? []).filter((s) => s.sha256);
  const indices = known.length ? known : Array.from({ length: Number(step) + 1 }, (_, i) => ({ index: i }));
  for (const s of indices) {
    select.append(el("option", { value: String(s.index), selected: s.index === Number(step) },
      `Step ${s.index + 1}${s.kind ? ` · ${s.kind}` : ""}`));
  }
  dialog.dataset.chainId = chainId;
  $("branch-what").textContent = `Keep chain ${chainId.slice(0, 8)} up to the chosen step, then edit it differently.`;
  $("branch-request").value = "";
  dialog.showModal();
  $("branch-request").focus();
}

export async function submitBranch(event) {
  event.preventDefault();
  const dialog = $("branch-dialog");
  const body = { from_step: Number($("branch-step").value), request: $("branch-request").value.trim() };
  if (!body.request) return;
  $("branch-submit").disabled = true;
  try {
    const { chain_id: chainId } = await post(`/chains/${encodeURIComponent(dialog.dataset.chainId)}/branch`, body);
    dialog.close();
    // The dialog gives the focus back to the button that opened it; the new chain is where to go on.
    openChain(chainId, { focus: true });
  } catch (error) {
    dialog.close();
    showError(error);
  } finally {
    $("branch-submit").disabled = false;
  }
}

export function cancelBranch() {
  $("branch-dialog").close();
}
