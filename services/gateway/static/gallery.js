// "Your pictures": the finished pictures and the accepted step images of one's chains.

import { get } from "./api.js";
import { openBranch } from "./branch.js";
import { el, clear, imageUrl } from "./dom.js";
import { openChain } from "./follow.js";
import { $ } from "./state.js";

export async function loadGallery() {
  const images = await get("/me/images");
  const list = $("gallery");
  clear(list);
  $("gallery-empty").hidden = images.length > 0;
  for (const image of images) list.append(galleryItem(image));
}

function galleryItem(image) {
  // Step -1 (or none) is a chain's finished picture; a step's own image can be branched from.
  const isStep = typeof image.step === "number" && image.step >= 0;
  const label = isStep
    ? `Step ${image.step + 1}${image.kind ? ` · ${image.kind}` : ""}${image.role === "attempt" ? `, attempt ${image.attempt}` : ""}`
    : "Finished picture";
  const chain = String(image.chain_id).slice(0, 8);
  const url = image.url || imageUrl(image.sha256);
  const thumb = image.thumb_url || imageUrl(image.sha256, true);
  return el("li", { class: "gallery-item", "data-sha256": image.sha256, "data-chain-id": image.chain_id,
    "data-step": isStep ? String(image.step) : "final" },
  el("a", { href: url, target: "_blank", rel: "noopener" },
    el("img", { src: thumb, alt: `${label} of chain ${chain} (opens full size in a new tab)`, loading: "lazy",
      width: "160", height: "160" })),
  el("span", { class: "small" }, label),
  el("div", { class: "row" },
    // Every item has these buttons: their names say which picture they are for.
    el("button", { type: "button", class: "link-button", "aria-label": `Open chain ${chain}: ${label}`,
      onclick: () => openChain(image.chain_id, { focus: true }) }, "Open chain"),
    isStep && image.role !== "attempt"
      ? el("button", { type: "button", class: "link-button", "data-testid": "gallery-branch",
        "aria-label": `Branch from here: ${label}`, onclick: () => openBranch(image.chain_id, image.step) }, "Branch from here")
      : null));
}
