// Two takes of a picture side by side (GET /chains/{id}/compare): per step the two pictures, their
// seeds and face scores, and how far apart the pictures are (perceptual hash distance).

import { get } from "./api.js";
import { el, imageUrl } from "./dom.js";
import { fmt, human } from "./chain_steps.js";

function dialog() {
  let node = document.getElementById("compare-dialog");
  if (!node) {
    node = el("dialog", { id: "compare-dialog", "data-testid": "compare-dialog", class: "viewer",
      "aria-labelledby": "compare-heading" });
    document.body.append(node);
    // A click on the backdrop (the dialog itself, outside its content) closes it, as Escape does.
    node.addEventListener("click", (event) => { if (event.target === node) node.close(); });
  }
  return node;
}

function side(facts, label) {
  if (!facts) return el("td", {}, "—");
  return el("td", {},
    facts.sha256 ? el("img", { src: imageUrl(facts.sha256, true), alt: `${label}`, width: "96", height: "96" }) : null,
    el("div", { class: "small" }, `seed ${facts.seed ?? "?"}`),
    el("div", { class: "small" }, facts.score != null ? `face ${fmt(facts.score)}` : "no score"));
}

export async function openComparison(chainId, otherId) {
  const node = dialog();
  const compared = await get(`/chains/${encodeURIComponent(chainId)}/compare?with=${encodeURIComponent(otherId)}`);
  const rows = compared.steps.map((row) => el("tr", { "data-testid": "compare-row" },
    el("th", { scope: "row" }, `${human(row.index)}${row.this?.kind ? ` · ${row.this.kind}` : ""}`),
    side(row.other, `${human(row.index)}, first take`),
    side(row.this, `${human(row.index)}, this take`),
    el("td", { class: "small" },
      row.same_image ? "the same picture"
        : row.hash_distance != null ? `${row.hash_distance} of 64 bits apart${row.hash_distance <= 10 ? " (near)" : ""}` : "—",
      row.same_seed ? el("div", { class: "small muted" }, "same seed") : null)));
  node.replaceChildren(
    el("div", { class: "section-head" },
      el("h2", { id: "compare-heading" }, "Two takes compared"),
      el("button", { type: "button", class: "secondary", onclick: () => node.close() }, "Close")),
    el("table", { class: "compare-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "Step"), el("th", {}, "First take"), el("th", {}, "This take"),
        el("th", {}, "Difference"))),
      el("tbody", {}, rows)),
    el("p", { class: "muted small" }, compared.hash));
  if (!node.open) node.showModal();
}
