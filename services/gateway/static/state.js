// What the modules of the page share: the characters, the selected one, the edit tree, and what
// this browser remembers across reloads.

export const $ = (id) => document.getElementById(id);

export const STORE = {
  character: "likeness.character",
  chain: "likeness.chain",
};

export const state = {
  characters: [],
  current: null, // the selected character
  trees: [], // the edit tree, normalised
};

export function storage(key, value) {
  try {
    if (value === undefined) return localStorage.getItem(key);
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    // Private mode or storage disabled: the page works, it only forgets across reloads.
  }
  return null;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
