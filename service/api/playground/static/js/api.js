// The service's public HTTP API, as the page calls it: JSON, multipart forms, server-sent events.
// Every call carries the API key (if one was typed) as Authorization: Bearer; every error
// answer (application/problem+json; OpenAI's {"error": {"message"}} under /v1/) becomes an ApiError
// whose message is the problem's detail.
// Someone waits on every call the page makes, so each asks for X-Priority: high, ahead of bulk
// work; a key not allowed it is answered 403 priority-not-allowed, and the page then asks at the
// default priority for as long as that key is in use.

const KEY = "vdvae-api-key";

export class ApiError extends Error {
  constructor(problem, status) {
    super(problem.detail || problem.error?.message || problem.title || `HTTP ${status}`);
    this.problem = problem;
    this.status = status;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

const highRefused = new Set(); // the keys ("" for none) whose high priority was refused

function headers(extra = {}) {
  const key = apiKey();
  const all = highRefused.has(key) ? { ...extra } : { ...extra, "X-Priority": "high" };
  if (key) all.Authorization = `Bearer ${key}`;
  return all;
}

async function fetchOnce(path, init) {
  try {
    return await fetch(path, { ...init, headers: headers(init.headers) });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError({ detail: `could not reach the service (${e.message})` }, 0);
  }
}

async function priorityRefused(response) {
  if (response.status !== 403) return false;
  const problem = await response.clone().json().catch(() => ({}));
  return String(problem.type || "").endsWith("/priority-not-allowed");
}

async function send(path, init) {
  let response = await fetchOnce(path, init);
  if (await priorityRefused(response)) {
    highRefused.add(apiKey());
    response = await fetchOnce(path, init); // the same body again: the page sends no streams
  }
  if (!response.ok) {
    let problem;
    try {
      problem = await response.json();
    } catch {
      problem = { detail: `HTTP ${response.status} ${response.statusText}` };
    }
    throw new ApiError(problem, response.status);
  }
  return response;
}

export async function getJSON(path) {
  return (await send(path, { headers: { Accept: "application/json" } })).json();
}

export async function postJSON(path, body, signal) {
  const init = {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
    signal,
  };
  return (await send(path, init)).json();
}

// fields: {name: value}; Blob values are sent as files, the rest as text (JSON where not a string).
export async function postForm(path, fields, signal) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || value === null) continue;
    if (value instanceof Blob) form.append(name, value, `${name}.png`);
    else form.append(name, typeof value === "string" ? value : JSON.stringify(value));
  }
  const init = { method: "POST", headers: { Accept: "application/json" }, body: form, signal };
  return (await send(path, init)).json();
}

// POST a JSON body and yield the answer's server-sent events as {event, data} in order;
// an `error` event is thrown as an ApiError.
export async function* postEvents(path, body, signal) {
  const init = {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
    signal,
  };
  const response = await send(path, init);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = parseEvent(block);
      if (!event) continue;
      if (event.event === "error") throw new ApiError(event.data, event.data.status || 500);
      yield event;
    }
  }
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  return data.length ? { event, data: JSON.parse(data.join("\n")) } : null;
}
