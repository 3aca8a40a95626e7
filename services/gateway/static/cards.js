// Character cards (SillyTavern's format): importing one as a character of one's own, and the selected
// character's export links (a PNG card needs the character's reference photo to carry it).

import { request } from "./api.js";
import { replaceCharacter } from "./characters.js";
import { showError } from "./notices.js";
import { $ } from "./state.js";

export async function importCard(event) {
  event.preventDefault();
  const form = event.currentTarget;
  $("import-status").textContent = "Reading the card…";
  $("import-submit").disabled = true;
  try {
    const { notes = [], ...character } = await request("POST", "/characters/import-card",
      { form: new FormData(form) });
    form.reset();
    // The notes say what the card could not give (a face, room in the persona); the status keeps them.
    $("import-status").textContent = [`Imported ${character.name}.`, ...notes].join(" ");
    replaceCharacter(character);
  } catch (error) {
    $("import-status").textContent = "";
    showError(error);
  } finally {
    $("import-submit").disabled = false;
  }
}

// Called with the `character-selected` event characters.js sends.
export function showExport({ detail: character }) {
  const base = `/characters/${encodeURIComponent(character.id)}/card`;
  $("export-png").href = `${base}?format=png`;
  $("export-json").href = `${base}?format=json`;
  $("export-png").hidden = !character.has_reference;
  $("export-png-hint").hidden = character.has_reference;
}
