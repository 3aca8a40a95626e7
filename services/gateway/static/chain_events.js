// What each persisted chain event does to the view: the rows of its step and attempt, a line in the
// event log, and for chain.completed the final picture.

import { el, imageUrl } from "./dom.js";
import { fmt, human } from "./chain_steps.js";

export function appendLog(list, type, text, seq = null) {
  const item = el("li", { "data-type": type }, text);
  if (seq) item.dataset.seq = String(seq);
  list.append(item);
}

// `view` gives `$` (an element of the panel by id), `steps` (its StepList) and `threshold`, which
// chain.planned sets and later events fall back on when they carry none.
export function applyEvent(view, type, d, seq) {
  const { $, steps } = view;
  const log = (text) => appendLog($("chain-log"), type, text, seq);
  switch (type) {
    case "chain.requested":
      view.characterId = d.character_id ?? null;
      view.root.dataset.characterId = view.characterId ?? "";
      $("chain-request").textContent = `“${d.request_text ?? ""}”` +
        (d.parent_chain_id != null ? ` — a branch from ${human(d.branch_from_step ?? 0).toLowerCase()}` : "");
      log(`Requested: “${d.request_text ?? ""}”`);
      break;
    case "chain.planned": {
      view.threshold = d.threshold ?? view.threshold;
      // "learned": from this character's accepted pictures; "character": set for it by hand.
      const source = d.threshold_source === "learned" || d.threshold_source === "character"
        ? ` (${d.threshold_source === "learned" ? "learned for this face" : "this character's own"})` : "";
      $("chain-threshold").textContent = view.threshold != null ? `· face threshold ${fmt(view.threshold)}${source}` : "";
      for (const [i, s] of (d.steps || []).entries()) steps.step(s.index ?? i, s);
      const note = d.planner_note ? ` (${d.planner_note})` : "";
      log(`Planned ${(d.steps || []).length} step(s) by ${d.planner ?? "the planner"}` +
        `, face threshold ${fmt(view.threshold)}${source}${note}`);
      break;
    }
    case "chain.step_requested": {
      const a = steps.attempt(d.step, d.attempt);
      a.seed.textContent = `seed ${d.seed}`;
      steps.setStepState(d.step, "rendering", `rendering attempt ${d.attempt}`);
      steps.setAttemptState(a, "rendering");
      log(`${human(d.step)} (${steps.kind(d.step)}), attempt ${d.attempt}: rendering with seed ${d.seed}`);
      break;
    }
    case "chain.step_rendered": {
      const a = steps.attempt(d.step, d.attempt);
      a.progress.value = a.progress.max;
      if (d.image?.sha256) steps.showImage(a, imageUrl(d.image.sha256, true), `${human(d.step)}, attempt ${d.attempt}`);
      steps.setStepState(d.step, "scoring", `checking the face of attempt ${d.attempt}`);
      steps.setAttemptState(a, "scoring");
      log(`${human(d.step)}, attempt ${d.attempt}: rendered` +
        (d.engine ? ` (${d.engine}${d.backend ? ` on ${d.backend}` : ""})` : ""));
      break;
    }
    case "chain.step_scored": {
      const a = steps.attempt(d.step, d.attempt);
      const threshold = d.threshold ?? view.threshold;
      const pass = typeof d.score === "number" && typeof threshold === "number" && d.score >= threshold;
      a.score.textContent = `face ${fmt(d.score)} ${pass ? "≥" : "<"} ${fmt(threshold)}`;
      a.score.className = `score ${pass ? "pass" : "fail"}`;
      a.score.dataset.score = String(d.score);
      a.score.title = pass ? "at or above the threshold" : "below the threshold";
      log(`${human(d.step)}, attempt ${d.attempt}: face score ${fmt(d.score)}` +
        ` (threshold ${fmt(threshold)}${d.faces_found != null ? `, ${d.faces_found} face(s) found` : ""})`);
      break;
    }
    case "chain.step_accepted": {
      const a = steps.attempt(d.step, d.attempt);
      const best = d.decision === "best_attempt";
      steps.setAttemptState(a, "accepted", best ? "kept as the best attempt" : "accepted");
      if (d.image?.sha256) steps.showImage(a, imageUrl(d.image.sha256, true), `${human(d.step)}, accepted`);
      steps.setStepState(d.step, "accepted", best ? "kept best attempt" : `accepted (attempt ${d.attempt})`);
      log(`${human(d.step)}: attempt ${d.attempt} accepted with face score ${fmt(d.score)}` +
        (best ? " (no attempt reached the threshold; the best one is kept)" : ""));
      break;
    }
    case "chain.step_retried": {
      const previous = (d.next_attempt ?? 2) - 1;
      const a = steps.attempt(d.step, previous);
      steps.setAttemptState(a, "retried", `retried: ${d.reason ?? "face drifted"}`);
      steps.setStepState(d.step, "retrying", `retrying as attempt ${d.next_attempt ?? previous + 1}`);
      const rung = d.rung ? ` (${d.rung.replaceAll("_", " ")})` : "";
      log(`${human(d.step)}: retrying as attempt ${d.next_attempt ?? previous + 1}${rung} with seed ${d.new_seed}` +
        ` — ${d.reason ?? "the face drifted"}`);
      break;
    }
    case "chain.reanchored":
      log(`${human(d.step)}: re-anchored on the reference photo — ${d.reason ?? "the chain drifted past its budget"}`);
      break;
    case "chain.step_failed": {
      const a = steps.attempt(d.step, d.attempt);
      steps.setAttemptState(a, "failed", `${d.stage ?? "step"} failed: ${d.reason ?? ""}`);
      log(`${human(d.step)}, attempt ${d.attempt}: ${d.stage ?? "step"} failed — ${d.reason ?? ""}`);
      break;
    }
    case "chain.completed":
      if (d.final_image?.sha256) showFinal($, d.final_image.sha256);
      log("Completed: the picture is ready.");
      break;
    case "chain.failed":
      if (d.step != null) steps.setStepState(d.step, "failed", "failed");
      log(`Failed${d.step != null ? ` at ${human(d.step).toLowerCase()}` : ""}: ${d.reason ?? ""}` +
        attemptsText(d.attempts));
      break;
    case "chain.refused":
      log(`Refused: ${d.reason ?? ""}`);
      break;
    case "chain.cancelled":
      log(`Cancelled${d.reason ? `: ${d.reason}` : ""}.`);
      break;
    default:
      log(type);
  }
}

function showFinal($, sha) {
  $("final-img").src = imageUrl(sha);
  $("final-link").href = imageUrl(sha);
  $("final-caption").textContent = "The finished picture (opens full size in a new tab).";
  $("final").hidden = false;
  $("final").dataset.sha256 = sha;
}

function attemptsText(attempts) {
  if (!Array.isArray(attempts) || !attempts.length) return "";
  return ` (attempts: ${attempts.map((a) => `#${a.attempt} ${a.score != null ? fmt(a.score) : a.reason ?? "no score"}`).join(", ")})`;
}
