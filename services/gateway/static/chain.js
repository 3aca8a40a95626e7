// The live view of one chain: its plan, every step and attempt, scores against the threshold,
// previews, queue position, the event log and the final picture, fed by GET /chains/{id}/events.
//
// This module holds the panel's own state (which chain, running or ended, the status and queue
// lines); the stream is chain_stream.js, the step and attempt rows chain_steps.js, and what each
// persisted event shows (rows, log, final picture) chain_events.js.

import { clear } from "./dom.js";
import { appendLog, applyEvent } from "./chain_events.js";
import { human, StepList } from "./chain_steps.js";
import { ChainStream } from "./chain_stream.js";

const TERMINAL = new Set(["chain.completed", "chain.failed", "chain.refused", "chain.cancelled"]);
const STATUS_TEXT = {
  "chain.completed": "completed", "chain.failed": "failed", "chain.refused": "refused", "chain.cancelled": "cancelled",
};

export class ChainView {
  constructor(root, { onEnd = () => {}, onStart = () => {}, onLost = () => {} } = {}) {
    this.root = root;
    this.onEnd = onEnd;
    this.onStart = onStart;
    this.onLost = onLost;
    // The page's chain panel names its parts by id; a chain card in the chat by data-part (ids are unique).
    this.$ = (id) => root.querySelector(`#${id}, [data-part="${id}"]`);
    this.stream = null;
    this.id = null;
  }

  // Show chain `id` from its first event on and follow it live until it ends. With `ready`, the
  // stream is opened only once `ready(id)` settles: for a chain named before the gateway has it in
  // its log, whose stream would be refused (404) until then.
  open(id, { ready = null } = {}) {
    this.close();
    this.id = id;
    this.characterId = null;
    this.threshold = null;
    this.steps = new StepList(this.$("chain-steps"));
    this.ended = false;
    this.root.hidden = false;
    this.root.dataset.chainId = id;
    this.root.dataset.state = "running";
    this.$("chain-id").textContent = id;
    this.$("chain-heading").textContent = "Picture in progress";
    this.$("chain-request").textContent = "";
    this.$("chain-threshold").textContent = "";
    this.setStatus(ready ? "starting…" : "connecting…");
    this.setQueue(null);
    clear(this.$("chain-steps"));
    clear(this.$("chain-log"));
    this.$("final").hidden = true;
    this.stream = new ChainStream(id, this.handlers());
    if (ready) this.connectWhen(this.stream, ready);
    else this.stream.connect();
    this.onStart(id);
  }

  async connectWhen(stream, ready) {
    try {
      await ready(stream.id);
    } catch {
      // Connect all the same: the stream, or its refusal, tells what became of the chain.
    }
    // Another chain may have been opened meanwhile, which stopped this stream.
    if (stream !== this.stream || this.ended || stream.stopped || stream.open) return;
    this.setStatus("connecting…");
    stream.connect();
  }

  close() {
    this.stream?.stop();
  }

  // Put away: the panel is hidden and follows nothing (another character was picked).
  hide() {
    this.close();
    this.id = null;
    this.characterId = null;
    this.root.hidden = true;
  }

  // Each stream gets its own callbacks; a stopped stream calls none, so the events of a chain
  // that is no longer shown never reach the panel.
  handlers() {
    return {
      persisted: (type, data, seq) => {
        applyEvent(this, type, data, seq);
        if (TERMINAL.has(type)) this.end(type);
      },
      progress: (p) => this.progress(p),
      preview: (p) => this.preview(p),
      queue: (q) => {
        if (q && !this.ended) this.setQueue(q.position > 0 ? q.position : null);
      },
      waiting: (w) => {
        if (w && !this.ended) this.setWaiting(w.waited_s, w.limit_s);
      },
      status: (text) => this.setStatus(text),
      lost: (lastSeq) => {
        this.log("stream", lastSeq
          ? "The live stream of this chain was lost; reload the page to pick it up again."
          : "This chain could not be opened: it may belong to another session, or no longer exist.");
        this.onLost(this.id, lastSeq === 0);
      },
    };
  }

  end(type) {
    this.ended = true;
    this.close();
    this.setQueue(null);
    this.root.dataset.state = STATUS_TEXT[type];
    this.setStatus(STATUS_TEXT[type]);
    this.$("chain-heading").textContent = type === "chain.completed" ? "Picture ready" : "Picture not made";
    if (type !== "chain.completed") this.steps.stopUnfinished();
    this.onEnd(this.id, type);
  }

  progress(p) {
    if (!p || this.ended || p.step == null) return;
    const a = this.steps.attempt(p.step, p.attempt ?? 1);
    if (typeof p.max === "number" && p.max > 0) {
      a.progress.max = p.max;
      a.progress.value = Math.min(p.value ?? 0, p.max);
      a.progress.textContent = `${p.value ?? 0} of ${p.max}`;
    }
    const queued = typeof p.queue_position === "number" && p.queue_position > 0 ? p.queue_position : null;
    a.queue.textContent = queued ? `queue position ${queued}` : "";
    this.setQueue(queued);
  }

  // A preview stands in for the picture only while its attempt renders: one that arrives late
  // must not cover the rendered or accepted picture.
  preview(p) {
    if (!p || this.ended || p.step == null || !p.data_url) return;
    const a = this.steps.attempt(p.step, p.attempt ?? 1);
    if (a.li.dataset.state === "rendering") {
      this.steps.showImage(a, p.data_url, `${human(p.step)}, attempt ${p.attempt} preview`, true);
    }
  }

  setStatus(text) {
    this.$("chain-status").textContent = text;
    this.$("chain-status").dataset.status = text;
  }

  setQueue(position) {
    const node = this.$("chain-queue");
    node.hidden = position == null;
    node.textContent = position == null ? "" : `Waiting for a free renderer: position ${position} in the queue.`;
  }

  // No render backend answers (one restarting): say so rather than show a stalled progress bar.
  setWaiting(waited, limit) {
    const node = this.$("chain-queue");
    node.hidden = false;
    node.textContent = `Waiting for a renderer to come back (${Math.round(waited)} s of at most ${Math.round(limit)} s).`;
  }

  log(type, text, seq = null) {
    appendLog(this.$("chain-log"), type, text, seq);
  }
}
