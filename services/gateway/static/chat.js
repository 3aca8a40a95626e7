// The chat with the selected character: the conversation, and the reply streamed in as it is
// written. A message that asks for a picture starts a chain, whose live card is part of the reply.

import { ApiError, get, postStream, request } from "./api.js";
import { chainCard } from "./chat_card.js";
import { el, clear } from "./dom.js";
import { showError } from "./notices.js";
import { $, state } from "./state.js";
import { whenListed } from "./treeview.js";

// Messages read per page; older ones come with "Show earlier messages".
const PAGE = 30;

// The conversation shown: the server keeps every conversation (GET /conversations), so another
// device or a cleared browser shows the same one. `id` is null until the first message starts one.
const shown = { characterId: null, id: null, older: null, token: 0 };

// A picture is part of the conversation: its chain's live card sits in the reply that speaks of it.
// The chat names the chain as soon as it asks for it, but the gateway knows the chain only once the
// planner has recorded the request (milliseconds later, seconds under load) and answers 404 for it
// until then: a new card's stream is opened once the edit tree lists the chain.
function showCard(item, chainId, { announced = false } = {}) {
  if (!chainId || item.querySelector(`.chain-card[data-chain-id="${CSS.escape(chainId)}"]`)) return;
  if (announced) document.dispatchEvent(new Event("picture-requested"));
  const card = chainCard(chainId, {
    ready: announced ? whenListed : null,
    onRegenerated: (newId) => following(() => card.after(chainCard(newId, { ready: whenListed, takeOf: chainId }))),
  });
  following(() => item.append(card));
}

// "Go back to the previous picture": that picture's card again, or a line saying the next picture
// starts from the reference photo.
function showPicked(item, picked) {
  if (picked.chain_id) {
    following(() => item.append(el("p", { class: "muted small picked-note" }, "Back to this picture:")));
    showCard(item, picked.chain_id);
  } else {
    following(() => item.append(el("p", { class: "muted small picked-note" },
      "Back to the original photo: the next picture starts from it.")));
  }
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

// A message's bubble; `attach()` adds its picture card once the bubble is in the log.
function bubble(role, text, { offline = false, chainId = null, picked = undefined } = {}) {
  const body = el("p", { class: "bubble-text" }, text);
  const item = el("li", { class: `bubble bubble-${role}`, "data-role": role },
    el("span", { class: "visually-hidden" }, role === "user" ? "You said: " : `${state.current?.name ?? "Character"} said: `),
    body);
  if (offline) item.append(offlineBadge());
  const attach = () => {
    if (picked !== undefined) showPicked(item, { chain_id: picked });
    if (chainId) showCard(item, chainId);
  };
  return { item, body, attach };
}

function chatMessage(role, text) {
  const message = bubble(role, text);
  const log = $("chat-log");
  // What the user just sent is always shown, with the reply that comes under it.
  if (role === "user") {
    log.append(message.item);
    log.scrollTop = log.scrollHeight;
  } else {
    following(() => log.append(message.item));
  }
  return message;
}

// The character's latest conversation, its newest page of messages; called when a character is picked.
export async function renderChatHistory() {
  const character = state.current;
  const token = ++shown.token;
  Object.assign(shown, { characterId: character.id, id: null, older: null });
  clear($("chat-log"));
  $("offline-badge").hidden = true;
  $("chat-older").hidden = true;
  $("chat-delete").hidden = true;
  const [latest] = await get(`/conversations?character_id=${encodeURIComponent(character.id)}&limit=1`);
  if (token !== shown.token || !latest) return;  // another character was picked meanwhile
  shown.id = latest.conversation_id;
  $("chat-delete").hidden = false;
  await showPage(`/conversations/${encodeURIComponent(latest.conversation_id)}/messages?limit=${PAGE}`, token);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;  // a conversation opens at its latest message
}

// Older messages go above the ones shown, the reader's place kept.
export async function showOlderMessages() {
  if (!shown.older) return;
  const log = $("chat-log");
  const fromBottom = log.scrollHeight - log.scrollTop;
  await showPage(shown.older, shown.token, { above: true });
  log.scrollTop = log.scrollHeight - fromBottom;
}

async function showPage(url, token, { above = false } = {}) {
  const page = await get(url);
  if (token !== shown.token) return;
  const items = [];
  let picked;  // what a user's "go back" picked is shown in the reply to it
  for (const message of page.messages) {
    if (message.role === "user") {
      if (message.refused) continue;
      picked = message.picked ? message.picked_chain_id ?? null : undefined;
      items.push(bubble("user", message.text));
    } else {
      items.push(bubble("character", message.text, { offline: message.offline, chainId: message.chain_id, picked }));
      picked = undefined;
    }
  }
  const log = $("chat-log");
  if (above) log.prepend(...items.map((b) => b.item));
  else log.append(...items.map((b) => b.item));
  for (const b of items) b.attach();
  shown.older = page.next ?? null;
  $("chat-older").hidden = !shown.older;
  if (page.messages.some((m) => m.offline)) $("offline-badge").hidden = false;
}

// Forget this conversation (hidden from its owner; the log keeps it) and start afresh.
export async function deleteConversation() {
  if (!shown.id || !window.confirm("Delete this conversation? It is gone from this list; the pictures stay in your gallery.")) return;
  await request("DELETE", `/conversations/${encodeURIComponent(shown.id)}`);
  shown.id = null;
  shown.older = null;
  clear($("chat-log"));
  $("chat-older").hidden = true;
  $("chat-delete").hidden = true;
  $("offline-badge").hidden = true;
}

export async function sendChat(event) {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !state.current) return;
  input.value = "";
  await converse(text, (body, onEvent) => postStream("/chat/stream", { ...body, text }, onEvent));
}

