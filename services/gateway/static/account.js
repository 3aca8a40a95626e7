// Who is using the page: a guest (with the pictures left) or a registered user (with API keys, in
// keys.js); signing up, logging in with an API key and logging out. A log-in or log-out changes whose
// characters and pictures the page shows, so the page is loaded again after it.

import { get, request } from "./api.js";
import { showKeys, showNewKey } from "./keys.js";
import { $ } from "./state.js";

export async function loadAccount() {
  const me = await get("/me");
  const guest = me.kind === "anonymous";
  $("account-status").textContent = guest
    ? `Guest: ${me.images_left} picture${me.images_left === 1 ? "" : "s"} left`
    : "Logged in";
  $("account").dataset.kind = me.kind;
  $("signup").hidden = !guest;
  $("login-open").hidden = !guest;
  $("logout").hidden = guest;
  showKeys(!guest);
}

export async function signUp() {
  // The guest's pictures and characters stay theirs: the session becomes the registered user's.
  const answer = await request("POST", "/auth/signup");
  showNewKey(answer.api_key);
  $("login-form").hidden = true;
  await loadAccount();
}

export function openLogin() {
  const form = $("login-form");
  form.hidden = !form.hidden;
  $("login-open").setAttribute("aria-expanded", String(!form.hidden));
  if (!form.hidden) $("login-key").focus();
}

export async function logIn(event) {
  event.preventDefault();
  await request("POST", "/auth/login", { json: { api_key: $("login-key").value.trim() } });
  location.reload();
}

export async function logOut() {
  await request("POST", "/auth/logout");
  location.reload();
}
