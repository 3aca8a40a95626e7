// The live view of one chain: its plan, every step and attempt, scores against the threshold,
// previews, queue position, the event log and the final picture, fed by GET /chains/{id}/events.
//
// Persisted events carry `id: <stream version>`; the view remembers the last one it applied and
// skips anything at or below it, so a replay after a reconnect (the browser's own, which sends
// Last-Event-ID, or ours, which makes the server replay the whole log) never shows an event twice.

import { el, clear, imageUrl } from "./dom.js";

const PERSISTED = [
  "chain.requested", "chain.planned", "chain.step_requested", "chain.step_rendered", "chain.step_scored",
  "chain.step_accepted", "chain.step_retried", "chain.step_failed", "chain.completed", "chain.failed",
  "chain.refused", "chain.cancelled",
];
const TERMINAL = new Set(["chain.completed", "chain.failed", "chain.refused", "chain.cancelled"]);
const STATUS_TEXT = {
  "chain.completed": "completed", "chain.failed": "failed", "chain.refused": "refused", "chain.cancelled": "cancelled",
};
const MAX_REOPENS = 3;

const fmt = (n) => (typeof n === "number" ? (Number.isInteger(n) ? String(n) : n.toFixed(1)) : "?");
const human = (step) => `Step ${Number(step) + 1}`;

export class ChainView {
  constructor(root, { onEnd = () => {}, onStart = () => {}, onLost = () => {} } = {}) {
    this.root = root;
    this.onEnd = onEnd;
    this.onStart = onStart;
    this.onLost = onLost;
    this.$ = (id) => root.querySelector(`#${id}`);
    this.source = null;
    this.id = null;
  }

  // Show chain `id` from its first event on and follow it live until it ends. With `ready`, the
  // stream is opened only once `ready(id)` settles: for a chain named before the gateway has it in
  // its log, whose stream would be refused (404) until then.
  open(id, { ready = null } = {}) {
    this.close();
    this.generation = (this.generation ?? 0) + 1;
    this.id = id;
    this.lastSeq = 0;
    this.threshold = null;
    this.steps = new Map();
    this.ended = false;
    this.reopens = 0;
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
    if (ready) this.connectWhen(ready);
    else this.connect();
    this.onStart(id);
  }

  async connectWhen(ready) {
    const generation = this.generation;
    try {
      await ready(this.id);
    } catch {
      // Connect all the same: the stream, or its refusal, tells what became of the chain.
    }
    if (generation !== this.generation || this.ended || this.source) return;
    this.setStatus("connecting…");
    this.connect();
  }

  close() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  connect() {
    const source = new EventSource(`/chains/${encodeURIComponent(this.id)}/events`);
    this.source = source;
    const persisted = (event) => this.persisted(event);
    for (const type of PERSISTED) source.addEventListener(type, persisted);
    source.addEventListener("message", persisted);
    source.addEventListener("progress", (event) => this.progress(parse(event.data)));
    source.addEventListener("preview", (event) => this.preview(parse(event.data)));
    source.addEventListener("queue", (event) => {
      const q = parse(event.data);
      if (q && !this.ended) this.setQueue(q.position > 0 ? q.position : null);
    });
    source.addEventListener("waiting", (event) => {
      const w = parse(event.data);
      if (w && !this.ended) this.setWaiting(w.waited_s, w.limit_s);
    });
    source.addEventListener("open", () => {
      if (!this.ended) this.setStatus("live");
    });
    source.addEventListener("error", () => this.lost(source));
  }