// One exchange: the user's bubble, then the reply streamed under it. `post(body, onEvent)` sends the
// message to the character (`body`: character_id and, when going on, conversation_id). A spoken
// message (voice.js) starts with an empty bubble that its `transcript` event fills.
export async function converse(text, post) {
  const character = state.current;
  const mine = chatMessage("user", text);
  if (!text) mine.item.dataset.transcribing = "1";

  const reply = chatMessage("character", "");
  // Busy on the live region itself: screen readers then read the reply once, when it is whole,
  // instead of every token as it arrives.
  $("chat-log").setAttribute("aria-busy", "true");
  reply.item.dataset.streaming = "1";
  $("chat-send").disabled = true;
  const answer = { text: "" };
  try {
    const body = { character_id: character.id };
    if (shown.id && shown.characterId === character.id) body.conversation_id = shown.id;
    await post(body, (type, data) => {
      if (type === "transcript") {
        delete mine.item.dataset.transcribing;
        mine.item.dataset.voice = "1";
        following(() => { mine.body.textContent = data?.text ?? ""; });
      } else {
        onReplyEvent(type, data, { character, reply, answer });
      }
    });
  } catch (error) {
    if (!answer.text) reply.item.remove();
    if (mine.item.dataset.transcribing) mine.item.remove();  // nothing was heard: nothing was said
    showError(error);
  } finally {
    $("chat-log").removeAttribute("aria-busy");
    delete reply.item.dataset.streaming;
    $("chat-send").disabled = false;
  }
}

function onReplyEvent(type, data, { character, reply, answer }) {
  if (type === "accepted") {
    if (data?.conversation_id && shown.characterId === character.id) {
      shown.id = data.conversation_id;
      $("chat-delete").hidden = false;
    }
  } else if (type === "reset") {
    answer.text = "";
    reply.body.textContent = "";
  } else if (type === "image") {
    if (data?.chain_id) showCard(reply.item, data.chain_id, { announced: true });
  } else if (type === "picked") {
    showPicked(reply.item, data ?? {});
  } else if (type === "delta") {
    answer.text += data?.delta ?? "";
    reply.item.dataset.deltas = String(Number(reply.item.dataset.deltas || 0) + 1);
    following(() => { reply.body.textContent = answer.text; });
  } else if (type === "reply") {
    answer.text = data.text ?? answer.text;
    following(() => { reply.body.textContent = answer.text; });
    if (data.offline) following(() => reply.item.insertBefore(offlineBadge(), reply.body.nextSibling));
    if (data.offline) $("offline-badge").hidden = false;
    // No-op when the `image` event already showed the card.
    if (data.chain_id) showCard(reply.item, data.chain_id, { announced: true });
    if (data.login_required) {
      // The character says so in words; the banner says how, as for a refused picture request.
      showError(new ApiError(403, "login_required", "Guests may make only a few pictures: log in to ask for more."));
    }
  } else if (type === "error") {
    throw new ApiError(200, data?.error, data?.detail || "The reply failed.");
  }
}
