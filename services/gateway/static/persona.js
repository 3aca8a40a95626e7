// The selected character's persona: read when its section is opened, saved when one's own. A
// built-in character's persona is saved as one's own take on it: others keep the shared one.

import { get, put } from "./api.js";
import { $, state } from "./state.js";

export async function loadPersona() {
  if (!$("persona").open || !state.current) return;
  const id = state.current.id;
  $("persona-status").textContent = "Loading…";
  const persona = await get(`/characters/${encodeURIComponent(id)}/persona`);
  if (state.current?.id !== id) return;
  $("persona-text").value = typeof persona === "string" ? persona : persona?.persona ?? "";
  const editable = persona?.editable ?? true;
  $("persona-text").readOnly = !editable;
  $("persona-save").hidden = !editable;
  $("persona-status").textContent = state.current.builtin && editable
    ? "A built-in character: what you write here is your own version, for your chats only." : "";
}

export async function savePersona(event) {
  event.preventDefault();
  if (!state.current) return;
  await put(`/characters/${encodeURIComponent(state.current.id)}/persona`, { persona: $("persona-text").value });
  $("persona-status").textContent = state.current.builtin ? "Saved, for your chats with this character." : "Saved.";
}
