// The chain panel: which chain it follows, and where that is remembered (the URL's #chain= and
// localStorage) so a reload picks the chain up again.

import { ChainView } from "./chain.js";
import { $, STORE, storage } from "./state.js";

const view = new ChainView($("chain"), {
  onStart: (id) => {
    storage(STORE.chain, id);
    if (location.hash !== `#chain=${id}`) history.replaceState(null, "", `#chain=${id}`);
  },
  // Announced like a chat card's end, so that this module needs neither the gallery nor the tree (app.js listens).
  onEnd: (id, type) => document.dispatchEvent(new CustomEvent("chain-ended", { detail: { id, type } })),
  // A chain that never sent a single event is not ours to resume: forget it.
  onLost: (id, never) => {
    if (!never) return;
    if (storage(STORE.chain) === id) storage(STORE.chain, null);
    if (location.hash.includes(id)) history.replaceState(null, "", location.pathname + location.search);
  },
});

export const followedChain = () => view.id;

// `ready(id)`, when given, is awaited before the stream is opened (see ChainView.open); `focus`
// moves the keyboard there, for a chain opened from a control that is elsewhere on the page.
export function openChain(chainId, { ready = null, focus = false, scroll = true } = {}) {
  if (view.id !== chainId) view.open(chainId, { ready });
  if (scroll) $("chain").scrollIntoView({ block: "start" });
  if (focus) $("chain-heading").focus({ preventScroll: true });
}

// Picking another character puts away the picture of the one before; its own chains stay in the
// gallery and the edit tree.
export function showOnlyChainsOf(characterId) {
  if (view.id && view.characterId && view.characterId !== characterId) {
    view.hide();
    if (location.hash.startsWith("#chain=")) history.replaceState(null, "", location.pathname + location.search);
  }
}

export function chainFromLocation() {
  const match = /chain=([0-9a-zA-Z-]+)/.exec(location.hash);
  return match ? match[1] : storage(STORE.chain);
}
