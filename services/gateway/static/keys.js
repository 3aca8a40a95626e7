// A registered user's API keys: listed (prefix, created, last used, revoked), another one made (its
// secret shown once, with a copy button), one revoked after a confirm(). Guests have no keys: the
// panel is hidden for them. The list is asked for when the panel is opened, not with every page load.

import { get, request } from "./api.js";
import { el, clear } from "./dom.js";
import { showError } from "./notices.js";
import { $ } from "./state.js";

export function showKeys(registered) {
  const panel = $("keys");
  panel.hidden = !registered;
  if (!registered) panel.open = false;
}

export async function loadKeys() {
  if ($("keys").hidden || !$("keys").open) return;
  const keys = await get("/auth/keys");
  const list = $("keys-list");
  clear(list);
  for (const key of keys) list.append(keyRow(key));
  $("keys-empty").hidden = keys.length > 0;
}

function when(value, never) {
  if (!value) return never;
  return el("time", { datetime: value }, new Date(value).toLocaleString());
}

function keyRow(key) {
  const name = `${key.prefix}…`;
  const state = key.revoked_at
    ? el("span", { class: "badge status-failed" }, "revoked ", when(key.revoked_at))
    : el("button", { type: "button", class: "secondary", "aria-label": `Revoke the key ${name}`,
      onclick: () => revokeKey(key).catch(showError) }, "Revoke");
  return el("tr", { "data-key-id": key.key_id, "data-prefix": key.prefix,
    "data-state": key.revoked_at ? "revoked" : "active" },
  el("th", { scope: "row" }, el("code", {}, name)),
  el("td", {}, when(key.created_at, "")),
  el("td", {}, when(key.last_used_at, "never")),
  el("td", {}, state));
}

// The secret is in the answer this once (only its hash is kept): it goes where the sign-up's key goes.
export function showNewKey(secret) {
  $("new-key-value").textContent = secret;
  $("new-key-copied").textContent = "";
  $("new-key").hidden = false;
}

export async function createKey() {
  const created = await request("POST", "/auth/keys");
  showNewKey(created.api_key);
  $("keys-status").textContent = `Key ${created.prefix}… created.`;
  await loadKeys();
}

async function revokeKey(key) {
  // The key may be the one a program (or this very page, logged in with it) uses: ask first.
  if (!confirm(`Revoke the key ${key.prefix}…? Programs using it are refused from now on (within a minute on `
    + "every server), and a revoked key cannot be used again.")) return;
  await request("DELETE", `/auth/keys/${encodeURIComponent(key.key_id)}`);
  $("keys-status").textContent = `Key ${key.prefix}… revoked.`;
  await loadKeys();
}

// The clipboard API needs permission (and a focused page); without it the key is selected instead, so
// one keystroke copies it.
export async function copyNewKey() {
  const node = $("new-key-value");
  try {
    await navigator.clipboard.writeText(node.textContent);
    $("new-key-copied").textContent = "Copied.";
  } catch {
    getSelection().selectAllChildren(node);
    $("new-key-copied").textContent = "Selected: press Ctrl+C (⌘C) to copy it.";
  }
}
