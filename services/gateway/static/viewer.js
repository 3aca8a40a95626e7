// The picture viewer: a chain's final picture large, each step that made it (kind, seed, face score
// against the threshold, thumbnail), a download link. Opened from the gallery and from the chat.

import { get } from "./api.js";
import { openBranch } from "./branch.js";
import { fmt } from "./chain_steps.js";
import { el, clear } from "./dom.js";
import { openChain } from "./follow.js";
import { showError } from "./notices.js";
import { $ } from "./state.js";

const dialog = $("viewer");
// Only the latest opening fills the dialog: an older answer arriving late is dropped.
let opening = 0;

$("viewer-close").addEventListener("click", () => dialog.close());
// A click on the backdrop lands on the dialog itself, outside its content.
dialog.addEventListener("click", (event) => {
  if (event.target === dialog) dialog.close();
});

export async function openViewer(chainId) {
  const ticket = ++opening;
  dialog.dataset.chainId = chainId;
  $("viewer-request").textContent = "";
  $("viewer-status").textContent = "Loading the picture…";
  $("viewer-figure").hidden = true;
  $("viewer-download").hidden = true;
  clear($("viewer-steps"));
  if (!dialog.open) dialog.showModal();
  let chain;
  try {
    chain = await get(`/chains/${encodeURIComponent(chainId)}`);
  } catch (error) {
    if (ticket !== opening) return;
    dialog.close();
    showError(error);
    return;
  }
  if (ticket === opening) render(chain);
}

function render(chain) {
  $("viewer-request").textContent = chain.request_text ? `“${chain.request_text}”` : "";
  const final = chain.final_image;
  $("viewer-status").textContent = final ? scoreText(chain.score, chain.threshold)
    : `This picture is not finished (${chain.status}).`;
  if (final) {
    $("viewer-img").src = final.url;
    $("viewer-img").alt = chain.request_text ? `The picture: ${chain.request_text}` : "The picture";
    $("viewer-figure").hidden = false;
    const download = $("viewer-download");
    download.href = final.download_url;
    download.hidden = false;
  }
  const steps = $("viewer-steps");
  for (const step of chain.steps) steps.append(stepItem(chain, step));
  $("viewer-open-chain").onclick = () => {
    dialog.close();
    openChain(chain.chain_id, { focus: true });
  };
}

function scoreText(score, threshold) {
  if (typeof score !== "number") return "";
  if (typeof threshold !== "number") return `face ${fmt(score)}`;
  return `face ${fmt(score)} ${score >= threshold ? "≥" : "<"} ${fmt(threshold)}`;
}

function stepItem(chain, step) {
  const label = `Step ${step.index + 1}${step.kind ? ` · ${step.kind}` : ""}`;
  const pass = typeof step.score === "number" && (chain.threshold == null || step.score >= chain.threshold);
  const image = step.image;
  return el("li", { class: "viewer-step", "data-step": String(step.index) },
    image
      ? el("a", { href: image.url, target: "_blank", rel: "noopener" },
        el("img", { src: image.thumb_url, alt: `${label} (opens full size in a new tab)`, width: "96", height: "96",
          loading: "lazy" }))
      : el("span", { class: "viewer-step-empty", "aria-hidden": "true" }),
    el("div", { class: "viewer-step-text" },
      el("strong", {}, label),
      step.seed != null ? el("span", { class: "seed" }, `seed ${step.seed}`) : null,
      typeof step.score === "number"
        ? el("span", { class: `score ${pass ? "pass" : "fail"}`, "data-testid": `viewer-score-${step.index}` },
          scoreText(step.score, chain.threshold),
          // Pass and fail are told apart by colour on screen; said in words for screen readers.
          el("span", { class: "visually-hidden" }, pass ? ", at or above the threshold" : ", below the threshold"))
        : el("span", { class: "muted" }, step.state || ""),
      image
        ? el("button", { type: "button", class: "link-button", "aria-label": `Branch from ${label}`,
          onclick: () => {
            // One modal at a time: the branch dialog takes the viewer's place.
            dialog.close();
            openBranch(chain.chain_id, step.index);
          } }, "Branch from here")
        : null));
}