  // The stream dropped. While the browser reconnects on its own (sending Last-Event-ID) we wait;
  // when it has given up (an HTTP error, a proxy) we open it again a few times, then stop.
  lost(source) {
    if (this.ended || source !== this.source) return;
    if (source.readyState === EventSource.CONNECTING) {
      this.setStatus("reconnecting…");
      return;
    }
    this.close();
    if (this.reopens >= MAX_REOPENS) {
      this.setStatus("disconnected");
      this.log("stream", this.lastSeq
        ? "The live stream of this chain was lost; reload the page to pick it up again."
        : "This chain could not be opened: it may belong to another session, or no longer exist.");
      this.onLost(this.id, this.lastSeq === 0);
      return;
    }
    this.reopens += 1;
    this.setStatus("reconnecting…");
    setTimeout(() => {
      if (!this.ended && this.source === null && this.root.dataset.chainId === this.id) this.connect();
    }, 500 * this.reopens);
  }

  persisted(event) {
    const envelope = parse(event.data);
    if (!envelope || typeof envelope !== "object") return;
    const type = envelope.type || event.type;
    const seq = Number(event.lastEventId || envelope.seq || 0);
    if (seq && seq <= this.lastSeq) return;
    if (seq) this.lastSeq = seq;
    this.reopens = 0;
    const data = envelope.data && typeof envelope.data === "object" ? envelope.data : envelope;
    this.apply(type, data, seq);
    if (TERMINAL.has(type)) this.end(type);
  }

  apply(type, d, seq) {
    switch (type) {
      case "chain.requested":
        this.$("chain-request").textContent = `“${d.request_text ?? ""}”` +
          (d.parent_chain_id != null ? ` — a branch from ${human(d.branch_from_step ?? 0).toLowerCase()}` : "");
        this.log(type, `Requested: “${d.request_text ?? ""}”`, seq);
        break;
      case "chain.planned": {
        this.threshold = d.threshold ?? this.threshold;
        this.$("chain-threshold").textContent = this.threshold != null ? `· face threshold ${fmt(this.threshold)}` : "";
        for (const [i, s] of (d.steps || []).entries()) this.step(s.index ?? i, s);
        const note = d.planner_note ? ` (${d.planner_note})` : "";
        this.log(type, `Planned ${(d.steps || []).length} step(s) by ${d.planner ?? "the planner"}` +
          `, face threshold ${fmt(this.threshold)}${note}`, seq);
        break;
      }
      case "chain.step_requested": {
        const a = this.attempt(d.step, d.attempt);
        a.seed.textContent = `seed ${d.seed}`;
        this.setStepState(d.step, "rendering", `rendering attempt ${d.attempt}`);
        this.setAttemptState(a, "rendering");
        this.log(type, `${human(d.step)} (${this.kind(d.step)}), attempt ${d.attempt}: rendering with seed ${d.seed}`, seq);
        break;
      }
      case "chain.step_rendered": {
        const a = this.attempt(d.step, d.attempt);
        a.progress.value = a.progress.max;
        if (d.image?.sha256) this.showImage(a, imageUrl(d.image.sha256, true), `${human(d.step)}, attempt ${d.attempt}`);
        this.setStepState(d.step, "scoring", `checking the face of attempt ${d.attempt}`);
        this.setAttemptState(a, "scoring");
        this.log(type, `${human(d.step)}, attempt ${d.attempt}: rendered` +
          (d.engine ? ` (${d.engine}${d.backend ? ` on ${d.backend}` : ""})` : ""), seq);
        break;
      }
      case "chain.step_scored": {
        const a = this.attempt(d.step, d.attempt);
        const threshold = d.threshold ?? this.threshold;
        const pass = typeof d.score === "number" && typeof threshold === "number" && d.score >= threshold;
        a.score.textContent = `face ${fmt(d.score)} ${pass ? "≥" : "<"} ${fmt(threshold)}`;
        a.score.className = `score ${pass ? "pass" : "fail"}`;
        a.score.dataset.score = String(d.score);
        a.score.title = pass ? "at or above the threshold" : "below the threshold";
        this.log(type, `${human(d.step)}, attempt ${d.attempt}: face score ${fmt(d.score)}` +
          ` (threshold ${fmt(threshold)}${d.faces_found != null ? `, ${d.faces_found} face(s) found` : ""})`, seq);
        break;
      }
      case "chain.step_accepted": {
        const a = this.attempt(d.step, d.attempt);
        const best = d.decision === "best_attempt";
        this.setAttemptState(a, "accepted", best ? "kept as the best attempt" : "accepted");
        if (d.image?.sha256) this.showImage(a, imageUrl(d.image.sha256, true), `${human(d.step)}, accepted`);
        this.setStepState(d.step, "accepted", best ? "kept best attempt" : `accepted (attempt ${d.attempt})`);
        this.log(type, `${human(d.step)}: attempt ${d.attempt} accepted with face score ${fmt(d.score)}` +
          (best ? " (no attempt reached the threshold; the best one is kept)" : ""), seq);
        break;
      }
      case "chain.step_retried": {
        const previous = (d.next_attempt ?? 2) - 1;
        const a = this.attempt(d.step, previous);
        this.setAttemptState(a, "retried", `retried: ${d.reason ?? "face drifted"}`);
        this.setStepState(d.step, "retrying", `retrying as attempt ${d.next_attempt ?? previous + 1}`);
        this.log(type, `${human(d.step)}: retrying as attempt ${d.next_attempt ?? previous + 1} with seed ${d.new_seed}` +
          ` — ${d.reason ?? "the face drifted"}`, seq);
        break;
      }
      case "chain.step_failed": {
        const a = this.attempt(d.step, d.attempt);
        this.setAttemptState(a, "failed", `${d.stage ?? "step"} failed: ${d.reason ?? ""}`);
        this.log(type, `${human(d.step)}, attempt ${d.attempt}: ${d.stage ?? "step"} failed — ${d.reason ?? ""}`, seq);
        break;
      }
      case "chain.completed": {
        const sha = d.final_image?.sha256;
        if (sha) {
          const img = this.$("final-img");
          img.src = imageUrl(sha);
          this.$("final-link").href = imageUrl(sha);
          this.$("final-caption").textContent = "The finished picture (opens full size in a new tab).";
          this.$("final").hidden = false;
          this.$("final").dataset.sha256 = sha;
        }
        this.log(type, "Completed: the picture is ready.", seq);
        break;
      }
      case "chain.failed":
        if (d.step != null) this.setStepState(d.step, "failed", "failed");
        this.log(type, `Failed${d.step != null ? ` at ${human(d.step).toLowerCase()}` : ""}: ${d.reason ?? ""}` +
          attemptsText(d.attempts), seq);
        break;
      case "chain.refused":
        this.log(type, `Refused: ${d.reason ?? ""}`, seq);
        break;
      case "chain.cancelled":
        this.log(type, `Cancelled${d.reason ? `: ${d.reason}` : ""}.`, seq);
        break;
      default:
        this.log(type, type, seq);
    }
  }

