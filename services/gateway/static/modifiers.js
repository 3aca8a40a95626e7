// The picture controls ("More options") as the flags of the request text: pure functions, no DOM.
//
// The planner reads `--style anime -w 768 -h 1024 --seed 7 --count 2 --no "hat, glasses"` out of a
// request (services/planner/planning/modifiers.py); the controls only write that same syntax, so a
// request made with them reads like one typed by hand and the server checks both alike.

export const SIZE = { min: 64, max: 2048, step: 8 };
export const MAX_COUNT = 4;
const MAX_SEED = 2n ** 64n - 1n;
const NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
// A flag starts a whitespace-separated token, as the planner's parser has it ("t-shirt" is no flag).
const FLAG = /(?<!\S)(--[A-Za-z][A-Za-z-]*|-[A-Za-z])(?:=\S*)?(?=\s|$)/g;
const ALIASES = { "-m": "--model", "-w": "--width", "-h": "--height", "-n": "--no", "-c": "--count", "-s": "--seed" };

export class ModifierError extends Error {}

const blank = (value) => value === undefined || value === null || String(value).trim() === "";

// The text syntax has no escapes: a value is wrapped in the quote it does not hold. One holding both
// kinds has its double quotes written as single ones (the meaning of a negative prompt is unchanged).
export function quote(value) {
  const text = String(value).trim().replace(/\s+/g, " ");
  if (!text.includes('"')) return `"${text}"`;
  if (!text.includes("'")) return `'${text}'`;
  return `"${text.replaceAll('"', "'")}"`;
}

function name(flag, value) {
  const text = String(value).trim().toLowerCase();
  if (!NAME.test(text)) throw new ModifierError(`${flag} takes a name of letters, digits, '-', '_' or '.'`);
  return text;
}

function whole(label, value, min, max) {
  const text = String(value).trim();
  if (!/^\d+$/.test(text)) throw new ModifierError(`${label} must be a whole number`);
  const number = BigInt(text);
  if (number < BigInt(min) || number > BigInt(max)) throw new ModifierError(`${label} must be between ${min} and ${max}`);
  return number.toString();
}

function size(label, value) {
  const text = whole(label, value, SIZE.min, SIZE.max);
  if (Number(text) % SIZE.step) throw new ModifierError(`${label} must be a multiple of ${SIZE.step}`);
  return text;
}

// The flags for the controls the user set, in a fixed order; a control left empty adds nothing.
// `options`: { style, model, width, height, seed, count, negative }, each a string or number.
export function flagsFor(options = {}) {
  const { style, model, width, height, seed, count, negative } = options;
  const flags = [];
  if (!blank(style)) flags.push("--style", name("--style", style));
  if (!blank(model)) flags.push("--model", name("--model", model));
  if (!blank(width)) flags.push("-w", size("Width", width));
  if (!blank(height)) flags.push("-h", size("Height", height));
  if (!blank(seed)) flags.push("--seed", whole("Seed", seed, 0, MAX_SEED));
  if (!blank(count)) flags.push("--count", whole("Count", count, 1, MAX_COUNT));
  if (!blank(negative)) flags.push("--no", quote(negative));
  return flags.join(" ");
}

// The flags written in a request text, by their long names ("-w" is "--width").
export function flagsIn(text) {
  const found = new Set();
  for (const match of String(text).matchAll(FLAG)) {
    const raw = match[1].toLowerCase();
    found.add(ALIASES[raw] ?? raw);
  }
  return found;
}

const LONG = { style: "--style", model: "--model", width: "--width", height: "--height", seed: "--seed", count: "--count" };

// The request text with the controls' flags after it. A flag both typed and set with a control would be
// "given twice" to the planner, which refuses the whole request: said here, before anything is sent.
// (--no may repeat: a typed one and the control's add up.)
export function withModifiers(text, options = {}) {
  const typed = flagsIn(text);
  const twice = Object.entries(LONG).filter(([key, flag]) => !blank(options[key]) && typed.has(flag)).map(([, f]) => f);
  if (twice.length) {
    const verb = twice.length > 1 ? "are" : "is";
    throw new ModifierError(`${twice.join(" and ")} ${verb} both in the request and in More options: keep one`);
  }
  const flags = flagsFor(options);
  const request = String(text).trim();
  return [request, flags].filter(Boolean).join(" ");
}

// How many pictures a request asks for (its --count/-c), 1 when it does not say.
export function countOf(text) {
  const match = /(?<!\S)(?:--count|-c)(?:=|\s+)["']?(\d+)/i.exec(String(text));
  return match ? Number(match[1]) : 1;
}
