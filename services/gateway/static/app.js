// The Likeness web page: characters, chat with streamed replies, picture requests followed live,
// the gallery and the edit tree. Plain ES modules, no build step; every call goes to the gateway.
// This module only wires the page's controls to the modules that handle them, then starts.

import { loadAccount, logIn, logOut, openLogin, signUp } from "./account.js";
import { markFollowed, resumeBatch } from "./batch.js";
import { cancelBranch, submitBranch } from "./branch.js";
import { importCard, showExport } from "./cards.js";
import { createCharacter, loadCharacters, loadStyles, uploadReference } from "./characters.js";
import { deleteConversation, sendChat, showOlderMessages } from "./chat.js";
import { chainFromLocation, followedChain, openChain } from "./follow.js";
import { loadGallery } from "./gallery.js";
import { copyNewKey, createKey, loadKeys } from "./keys.js";
import { clearError, dismissError, guarded } from "./notices.js";
import { loadPersona, savePersona } from "./persona.js";
import { askForPicture, clearOptions, loadCatalog, previewOptions, revealInvalid } from "./pictures.js";
import { $ } from "./state.js";
import { loadTree, refreshAfter } from "./treeview.js";
import { setUpVoice } from "./voice.js";

function start() {
  $("error-dismiss").addEventListener("click", dismissError);
  // Capture phase: before the form's own handler, which may show a new error.
  document.addEventListener("submit", clearError, true);
  $("create-form").addEventListener("submit", createCharacter);
  $("import-form").addEventListener("submit", importCard);
  document.addEventListener("character-selected", showExport);
  $("reference-form").addEventListener("submit", uploadReference);
  $("persona").addEventListener("toggle", guarded(loadPersona));
  $("persona-form").addEventListener("submit", guarded(savePersona));
  $("chat-form").addEventListener("submit", sendChat);
  $("chat-older").addEventListener("click", guarded(showOlderMessages));
  $("chat-delete").addEventListener("click", guarded(deleteConversation));
  setUpVoice();
  $("picture-form").addEventListener("submit", askForPicture);
  $("picture-form").addEventListener("invalid", revealInvalid, true);  // invalid does not bubble
  $("picture-form").addEventListener("input", previewOptions);
  $("picture-options").addEventListener("toggle", guarded(loadCatalog));
  $("options-clear").addEventListener("click", clearOptions);
  $("gallery-refresh").addEventListener("click", guarded(loadGallery));
  $("tree-refresh").addEventListener("click", guarded(loadTree));
  $("branch-form").addEventListener("submit", submitBranch);
  $("branch-cancel").addEventListener("click", cancelBranch);
  $("signup").addEventListener("click", guarded(signUp));
  $("login-open").addEventListener("click", openLogin);
  $("login-form").addEventListener("submit", guarded(logIn));
  $("logout").addEventListener("click", guarded(logOut));
  $("keys").addEventListener("toggle", guarded(loadKeys));
  $("key-create").addEventListener("click", guarded(createKey));
  $("new-key-copy").addEventListener("click", copyNewKey);
  // The pictures left change when a chain is asked for and when one ends (a refused one is not counted);
  // a chain ends in the chain panel or in a card of the chat, both announce it.
  document.addEventListener("picture-requested", () => guarded(loadAccount)());
  document.addEventListener("chain-ended", (event) => guarded(async () => {
    await refreshAfter(event.detail.id);
    await loadAccount();
  })());
  document.addEventListener("batch-ended", (event) => guarded(refreshAfter)(event.detail.chainIds.at(-1)));
  window.addEventListener("hashchange", () => {
    const id = chainFromLocation();
    if (id && id !== followedChain()) openChain(id);
    markFollowed();
  });

  const resume = chainFromLocation();
  if (resume) openChain(resume, { scroll: false });
  resumeBatch();
  guarded(loadAccount)();
  guarded(loadCharacters)();
  loadStyles();
  guarded(loadGallery)();
  guarded(loadTree)();
  document.body.dataset.ready = "1";
}

start();