  end(type) {
    this.ended = true;
    this.close();
    this.setQueue(null);
    this.root.dataset.state = STATUS_TEXT[type];
    this.setStatus(STATUS_TEXT[type]);
    this.$("chain-heading").textContent = type === "chain.completed" ? "Picture ready" : "Picture not made";
    for (const [index, step] of this.steps) {
      if (!["accepted", "failed"].includes(step.li.dataset.state) && type !== "chain.completed") {
        this.setStepState(index, "stopped", "not run");
      }
    }
    this.onEnd(this.id, type);
  }

  progress(p) {
    if (!p || this.ended || p.step == null) return;
    const a = this.attempt(p.step, p.attempt ?? 1);
    if (typeof p.max === "number" && p.max > 0) {
      a.progress.max = p.max;
      a.progress.value = Math.min(p.value ?? 0, p.max);
      a.progress.textContent = `${p.value ?? 0} of ${p.max}`;
    }
    const queued = typeof p.queue_position === "number" && p.queue_position > 0 ? p.queue_position : null;
    a.queue.textContent = queued ? `queue position ${queued}` : "";
    this.setQueue(queued);
  }

  preview(p) {
    if (!p || this.ended || p.step == null || !p.data_url) return;
    const a = this.attempt(p.step, p.attempt ?? 1);
    if (a.li.dataset.state === "rendering") this.showImage(a, p.data_url, `${human(p.step)}, attempt ${p.attempt} preview`, true);
  }

