// The characters: the list to pick from, the selected one's panel, creating one with a face photo,
// adding a photo to one that has none, and the art styles offered.

import { get, request } from "./api.js";
import { renderChatHistory } from "./chat.js";
import { showOnlyChainsOf } from "./follow.js";
import { el, clear } from "./dom.js";
import { guarded, showError } from "./notices.js";
import { $, STORE, state, storage } from "./state.js";

const avatarUrl = (character) => character.avatar_url || `/avatar/${encodeURIComponent(character.id)}`;

export async function loadCharacters() {
  try {
    // One's own characters first (they are the ones with photos), then the built-in ones.
    const listed = await get("/characters");
    state.characters = [...listed.filter((c) => !c.builtin), ...listed.filter((c) => c.builtin)];
  } catch (error) {
    $("characters-status").textContent = "Could not load the characters.";
    throw error;
  }
  $("characters-status").textContent = state.characters.length ? "" : "No characters yet: create one above.";
  $("characters-status").hidden = state.characters.length > 0;
  renderCharacters();
  const wanted = state.current?.id ?? storage(STORE.character);
  const found = state.characters.find((c) => c.id === wanted);
  if (found) selectCharacter(found, { focus: false });
}

function avatar(character, size) {
  const fallback = el("span", { class: `avatar avatar-${size} avatar-initial`, "aria-hidden": "true" },
    (character.name || "?").slice(0, 1).toUpperCase());
  if (!character.has_reference && !character.avatar_url) return fallback;
  const img = el("img", { class: `avatar avatar-${size}`, alt: "", src: avatarUrl(character) });
  img.addEventListener("error", () => img.replaceWith(fallback), { once: true });
  return img;
}

function renderCharacters() {
  const list = $("character-list");
  clear(list);
  for (const character of state.characters) {
    const selected = state.current?.id === character.id;
    const details = [character.occupation, character.art_style].filter(Boolean).join(" · ");
    const button = el("button", {
      type: "button", class: "character", "aria-pressed": String(selected),
      "data-testid": `character-${character.id}`, "data-character-id": character.id,
      onclick: () => selectCharacter(character),
    },
    avatar(character, "small"),
    el("span", { class: "character-text" },
      el("span", { class: "character-name" }, character.name),
      details ? el("span", { class: "muted small" }, details) : null,
      character.has_reference ? null : el("span", { class: "badge badge-warn" }, "no photo")));
    list.append(el("li", {}, button));
  }
}

function selectCharacter(character, { focus = true } = {}) {
  state.current = character;
  storage(STORE.character, character.id);
  renderCharacters();
  $("pick-hint").hidden = true;
  $("character-panel").hidden = false;
  $("chat").hidden = false;
  $("character-panel").dataset.characterId = character.id;
  $("character-name").textContent = character.name;
  $("character-meta").textContent = [character.gender, character.occupation, character.personality,
    character.art_style && `${character.art_style} style`, character.builtin ? "built-in" : "yours"]
    .filter(Boolean).join(" · ");
  const avatarImg = $("character-avatar");
  avatarImg.hidden = !(character.has_reference || character.avatar_url);
  if (!avatarImg.hidden) {
    avatarImg.src = avatarUrl(character);
    avatarImg.onerror = () => { avatarImg.hidden = true; };
  }
  const needsPhoto = !character.has_reference;
  $("no-reference").hidden = !needsPhoto;
  $("picture-button").disabled = needsPhoto;
  $("picture-input").disabled = needsPhoto;
  $("picture-status").textContent = needsPhoto ? "Add a photo of this character before asking for pictures." : "";
  $("persona").open = false;
  $("persona-status").textContent = "";
  guarded(renderChatHistory)();
  showOnlyChainsOf(character.id);
  document.dispatchEvent(new CustomEvent("character-selected", { detail: character }));
  if (focus) $("chat-input").focus();
}

export function replaceCharacter(updated) {
  const index = state.characters.findIndex((c) => c.id === updated.id);
  if (index >= 0) state.characters[index] = updated;
  else {
    const firstBuiltin = state.characters.findIndex((c) => c.builtin);
    state.characters.splice(updated.builtin || firstBuiltin < 0 ? state.characters.length : firstBuiltin, 0, updated);
  }
  $("characters-status").hidden = true;
  selectCharacter(updated);
}

// Both forms send the same upload; `status` and `submit` are the ids of the form's own parts.
async function upload(form, data, { status, submit }) {
  $(status).textContent = "Uploading the photo…";
  $(submit).disabled = true;
  try {
    const character = await request("POST", "/characters/upload-image", { form: data });
    form.reset();
    $(status).textContent = "";
    return character;
  } catch (error) {
    $(status).textContent = "";
    showError(error);
    return null;
  } finally {
    $(submit).disabled = false;
  }
}

export async function createCharacter(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const character = await upload(form, new FormData(form), { status: "create-status", submit: "create-submit" });
  if (!character) return;
  $("create-character").open = false;
  replaceCharacter(character);
}

export async function uploadReference(event) {
  event.preventDefault();
  if (!state.current) return;
  const form = event.currentTarget;
  const data = new FormData(form);
  data.set("character_id", state.current.id);
  const character = await upload(form, data, { status: "reference-status", submit: "reference-submit" });
  if (character) replaceCharacter(character);
}

// The art styles come from the planner's registry; the options in the page are the fallback.
export async function loadStyles() {
  let styles;
  try {
    styles = await get("/styles");
  } catch {
    return;
  }
  if (!Array.isArray(styles) || !styles.length) return;
  const select = $("create-style");
  clear(select);
  for (const style of styles) {
    select.append(el("option", { value: style.name, selected: !!style.default },
      style.description ? `${style.name} — ${style.description}` : style.name));
  }
}
