// Push-to-talk: hold Space (when the focus is not in a text field or on a control Space works) or hold
// the microphone button, speak, let go to send. No voice activity detection: the recording is exactly
// the time held. The transcript becomes the user's bubble and the reply comes as for typed text.
//
// MediaRecorder records in the browser's own format (WebM/Opus in Chromium); the page decodes that
// itself and sends 16 kHz mono WAV, which every backend of the gateway reads (its offline recognizer
// reads uncompressed audio only) at 32 KB a second. A browser that cannot decode its own recording
// sends it as it is.

import { ApiError, postStream } from "./api.js";
import { converse } from "./chat.js";
import { showError } from "./notices.js";
import { $, state } from "./state.js";

const RATE = 16000;
// A tap is not a message: shorter holds are not sent.
const MIN_HOLD_MS = 300;
// Where Space already means something (typing, pressing a button, opening a <details>).
const SPACE_TAKEN = "input, textarea, select, button, summary, a[href], [contenteditable], [role=button]";

let take = null; // the recording in progress: { started, released, stream, recorder, stopped, chunks }
let sending = false;

export function setUpVoice() {
  const button = $("voice-button");
  if (!navigator.mediaDevices?.getUserMedia || typeof MediaRecorder === "undefined") return;
  button.hidden = false;
  button.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    button.setPointerCapture?.(event.pointerId);
    press();
  });
  button.addEventListener("pointerup", release);
  button.addEventListener("pointercancel", release);
  document.addEventListener("keydown", (event) => {
    if (!spaceIsOurs(event)) return;
    event.preventDefault(); // no page scroll, no click of a focused mic button
    if (!event.repeat) press();
  });
  document.addEventListener("keyup", (event) => {
    if (event.code !== "Space" || !take) return;
    event.preventDefault();
    release();
  });
  // Leaving the window while holding the key would never deliver its keyup.
  window.addEventListener("blur", release);
}

function spaceIsOurs(event) {
  if (event.code !== "Space" || event.ctrlKey || event.altKey || event.metaKey) return false;
  if (!state.current || $("chat").hidden || document.querySelector("dialog[open]")) return false;
  const target = event.target;
  return target === $("voice-button") || !target.closest?.(SPACE_TAKEN);
}

function show(status, listening = false) {
  $("voice-status").textContent = status;
  $("voice-button").setAttribute("aria-pressed", String(listening));
  $("voice-button").dataset.state = listening ? "listening" : sending ? "sending" : "idle";
}

async function press() {
  if (take || sending || !state.current) return;
  const current = { started: performance.now(), released: false, chunks: [] };
  take = current;
  show("Listening… let go to send.", true);
  try {
    // The plain signal: the browser's processing for calls (gain control, noise suppression, echo
    // cancellation) turned clear speech into words the offline recognizer no longer knew (and clipped it).
    current.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (error) {
    take = null;
    show("");
    showError(new ApiError(0, "microphone_unavailable",
      `The microphone cannot be used (${error.name}): allow it for this page to talk.`));
    return;
  }
  current.recorder = new MediaRecorder(current.stream);
  current.recorder.addEventListener("dataavailable", (event) => {
    if (event.data.size) current.chunks.push(event.data);
  });
  current.stopped = new Promise((resolve) => current.recorder.addEventListener("stop", resolve, { once: true }));
  current.recorder.start();
  if (current.released) await finish(current); // let go while the microphone was opening
}

async function release() {
  const current = take;
  if (!current || current.released) return;
  current.released = true;
  if (current.recorder) await finish(current); // else press() finishes once the microphone is open
}

async function finish(current) {
  take = null;
  current.recorder.stop();
  await current.stopped;
  for (const track of current.stream.getTracks()) track.stop();
  if (performance.now() - current.started < MIN_HOLD_MS || !current.chunks.length) {
    show("Hold the key (or the button) while you speak, then let go.");
    return;
  }
  sending = true;
  show("Sending…");
  try {
    const recording = new Blob(current.chunks, { type: current.recorder.mimeType });
    const audio = await toWav(recording).catch(() => recording);
    await converse("", (body, onEvent) => postStream("/chat/voice", form(audio, body), onEvent));
  } finally {
    sending = false;
    show("");
  }
}

function form(audio, body) {
  const data = new FormData();
  const extension = audio.type === "audio/wav" ? "wav" : (audio.type.match(/^audio\/(\w+)/)?.[1] ?? "webm");
  data.append("audio", audio, `voice.${extension}`);
  for (const [name, value] of Object.entries(body)) data.append(name, value);
  return data;
}

// Decoding into a 16 kHz context resamples too; the first channel is the voice.
async function toWav(recording) {
  const decoded = await new OfflineAudioContext(1, 1, RATE).decodeAudioData(await recording.arrayBuffer());
  const samples = decoded.getChannelData(0);
  const bytes = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (at, value) => [...value].forEach((c, i) => bytes.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF");
  bytes.setUint32(4, 36 + samples.length * 2, true);
  text(8, "WAVEfmt ");
  bytes.setUint32(16, 16, true); // the fmt chunk's size
  bytes.setUint16(20, 1, true); // PCM
  bytes.setUint16(22, 1, true); // mono
  bytes.setUint32(24, RATE, true);
  bytes.setUint32(28, RATE * 2, true); // bytes a second
  bytes.setUint16(32, 2, true); // bytes a frame
  bytes.setUint16(34, 16, true); // bits a sample
  text(36, "data");
  bytes.setUint32(40, samples.length * 2, true);
  samples.forEach((value, i) => bytes.setInt16(44 + i * 2, Math.max(-1, Math.min(1, value)) * 0x7fff, true));
  return new Blob([bytes], { type: "audio/wav" });
}
