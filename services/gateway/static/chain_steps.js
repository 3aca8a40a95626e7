// The rows of a chain's plan: one per step, and under it one per attempt with its seed, render
// progress, queue position, face score, decision and picture.

import { el } from "./dom.js";

export const fmt = (n) => (typeof n === "number" ? (Number.isInteger(n) ? String(n) : n.toFixed(1)) : "?");
export const human = (step) => `Step ${Number(step) + 1}`;

export class StepList {
  constructor(list) {
    this.list = list;
    this.steps = new Map();
  }

  // Rows are made on first mention, by whichever event names them first: a reconnect, or a live
  // event that overtakes the plan, may show a step or an attempt before its planned text.
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
      const after = [...this.list.children].find((other) => Number(other.dataset.step) > index);
      this.list.insertBefore(li, after ?? null);
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

  // A chain that ended without its picture: the steps it never finished will not run now.
  stopUnfinished() {
    for (const [index, step] of this.steps) {
      if (!["accepted", "failed"].includes(step.li.dataset.state)) this.setStepState(index, "stopped", "not run");
    }
  }
}
