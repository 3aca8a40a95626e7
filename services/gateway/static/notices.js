// What went wrong, told to the user: a refusal by the image limit in its own banner, anything else
// as an error that can be dismissed.

import { ApiError } from "./api.js";
import { $ } from "./state.js";

// The banner is shown before its text is set: screen readers announce an alert's text when it
// changes, not when a hidden alert appears.
function announce(id, textId, text) {
  $(id).hidden = false;
  $(textId).textContent = text;
}

export function showError(error) {
  if (error instanceof ApiError && error.isLimit) {
    announce("limit-notice", "limit-notice", error.detail || "You have reached your image limit.");
    return;
  }
  announce("error-notice", "error-text", error instanceof Error ? error.message : String(error));
}

// A new action makes the last one's error old news: it goes when the user sends a form again (a new
// failure shows its own). Focus stays where the user is working.
export function clearError() {
  $("error-notice").hidden = true;
}

// Hiding the banner would leave the keyboard focus on nothing: it goes back to the main content.
export function dismissError() {
  $("error-notice").hidden = true;
  $("main").focus();
}

export function guarded(fn) {
  return async (...args) => {
    try {
      return await fn(...args);
    } catch (error) {
      showError(error);
      return undefined;
    }
  };
}
