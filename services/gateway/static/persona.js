// The selected character's persona: read when its section is opened, saved when one's own.

import { get, put } from "./api.js";
import { $, state } from "./state.js";

export async function loadPersona() {
  if (!$("persona").open || !state.current) return;
  const id = state.current.id;
  $("persona-status").textContent = "Loading…";
  const persona = await get(`/characters/${encodeURIComponent(id)}/persona`);
  if (state.current?.id !== id) return;
  $("persona-text").value = typeof persona === "string" ? persona : persona?.persona ?? "";
  const editable = persona?.editable ?? !state.current.builtin;
  $("persona-text").readOnly = !editable;
  $("persona-save").hidden = !editable;
  $("persona-status").textContent = editable ? "" : "Built-in characters' personas cannot be changed; create your own character to write one.";
}

export async function savePersona(event) {
  event.preventDefault();
  if (!state.current) return;
  await put(`/characters/${encodeURIComponent(state.current.id)}/persona`, { persona: $("persona-text").value });
  $("persona-status").textContent = "Saved.";
}
