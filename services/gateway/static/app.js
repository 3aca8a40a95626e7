// The Likeness web page: characters, chat with streamed replies, picture requests followed live,
// the gallery and the edit tree. Plain ES modules, no build step; every call goes to the gateway.

import { ApiError, get, post, put, postStream, request } from "./api.js";
import { ChainView } from "./chain.js";
import { el, clear, imageUrl } from "./dom.js";
import { normaliseTree } from "./tree.js";

const $ = (id) => document.getElementById(id);
const STORE = {
  character: "likeness.character",
  chain: "likeness.chain",
  conversation: (id) => `likeness.conversation.${id}`,
};
const JOB_POLL_MS = 250;
const JOB_TIMEOUT_MS = 120_000;

const state = {
  characters: [],
  current: null, // the selected character
  trees: [], // the edit tree, normalised
};

// -- messages to the user ---------------------------------------------------------------------

function showError(error) {
  if (error instanceof ApiError && error.isLimit) {
    $("limit-notice").textContent = error.detail || "You have reached your image limit.";
    $("limit-notice").hidden = false;
    return;
  }
  $("error-text").textContent = error instanceof Error ? error.message : String(error);
  $("error-notice").hidden = false;
}

function guarded(fn) {
  return async (...args) => {
    try {
      return await fn(...args);
    } catch (error) {
      showError(error);
      return undefined;
    }
  };
}

function storage(key, value) {
  try {
    if (value === undefined) return localStorage.getItem(key);
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    // Private mode or storage disabled: the page works, it only forgets across reloads.
  }
  return null;
}

// -- characters ------------------------------------------------------------------------------

async function loadCharacters() {
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
  const img = el("img", { class: `avatar avatar-${size}`, alt: "", src: character.avatar_url || `/avatar/${encodeURIComponent(character.id)}` });
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
  if (character.has_reference || character.avatar_url) {
    avatarImg.hidden = false;
    avatarImg.src = character.avatar_url || `/avatar/${encodeURIComponent(character.id)}`;
    avatarImg.onerror = () => { avatarImg.hidden = true; };
  } else {
    avatarImg.hidden = true;
  }
  const needsPhoto = !character.has_reference;
  $("no-reference").hidden = !needsPhoto;
  $("picture-button").disabled = needsPhoto;
  $("picture-input").disabled = needsPhoto;
  $("picture-status").textContent = needsPhoto ? "Add a photo of this character before asking for pictures." : "";
  $("persona").open = false;
  $("persona-status").textContent = "";
  renderChatHistory();
  if (focus) $("chat-input").focus();
}

function replaceCharacter(updated) {
  const index = state.characters.findIndex((c) => c.id === updated.id);
  if (index >= 0) state.characters[index] = updated;
  else {
    const firstBuiltin = state.characters.findIndex((c) => c.builtin);
    state.characters.splice(updated.builtin || firstBuiltin < 0 ? state.characters.length : firstBuiltin, 0, updated);
  }
  $("characters-status").hidden = true;
  selectCharacter(updated);
}

async function createCharacter(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const status = $("create-status");
  status.textContent = "Uploading the photo…";
  $("create-submit").disabled = true;
  try {
    const character = await request("POST", "/characters/upload-image", { form: new FormData(form) });
    form.reset();
    $("create-character").open = false;
    status.textContent = "";
    replaceCharacter(character);
  } catch (error) {
    status.textContent = "";
    showError(error);
  } finally {
    $("create-submit").disabled = false;
  }
}

async function uploadReference(event) {
  event.preventDefault();
  if (!state.current) return;
  const form = event.currentTarget;
  const data = new FormData(form);
  data.set("character_id", state.current.id);
  $("reference-status").textContent = "Uploading the photo…";
  $("reference-submit").disabled = true;
  try {
    const character = await request("POST", "/characters/upload-image", { form: data });
    form.reset();
    $("reference-status").textContent = "";
    replaceCharacter(character);
  } catch (error) {
    $("reference-status").textContent = "";
    showError(error);
  } finally {
    $("reference-submit").disabled = false;
  }
}