  // -- the DOM of steps and attempts ----------------------------------------------------------

  step(index, planned = null) {
    index = Number(index);
    let step = this.steps.get(index);
    if (!step) {
      const state = el("span", { class: "step-state", "data-testid": `step-${index}-state` }, "waiting");
      const title = el("span", { class: "step-title" }, human(index));
      const prompt = el("p", { class: "step-prompt" });
      const attempts = el("ol", { class: "attempts", "aria-label": `${human(index)} attempts` });
      const li = el("li", { class: "step", "data-testid": `step-${index}`, "data-step": String(index), "data-state": "waiting" },
        el("div", { class: "step-head" }, title, state), prompt, attempts);
      step = { li, title, state, prompt, attempts, attemptRows: new Map(), kind: null };
      this.steps.set(index, step);
      const list = this.$("chain-steps");
      const after = [...list.children].find((other) => Number(other.dataset.step) > index);
      list.insertBefore(li, after ?? null);
    }
    if (planned) {
      step.kind = planned.kind ?? step.kind;
      step.title.textContent = `${human(index)} · ${step.kind ?? "edit"}`;
      step.prompt.textContent = planned.prompt ?? "";
      step.li.dataset.kind = step.kind ?? "";
    }
    return step;
  }

  kind(index) {
    return this.steps.get(Number(index))?.kind ?? "edit";
  }

  attempt(stepIndex, number) {
    const step = this.step(stepIndex);
    number = Number(number);
    let row = step.attemptRows.get(number);
    if (!row) {
      const id = `${stepIndex}-${number}`;
      const label = `${human(stepIndex)}, attempt ${number}`;
      row = {
        seed: el("span", { class: "seed" }),
        progress: el("progress", { max: "1", value: "0", "aria-label": `${label} render progress`, "data-testid": `progress-${id}` }),
        queue: el("span", { class: "queue", "data-testid": `queue-${id}` }),
        score: el("span", { class: "score", "data-testid": `score-${id}` }),
        decision: el("span", { class: "decision", "data-testid": `decision-${id}` }),
        image: el("img", { class: "attempt-image", alt: "", hidden: "", "data-testid": `image-${id}`, width: "96", height: "96" }),
      };
      row.li = el("li", { class: "attempt", "data-testid": `attempt-${id}`, "data-attempt": String(number), "data-state": "waiting" },
        row.image,
        el("div", { class: "attempt-body" },
          el("div", { class: "attempt-line" }, el("strong", {}, `Attempt ${number}`), row.seed, row.queue),
          row.progress,
          el("div", { class: "attempt-line" }, row.score, row.decision)));
      step.attemptRows.set(number, row);
      const after = [...step.attempts.children].find((other) => Number(other.dataset.attempt) > number);
      step.attempts.insertBefore(row.li, after ?? null);
    }
    return row;
  }

  showImage(row, src, alt, isPreview = false) {
    row.image.src = src;
    row.image.alt = alt;
    row.image.hidden = false;
    row.image.classList.toggle("is-preview", isPreview);
    if (isPreview) row.image.dataset.preview = "1";
    else delete row.image.dataset.preview;
  }

  setAttemptState(row, state, text = null) {
    row.li.dataset.state = state;
    if (text !== null) row.decision.textContent = text;
  }

  setStepState(index, state, text) {
    const step = this.step(index);
    step.li.dataset.state = state;
    step.state.textContent = text;
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
    const item = el("li", { "data-type": type }, text);
    if (seq) item.dataset.seq = String(seq);
    this.$("chain-log").append(item);
  }
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function attemptsText(attempts) {
  if (!Array.isArray(attempts) || !attempts.length) return "";
  return ` (attempts: ${attempts.map((a) => `#${a.attempt} ${a.score != null ? fmt(a.score) : a.reason ?? "no score"}`).join(", ")})`;
}
