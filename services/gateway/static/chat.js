// The chat with the selected character: the conversation kept in this browser, and the reply
// streamed in as it is written. A message that asks for a picture starts a chain, followed here.

import { ApiError, postStream } from "./api.js";
import { el, clear } from "./dom.js";
import { followedChain, openChain } from "./follow.js";
import { showError } from "./notices.js";
import { $, STORE, state, storage } from "./state.js";
import { whenListed } from "./treeview.js";

const KEPT_MESSAGES = 50;

// The conversation shown for each character is kept in this browser, with its conversation id.
function conversation(id) {
  try {
    return JSON.parse(storage(STORE.conversation(id)) || "null") || { id: null, messages: [] };
  } catch {
    return { id: null, messages: [] };
  }
}

function saveConversation(characterId, convo) {
  convo.messages = convo.messages.slice(-KEPT_MESSAGES);
  storage(STORE.conversation(characterId), JSON.stringify(convo));
}

// The chat names a picture's chain as soon as it asks for it, but the gateway knows the chain only
// once the planner has recorded the request (milliseconds later, seconds under load) and answers
// 404 for it until then: its stream is opened once the edit tree lists it.
function followAnnounced(chainId) {
  if (chainId !== followedChain()) document.dispatchEvent(new Event("picture-requested"));
  openChain(chainId, { ready: whenListed });
}

function chainLink(chainId) {
  return el("button", { type: "button", class: "link-button", onclick: () => followAnnounced(chainId) },
    "Watch the picture being made");
}

const offlineBadge = () => el("span", { class: "badge badge-offline" }, "offline persona mode");

// The log follows new words while the reader is at its end; a reader who scrolled up to read
// something earlier is left there (a few pixels of slack: zoom and rounding).
const FOLLOW_SLACK_PX = 24;

function atEnd(log) {
  return log.scrollHeight - log.scrollTop - log.clientHeight <= FOLLOW_SLACK_PX;
}

function following(change) {
  const log = $("chat-log");
  const follow = atEnd(log);
  change();
  if (follow) log.scrollTop = log.scrollHeight;
}

function chatMessage(role, text, { offline = false, chainId = null } = {}) {
  const body = el("p", { class: "bubble-text" }, text);
  const item = el("li", { class: `bubble bubble-${role}`, "data-role": role },
    el("span", { class: "visually-hidden" }, role === "user" ? "You said: " : `${state.current?.name ?? "Character"} said: `),
    body);
  if (offline) item.append(offlineBadge());
  if (chainId) item.append(chainLink(chainId));
  const log = $("chat-log");
  // What the user just sent is always shown, with the reply that comes under it.
  if (role === "user") {
    log.append(item);
    log.scrollTop = log.scrollHeight;
  } else {
    following(() => log.append(item));
  }
  return { item, body };
}

export function renderChatHistory() {
  clear($("chat-log"));
  const convo = conversation(state.current.id);
  for (const message of convo.messages) chatMessage(message.role, message.text, message);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;  // a conversation opens at its latest message
  $("offline-badge").hidden = !convo.messages.some((m) => m.offline);
}

export async function sendChat(event) {
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
  // Busy on the live region itself: screen readers then read the reply once, when it is whole,
  // instead of every token as it arrives.
  $("chat-log").setAttribute("aria-busy", "true");
  reply.item.dataset.streaming = "1";
  $("chat-send").disabled = true;
  const answer = { text: "" };
  try {
    const body = { character_id: character.id, text };
    if (convo.id) body.conversation_id = convo.id;
    await postStream("/chat/stream", body, (type, data) => onReplyEvent(type, data, { character, convo, reply, answer }));
  } catch (error) {
    if (!answer.text) reply.item.remove();
    showError(error);
  } finally {
    $("chat-log").removeAttribute("aria-busy");
    delete reply.item.dataset.streaming;
    $("chat-send").disabled = false;
  }
}

function onReplyEvent(type, data, { character, convo, reply, answer }) {
  if (type === "accepted") {
    if (data?.conversation_id) {
      convo.id = data.conversation_id;
      saveConversation(character.id, convo);
    }
  } else if (type === "reset") {
    answer.text = "";
    reply.body.textContent = "";
  } else if (type === "image") {
    if (data?.chain_id) followAnnounced(data.chain_id);
  } else if (type === "delta") {
    answer.text += data?.delta ?? "";
    reply.item.dataset.deltas = String(Number(reply.item.dataset.deltas || 0) + 1);
    following(() => { reply.body.textContent = answer.text; });
  } else if (type === "reply") {
    answer.text = data.text ?? answer.text;
    following(() => { reply.body.textContent = answer.text; });
    convo.id = data.conversation_id ?? convo.id;
    const message = { role: "character", text: answer.text, offline: !!data.offline, chainId: data.chain_id ?? null };
    convo.messages.push(message);
    saveConversation(character.id, convo);
    following(() => {
      if (data.offline) reply.item.append(offlineBadge());
      if (data.chain_id) reply.item.append(chainLink(data.chain_id));
    });
    if (data.offline) $("offline-badge").hidden = false;
    if (data.chain_id) followAnnounced(data.chain_id); // no-op when the `image` event already opened it
    if (data.login_required) {
      // The character says so in words; the banner says how, as for a refused picture request.
      showError(new ApiError(403, "login_required", "Guests may make only a few pictures: log in to ask for more."));
    }
  } else if (type === "error") {
    throw new ApiError(200, data?.error, data?.detail || "The reply failed.");
  }
}
