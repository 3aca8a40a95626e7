// A picture inside the conversation: the live card of its chain (steps, face scores against the
// threshold, previews, queue position, render progress) ending in the picture, with cancel,
// regenerate, a viewer and a download. Each card is a ChainView of its own on a small template.

import { post } from "./api.js";
import { ChainView } from "./chain.js";
import { openComparison } from "./compare.js";
import { el, imageUrl } from "./dom.js";
import { showError } from "./notices.js";
import { openViewer } from "./viewer.js";

// Browsers open about six connections per host: the chat's own stream, the chain panel and the
// page's other calls need theirs, so at most this many cards follow their chain's stream at once.
// A finished chain's stream replays its log and ends, so waiting cards get their turn quickly.
const LIVE_CARDS = 2;
let live = 0;
const waiting = [];

function slot() {
  if (live < LIVE_CARDS) {
    live += 1;
    return Promise.resolve();
  }
  return new Promise((resolve) => waiting.push(resolve));
}

function release() {
  const next = waiting.shift();
  if (next) next();
  else live = Math.max(0, live - 1);
}

const part = (name, tag, attributes = {}, ...children) => el(tag, { "data-part": name, ...attributes }, ...children);

function template(chainId) {
  return el("article", { class: "chain-card", "data-testid": "chat-chain-card", "data-chain-id": chainId,
    "aria-label": "Picture" },
  el("div", { class: "section-head" },
    part("chain-heading", "strong", { tabindex: "-1" }, "Picture in progress"),
    part("chain-status", "span", { class: "badge", role: "status", "data-testid": "card-status" })),
  part("chain-request", "p", { class: "muted small" }),
  el("p", { class: "muted small" }, "Chain ", part("chain-id", "code", { class: "card-chain-id" }), " ",
    part("chain-threshold", "span")),
  part("chain-queue", "p", { class: "muted small", hidden: true, "data-testid": "card-queue" }),
  part("chain-steps", "ol", { class: "chain-steps card-steps", "aria-label": "Steps" }),
  part("final", "figure", { class: "final card-final", hidden: true, "data-testid": "card-final" },
    part("final-link", "a", { target: "_blank", rel: "noopener" }, part("final-img", "img", { alt: "The picture" })),
    part("final-caption", "figcaption", { class: "visually-hidden" })),
  // The event log is kept (the view writes to it) but folded away: the card shows the steps.
  el("details", { class: "card-log" }, el("summary", { class: "small" }, "Event log"),
    part("chain-log", "ol", { class: "chain-log" })));
}

// `ready` is awaited before the stream opens (a chain the chat named before the gateway has it).
// `takeOf`: the chain this one regenerated, which it can be compared with.
export function chainCard(chainId, { ready = null, onRegenerated = () => {}, takeOf = null } = {}) {
  const root = template(chainId);
  const actions = el("div", { class: "row card-actions" });
  root.append(actions);
  let holding = false;
  const view = new ChainView(root, {
    onEnd: (id, type) => {
      if (holding) release();
      holding = false;
      showActions(actions, view, id, type, onRegenerated, takeOf);
      // The gallery, the edit tree and the pictures left follow (app.js listens).
      document.dispatchEvent(new CustomEvent("chain-ended", { detail: { id, type } }));
    },
    onLost: () => {
      if (holding) release();
      holding = false;
    },
  });
  view.open(chainId, {
    ready: async (id) => {
      if (ready) await ready(id);
      await slot();
      holding = true;
    },
  });
  showActions(actions, view, chainId, null, onRegenerated, takeOf);
  return root;
}

function showActions(actions, view, chainId, ended, onRegenerated, takeOf) {
  const buttons = [];
  if (!ended) {
    buttons.push(el("button", { type: "button", class: "secondary", "data-testid": "card-cancel",
      onclick: async (event) => {
        const button = event.currentTarget;  // the event forgets it once the handler awaits
        button.disabled = true;
        try {
          await post(`/chains/${encodeURIComponent(chainId)}/cancel`, {});
          // The chain may have ended while the request was answered: its end says so already.
          if (!view.ended) view.setStatus("cancelling…");
        } catch (error) {
          button.disabled = false;
          showError(error);
        }
      } }, "Cancel"));
  } else {
    // A new chain from the same request and input with a new seed: another take, not the same picture.
    buttons.push(el("button", { type: "button", class: "secondary", "data-testid": "card-regenerate",
      onclick: async (event) => {
        const button = event.currentTarget;
        button.disabled = true;
        try {
          const started = await post(`/chains/${encodeURIComponent(chainId)}/rerender?fresh_seed=true`, {});
          document.dispatchEvent(new Event("picture-requested"));
          onRegenerated(started.chain_id);
        } catch (error) {
          showError(error);
        } finally {
          button.disabled = false;
        }
      } }, "Regenerate"));
  }
  if (ended === "chain.completed" && takeOf) {
    buttons.push(el("button", { type: "button", class: "link-button", "data-testid": "card-compare",
      onclick: () => openComparison(chainId, takeOf).catch(showError) }, "Compare with the first take"));
  }
  buttons.push(el("button", { type: "button", class: "link-button", "data-testid": "card-open",
    onclick: () => openViewer(chainId) }, "Steps and details"));
  const sha = view.root.querySelector('[data-part="final"]')?.dataset.sha256;
  if (ended === "chain.completed" && sha) {
    buttons.push(el("a", { href: `${imageUrl(sha)}?download=1`, download: "", class: "link-button",
      "data-testid": "card-download" }, "Download"));
  }
  actions.replaceChildren(...buttons);
}
