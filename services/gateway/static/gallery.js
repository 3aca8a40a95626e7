// "Your pictures": the selected character's finished pictures, one entry per picture, newest first,
// each labelled with its request, date and face score; it opens in the viewer, downloads, or is
// deleted (hidden from you: the chain's history stays).

import { get, request } from "./api.js";
import { fmt } from "./chain_steps.js";
import { el, clear } from "./dom.js";
import { guarded } from "./notices.js";
import { $, state } from "./state.js";
import { openViewer } from "./viewer.js";

// Dispatched by characters.js whenever a character is picked.
document.addEventListener("character-selected", () => guarded(loadGallery)());

export async function loadGallery() {
  const character = state.current;
  const list = $("gallery");
  $("gallery-of").textContent = character ? ` of ${character.name}` : "";
  if (!character) {
    clear(list);
    showEmpty("Pick a character to see their pictures.");
    return;
  }
  const pictures = await get(`/me/pictures?character_id=${encodeURIComponent(character.id)}`);
  // Another character was picked while this one's pictures were on their way.
  if (state.current?.id !== character.id) return;
  clear(list);
  for (const picture of pictures) list.append(galleryItem(picture));
  showEmpty(pictures.length ? null : `No pictures of ${character.name} yet.`);
}

function showEmpty(text) {
  $("gallery-empty").hidden = text === null;
  if (text !== null) $("gallery-empty").textContent = text;
}

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function galleryItem(picture) {
  const label = picture.request_text || "a picture";
  const pass = typeof picture.score === "number" && (picture.threshold == null || picture.score >= picture.threshold);
  const score = typeof picture.score === "number"
    ? `face ${fmt(picture.score)}${picture.threshold != null ? ` ${pass ? "≥" : "<"} ${fmt(picture.threshold)}` : ""}`
    : "no score";
  const item = el("li", { class: "gallery-item", "data-testid": "picture", "data-chain-id": picture.chain_id,
    "data-sha256": picture.sha256 });
  item.append(
    el("button", { type: "button", class: "picture-open", "aria-label": `View the picture “${label}” and its steps`,
      onclick: () => openViewer(picture.chain_id) },
    el("img", { src: picture.thumb_url, alt: "", loading: "lazy", width: "160", height: "160" })),
    el("p", { class: "picture-request", "data-testid": "picture-request" }, `“${label}”`),
    el("p", { class: "picture-meta small" },
      el("time", { datetime: picture.created_at, "data-testid": "picture-date" }, when(picture.created_at)),
      " · ",
      el("span", { class: `score ${pass ? "pass" : "fail"}`, "data-testid": "picture-score" }, score)),
    el("div", { class: "row" },
      el("a", { href: picture.download_url, download: "", "aria-label": `Download “${label}”` },
        "Download"),
      el("button", { type: "button", class: "link-button", "aria-label": `Delete “${label}”`,
        onclick: guarded(() => deletePicture(picture, item, label)) }, "Delete")));
  return item;
}

async function deletePicture(picture, item, label) {
  if (!confirm(`Delete the picture “${label}” from your pictures? Its chain's history is kept.`)) return;
  await request("DELETE", `/me/pictures/${encodeURIComponent(picture.chain_id)}`);
  item.remove();
  if (!$("gallery").children.length) showEmpty(`No pictures of ${state.current?.name ?? "this character"} yet.`);
}