async function loadPersona() {
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

async function savePersona(event) {
  event.preventDefault();
  if (!state.current) return;
  await put(`/characters/${encodeURIComponent(state.current.id)}/persona`, { persona: $("persona-text").value });
  $("persona-status").textContent = "Saved.";
}

// The art styles come from the planner's registry; the options in the page are the fallback.
async function loadStyles() {
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

// -- chat ------------------------------------------------------------------------------------

// The conversation shown for each character is kept in this browser, with its conversation id.
function conversation(id) {
  try {
    return JSON.parse(storage(STORE.conversation(id)) || "null") || { id: null, messages: [] };
  } catch {
    return { id: null, messages: [] };
  }
}

function saveConversation(characterId, convo) {
  convo.messages = convo.messages.slice(-50);
  storage(STORE.conversation(characterId), JSON.stringify(convo));
}

function chatMessage(role, text, { offline = false, chainId = null } = {}) {
  const body = el("p", { class: "bubble-text" }, text);
  const item = el("li", { class: `bubble bubble-${role}`, "data-role": role },
    el("span", { class: "visually-hidden" }, role === "user" ? "You said: " : `${state.current?.name ?? "Character"} said: `),
    body);
  if (offline) item.append(el("span", { class: "badge badge-offline" }, "offline persona mode"));
  if (chainId) item.append(chainLink(chainId));
  $("chat-log").append(item);
  item.scrollIntoView({ block: "nearest" });
  return { item, body };
}

function chainLink(chainId) {
  return el("button", { type: "button", class: "link-button", onclick: () => openChain(chainId) }, "Watch the picture being made");
}

function renderChatHistory() {
  clear($("chat-log"));
  const convo = conversation(state.current.id);
  for (const message of convo.messages) chatMessage(message.role, message.text, message);
  $("offline-badge").hidden = !convo.messages.some((m) => m.offline);
}

async function sendChat(event) {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !state.current) return;
  const character = state.current;
  const convo = conversation(character.id);
  input.value = "";
  chatMessage("user", text);
  convo.messages.push({ role: "user", text });
  saveConversation(character.id, convo);

  const reply = chatMessage("character", "");
  reply.item.setAttribute("aria-busy", "true");
  reply.item.dataset.streaming = "1";
  $("chat-send").disabled = true;
  let finalText = "";
  try {
    const body = { character_id: character.id, text };
    if (convo.id) body.conversation_id = convo.id;
    await postStream("/chat/stream", body, (type, data) => {
      if (type === "accepted") {
        if (data?.conversation_id) {
          convo.id = data.conversation_id;
          saveConversation(character.id, convo);
        }
      } else if (type === "reset") {
        finalText = "";
        reply.body.textContent = "";
      } else if (type === "image") {
        if (data?.chain_id) openChain(data.chain_id);
      } else if (type === "delta") {
        finalText += data?.delta ?? "";
        reply.item.dataset.deltas = String(Number(reply.item.dataset.deltas || 0) + 1);
        reply.body.textContent = finalText;
      } else if (type === "reply") {
        finalText = data.text ?? finalText;
        reply.body.textContent = finalText;
        convo.id = data.conversation_id ?? convo.id;
        const message = { role: "character", text: finalText, offline: !!data.offline, chainId: data.chain_id ?? null };
        convo.messages.push(message);
        saveConversation(character.id, convo);
        if (data.offline) {
          reply.item.append(el("span", { class: "badge badge-offline" }, "offline persona mode"));
          $("offline-badge").hidden = false;
        }
        if (data.chain_id) {
          reply.item.append(chainLink(data.chain_id));
          openChain(data.chain_id); // no-op when the `image` event already opened it
        }
      } else if (type === "error") {
        throw new ApiError(200, data?.error, data?.detail || "The reply failed.");
      }
    });
  } catch (error) {
    if (!finalText) reply.item.remove();
    showError(error);
  } finally {
    reply.item.removeAttribute("aria-busy");
    delete reply.item.dataset.streaming;
    $("chat-send").disabled = false;
  }
}

// -- pictures --------------------------------------------------------------------------------

async function askForPicture(event) {
  event.preventDefault();
  const character = state.current;
  const text = $("picture-input").value.trim();
  if (!character || !text) return;
  const status = $("picture-status");
  $("picture-button").disabled = true;
  status.textContent = "Asking for a picture…";
  try {
    const started = await post("/chat/generate-image", { character_id: character.id, request: text });
    const chainId = started.chain_id ?? await waitForChain(started.job_id);
    status.textContent = "";
    $("picture-input").value = "";
    openChain(chainId);
  } catch (error) {
    status.textContent = "";
    showError(error);
  } finally {
    $("picture-button").disabled = !state.current?.has_reference;
  }
}

// A picture job answers at once; it names its chain as soon as the request is in the log.
async function waitForChain(jobId) {
  const deadline = Date.now() + JOB_TIMEOUT_MS;
  for (;;) {
    const job = await get(`/chat/job/${encodeURIComponent(jobId)}`);
    const chainId = job.chain_id ?? job.result?.chain_id;
    if (chainId) return chainId;
    const status = String(job.status ?? "").toLowerCase();
    if (["failed", "error", "refused", "cancelled"].includes(status)) {
      throw new ApiError(200, job.error ?? status, job.detail ?? job.reason ?? `The picture request ${status}.`);
    }
    if (Date.now() > deadline) throw new Error("The picture request is taking too long; try again.");
    await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
  }
}

const chainView = new ChainView($("chain"), {
  onStart: (id) => {
    storage(STORE.chain, id);
    if (location.hash !== `#chain=${id}`) history.replaceState(null, "", `#chain=${id}`);
  },
  onEnd: (id) => guarded(refreshAfter)(id),
  // A chain that never sent a single event is not ours to resume: forget it.
  onLost: (id, never) => {
    if (!never) return;
    if (storage(STORE.chain) === id) storage(STORE.chain, null);
    if (location.hash.includes(id)) history.replaceState(null, "", location.pathname + location.search);
  },
});

function openChain(chainId) {
  if (chainView.id !== chainId) chainView.open(chainId);
  $("chain").scrollIntoView({ block: "start" });
}

function chainFromLocation() {
  const match = /chain=([0-9a-zA-Z-]+)/.exec(location.hash);
  return match ? match[1] : storage(STORE.chain);
}

// -- gallery and edit tree ---------------------------------------------------------------------

async function loadGallery() {
  const images = await get("/me/images");
  const list = $("gallery");
  clear(list);
  $("gallery-empty").hidden = images.length > 0;
  for (const image of images) {
    // Step -1 (or none) is a chain's finished picture; a step's own image can be branched from.
    const isStep = typeof image.step === "number" && image.step >= 0;
    const label = isStep
      ? `Step ${image.step + 1}${image.kind ? ` · ${image.kind}` : ""}${image.role === "attempt" ? `, attempt ${image.attempt}` : ""}`
      : "Finished picture";
    const url = image.url || imageUrl(image.sha256);
    const thumb = image.thumb_url || imageUrl(image.sha256, true);
    list.append(el("li", { class: "gallery-item", "data-sha256": image.sha256, "data-chain-id": image.chain_id,
      "data-step": isStep ? String(image.step) : "final" },
      el("a", { href: url, target: "_blank", rel: "noopener" },
        el("img", { src: thumb, alt: `${label} of chain ${String(image.chain_id).slice(0, 8)}`, loading: "lazy", width: "160", height: "160" })),
      el("span", { class: "small" }, label),
      el("div", { class: "row" },
        el("button", { type: "button", class: "link-button", onclick: () => openChain(image.chain_id) }, "Open chain"),
        isStep && image.role !== "attempt"
          ? el("button", { type: "button", class: "link-button", "data-testid": "gallery-branch",
            "aria-label": `Branch from here: ${label}`, onclick: () => openBranch(image.chain_id, image.step) }, "Branch from here")
          : null)));
  }
}

const TERMINAL_STATUS = new Set(["completed", "failed", "refused", "cancelled"]);

// The gallery and the tree are read models that catch up with the log a moment after a chain
// ends: read them again (a few times, briefly) until they show the chain as ended.
async function refreshAfter(chainId) {
  for (let attempt = 0; attempt < 4; attempt += 1) {
    await Promise.all([loadGallery(), loadTree()]);
    const node = findTree(chainId);
    if (node && TERMINAL_STATUS.has(node.status)) return;
    await new Promise((resolve) => setTimeout(resolve, 750 * (attempt + 1)));
  }
}

async function loadTree() {
  state.trees = normaliseTree(await get("/me/tree"));
  const root = $("tree");
  clear(root);
  $("tree-empty").hidden = state.trees.length > 0;
  for (const node of state.trees) root.append(treeNode(node));
}

function treeNode(node) {
  const steps = el("ol", { class: "tree-steps", "aria-label": "Steps" });
  for (const step of node.steps) {
    steps.append(el("li", { class: "tree-step", "data-step": String(step.index) },
      step.sha256 ? el("img", { src: imageUrl(step.sha256, true), alt: "", width: "40", height: "40", loading: "lazy" }) : null,
      el("span", {}, `Step ${step.index + 1}${step.kind ? ` · ${step.kind}` : ""}`),
      step.score != null
        ? el("span", { class: `score ${step.threshold == null || step.score >= step.threshold ? "pass" : "fail"}` },
          `face ${step.score.toFixed(1)}${step.threshold != null ? ` / ${step.threshold}` : ""}`)
        : null,
      step.sha256
        ? el("button", { type: "button", class: "link-button", "data-testid": "tree-branch",
          "aria-label": `Branch from step ${step.index + 1}`, onclick: () => openBranch(node.id, step.index) }, "Branch")
        : null));
  }
  const children = el("ul", { class: "tree-children" });
  for (const child of node.children) children.append(treeNode(child));
  return el("li", { class: "tree-node", "data-chain-id": node.id },
    el("div", { class: "tree-head" },
      el("button", { type: "button", class: "link-button", onclick: () => openChain(node.id) },
        node.request ? `“${node.request}”` : `Chain ${node.id.slice(0, 8)}`),
      node.status ? el("span", { class: `badge status-${node.status}` }, node.status) : null,
      node.fromStep != null ? el("span", { class: "muted small" }, `branched at step ${node.fromStep + 1}`) : null),
    node.steps.length ? steps : null,
    node.children.length ? children : null);
}

// -- branching --------------------------------------------------------------------------------

function findTree(id, nodes = state.trees) {
  for (const node of nodes) {
    if (node.id === id) return node;
    const found = findTree(id, node.children);
    if (found) return found;
  }
  return null;
}

function openBranch(chainId, step) {
  const dialog = $("branch-dialog");
  const select = $("branch-step");
  clear(select);
  const known = (findTree(chainId)?.steps ?? []).filter((s) => s.sha256);
  const indices = known.length ? known.map((s) => s) : Array.from({ length: Number(step) + 1 }, (_, i) => ({ index: i }));
  for (const s of indices) {
    select.append(el("option", { value: String(s.index), selected: s.index === Number(step) },
      `Step ${s.index + 1}${s.kind ? ` · ${s.kind}` : ""}`));
  }
  dialog.dataset.chainId = chainId;
  $("branch-what").textContent = `Keep chain ${chainId.slice(0, 8)} up to the chosen step, then edit it differently.`;
  $("branch-request").value = "";
  dialog.showModal();
  $("branch-request").focus();
}

async function submitBranch(event) {
  event.preventDefault();
  const dialog = $("branch-dialog");
  const body = { from_step: Number($("branch-step").value), request: $("branch-request").value.trim() };
  if (!body.request) return;
  $("branch-submit").disabled = true;
  try {
    const { chain_id: chainId } = await post(`/chains/${encodeURIComponent(dialog.dataset.chainId)}/branch`, body);
    dialog.close();
    openChain(chainId);
  } catch (error) {
    dialog.close();
    showError(error);
  } finally {
    $("branch-submit").disabled = false;
  }
}

// -- wiring ----------------------------------------------------------------------------------

function start() {
  $("error-dismiss").addEventListener("click", () => { $("error-notice").hidden = true; });
  $("create-form").addEventListener("submit", createCharacter);
  $("reference-form").addEventListener("submit", uploadReference);
  $("persona").addEventListener("toggle", guarded(loadPersona));
  $("persona-form").addEventListener("submit", guarded(savePersona));
  $("chat-form").addEventListener("submit", sendChat);
  $("picture-form").addEventListener("submit", askForPicture);
  $("gallery-refresh").addEventListener("click", guarded(loadGallery));
  $("tree-refresh").addEventListener("click", guarded(loadTree));
  $("branch-form").addEventListener("submit", submitBranch);
  $("branch-cancel").addEventListener("click", () => $("branch-dialog").close());
  window.addEventListener("hashchange", () => {
    const id = chainFromLocation();
    if (id && id !== chainView.id) openChain(id);
  });

  const resume = chainFromLocation();
  if (resume) chainView.open(resume);
  guarded(loadCharacters)();
  loadStyles();
  guarded(loadGallery)();
  guarded(loadTree)();
  document.body.dataset.ready = "1";
}

start();
