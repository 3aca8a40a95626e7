// The connection to one chain's GET /chains/{id}/events: opening it, reconnecting it, and handing
// each event, parsed, to the view.
//
// Persisted events carry `id: <stream version>`; the stream remembers the last one it handed on and
// skips anything at or below it, so a replay after a reconnect (the browser's own, which sends
// Last-Event-ID, or ours, which makes the server replay the whole log) never shows an event twice.

export const PERSISTED = [
  "chain.requested", "chain.planned", "chain.step_requested", "chain.step_rendered", "chain.step_scored",
  "chain.step_accepted", "chain.step_retried", "chain.step_failed", "chain.completed", "chain.failed",
  "chain.refused", "chain.cancelled", "chain.reanchored",
];
const LIVE = ["progress", "preview", "queue", "waiting"];
const MAX_REOPENS = 3;

export function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// `on` holds the view's callbacks: persisted(type, data, seq), one per live event type (its parsed
// data), status(text), and lost(lastSeq) once the stream is given up for good.
export class ChainStream {
  constructor(id, on) {
    this.id = id;
    this.on = on;
    this.source = null;
    this.lastSeq = 0;
    this.reopens = 0;
    this.stopped = false;
  }

  get open() {
    return this.source !== null;
  }

  connect() {
    if (this.stopped) return;
    const source = new EventSource(`/chains/${encodeURIComponent(this.id)}/events`);
    this.source = source;
    const persisted = (event) => this.persisted(event);
    for (const type of PERSISTED) source.addEventListener(type, persisted);
    source.addEventListener("message", persisted);
    for (const type of LIVE) {
      source.addEventListener(type, (event) => {
        if (!this.stopped) this.on[type](parse(event.data));
      });
    }
    source.addEventListener("open", () => {
      if (!this.stopped) this.on.status("live");
    });
    source.addEventListener("error", () => this.lost(source));
  }

  // For good: no event is handed on after this, and no reopen that is pending happens.
  stop() {
    this.stopped = true;
    this.drop();
  }

  drop() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  // The stream dropped. While the browser reconnects on its own (sending Last-Event-ID) we wait;
  // when it has given up (an HTTP error, a proxy) we open it again a few times, then stop.
  lost(source) {
    if (this.stopped || source !== this.source) return;
    if (source.readyState === EventSource.CONNECTING) {
      this.on.status("reconnecting…");
      return;
    }
    this.drop();
    if (this.reopens >= MAX_REOPENS) {
      this.stopped = true;
      this.on.status("disconnected");
      this.on.lost(this.lastSeq);
      return;
    }
    this.reopens += 1;
    this.on.status("reconnecting…");
    setTimeout(() => {
      if (!this.stopped && this.source === null) this.connect();
    }, 500 * this.reopens);
  }

  persisted(event) {
    if (this.stopped) return;
    const envelope = parse(event.data);
    if (!envelope || typeof envelope !== "object") return;
    const type = envelope.type || event.type;
    const seq = Number(event.lastEventId || envelope.seq || 0);
    if (seq && seq <= this.lastSeq) return;
    if (seq) this.lastSeq = seq;
    // An event got through, so whatever made the stream drop before has passed.
    this.reopens = 0;
    const data = envelope.data && typeof envelope.data === "object" ? envelope.data : envelope;
    this.on.persisted(type, data, seq);
  }
}
