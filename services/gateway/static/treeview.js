// The edit tree: each chain with its steps and scores, branches under the chain they came from.

import { get } from "./api.js";
import { openBranch } from "./branch.js";
import { el, clear, imageUrl } from "./dom.js";
import { openChain } from "./follow.js";
import { loadGallery } from "./gallery.js";
import { $, sleep, state } from "./state.js";
import { findNode, normaliseTree } from "./tree.js";

const TERMINAL_STATUS = new Set(["completed", "failed", "refused", "cancelled"]);
const LISTED_TIMEOUT_MS = 60_000;

export async function loadTree() {
  state.trees = normaliseTree(await get("/me/tree"));
  const root = $("tree");
  clear(root);
  $("tree-empty").hidden = state.trees.length > 0;
  for (const node of state.trees) root.append(treeNode(node));
}

// The gallery and the tree are read models that catch up with the log a moment after a chain
// ends: read them again (a few times, briefly) until they show the chain as ended.
export async function refreshAfter(chainId) {
  for (let attempt = 0; attempt < 4; attempt += 1) {
    await Promise.all([loadGallery(), loadTree()]);
    const node = findNode(state.trees, chainId);
    if (node && TERMINAL_STATUS.has(node.status)) return;
    await sleep(750 * (attempt + 1));
  }
}

// Resolves once the tree lists chain `id`, which it does as soon as the chain's request is in the
// log; unlike the chain's own URLs, /me/tree never answers 404 for a chain not recorded yet.
// After a minute it resolves all the same, and the chain's stream says what became of it.
export async function whenListed(id) {
  const deadline = Date.now() + LISTED_TIMEOUT_MS;
  for (let pause = 0; !findNode(state.trees, id); pause = Math.min(pause * 2 || 100, 2_000)) {
    if (Date.now() > deadline) return;
    await sleep(pause);
    await loadTree();
  }
}

function treeNode(node) {
  const steps = el("ol", { class: "tree-steps", "aria-label": "Steps" });
  for (const step of node.steps) steps.append(treeStep(node, step));
  const children = el("ul", { class: "tree-children" });
  for (const child of node.children) children.append(treeNode(child));
  return el("li", { class: "tree-node", "data-chain-id": node.id },
    el("div", { class: "tree-head" },
      el("button", { type: "button", class: "link-button", onclick: () => openChain(node.id, { focus: true }) },
        node.request ? `“${node.request}”` : `Chain ${node.id.slice(0, 8)}`),
      node.status ? el("span", { class: `badge status-${node.status}` }, node.status) : null,
      node.fromStep != null ? el("span", { class: "muted small" }, `branched at step ${node.fromStep + 1}`) : null),
    node.steps.length ? steps : null,
    node.children.length ? children : null);
}

function treeStep(node, step) {
  const pass = step.threshold == null || step.score >= step.threshold;
  const chain = node.request ? `“${node.request}”` : `chain ${node.id.slice(0, 8)}`;
  return el("li", { class: "tree-step", "data-step": String(step.index) },
    step.sha256 ? el("img", { src: imageUrl(step.sha256, true), alt: "", width: "40", height: "40", loading: "lazy" }) : null,
    el("span", {}, `Step ${step.index + 1}${step.kind ? ` · ${step.kind}` : ""}`),
    step.score != null
      ? el("span", { class: `score ${pass ? "pass" : "fail"}` },
        `face ${step.score.toFixed(1)}${step.threshold != null ? ` / ${step.threshold}` : ""}`,
        // Pass and fail are told apart by colour on screen; said in words for screen readers.
        el("span", { class: "visually-hidden" }, pass ? ", at or above the threshold" : ", below the threshold"))
      : null,
    step.sha256
      ? el("button", { type: "button", class: "link-button", "data-testid": "tree-branch",
        "aria-label": `Branch from step ${step.index + 1} of ${chain}`, onclick: () => openBranch(node.id, step.index) },
      "Branch")
      : null);
}
