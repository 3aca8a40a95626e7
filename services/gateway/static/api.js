// Calls to the gateway: JSON in and out, errors as ApiError, and a reader for a POSTed event stream.

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }

  // 401/403 mean the anonymous session may not make more pictures: its detail is shown as is.
  get isLimit() {
    return this.status === 401 || this.status === 403;
  }
}

async function errorOf(response) {
  let code = null;
  let detail = null;
  try {
    const body = await response.json();
    code = body.error ?? null;
    detail = typeof body.detail === "string" ? body.detail : body.detail ? JSON.stringify(body.detail) : null;
  } catch {
    // Not JSON (a proxy page, an empty body): the status line is all there is.
  }
  return new ApiError(response.status, code, detail || `${response.status} ${response.statusText}`.trim());
}

export async function request(method, path, { json, form, signal } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" }, signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export const get = (path, options) => request("GET", path, options);
export const post = (path, json, options) => request("POST", path, { ...options, json });
export const put = (path, json, options) => request("PUT", path, { ...options, json });

// POST a JSON body (or a FormData, sent as multipart) and call onEvent(type, data) for each
// server-sent event of the response.
export async function postStream(path, body, onEvent, { signal } = {}) {
  const form = body instanceof FormData;
  const headers = { Accept: "text/event-stream" };
  if (!form) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers,
    body: form ? body : JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser(onEvent);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.push(value);
  }
  parser.push("\n\n");
}

// The text/event-stream format (blank-line separated blocks of `field: value` lines).
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
  }

  push(text) {
    this.buffer += text.replace(/\r\n?/g, "\n");
    let end;
    while ((end = this.buffer.indexOf("\n\n")) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      this.dispatch(block);
    }
  }

  dispatch(block) {
    let type = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    const text = data.join("\n");
    let parsed = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // A plain-text data line is passed on as text.
    }
    this.onEvent(type, parsed);
  }
}
