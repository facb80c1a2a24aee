// Sessionflow's page: watch and drive sessions through the gateway. No build step.
"use strict";

const $ = (id) => document.getElementById(id);
const store = {
  get key() { return localStorage.getItem("sessionflow.apiKey") || ""; },
  set key(v) { localStorage.setItem("sessionflow.apiKey", v); },
  get agent() { return localStorage.getItem("sessionflow.agent") || ""; },
  set agent(v) { localStorage.setItem("sessionflow.agent", v); },
  get session() { return localStorage.getItem("sessionflow.session") || ""; },
  set session(v) { localStorage.setItem("sessionflow.session", v); },
};
const live = {
  sessionId: null, lastEventId: null, abort: null, message: null, opening: null,
  continuing: null,  // the answer whose rest, after its approvals, is being asked for
  parts: new Map(),  // the streaming message's text and reasoning parts, by chunk id
  texts: new Map(),  // the markdown source of its text parts, by chunk id
};

function query() {
  const agent = $("agent").value.trim();
  return agent ? `?agent=${encodeURIComponent(agent)}` : "";
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${store.key}`, "content-type": "application/json", ...extra };
}

async function api(method, path, body) {
  const response = await fetch(path, { method, headers: headers(), body: body && JSON.stringify(body) });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error((data && data.error && data.error.message) || response.statusText);
    error.code = data && data.error && data.error.code;
    throw error;
  }
  return data;
}

function showError(error) { $("error").textContent = error ? String(error.message || error) : ""; }

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// -- rendering ---------------------------------------------------------------------

function messageElement(id, role) {
  let node = document.querySelector(`.message[data-id="${CSS.escape(id)}"]`);
  if (!node) {
    node = el("div", `message ${role}`);
    node.dataset.id = id;
    $("messages").appendChild(node);
  }
  return node;
}

function toolElement(container, callId, name, input) {
  let node = container.querySelector(`.tool[data-call="${CSS.escape(callId)}"]`);
  if (!node) {
    node = el("details", "tool");
    node.dataset.call = callId;
    node.open = true;
    const summary = el("summary");
    summary.append(el("span", "name", name), " ", el("span", "state", "input-available"));
    node.append(summary, el("pre", "input"), el("pre", "output"));
    container.appendChild(node);
  }
  if (input !== undefined) node.querySelector(".input").textContent = JSON.stringify(input, null, 2);
  return node;
}

function setToolState(node, state) { node.querySelector(".state").textContent = state; }

function showOutput(node, output) {
  const text = output && typeof output === "object" && "stdout" in output
    ? `${output.stdout || ""}${output.stderr || ""}${output.exit_code ? `\n(exit code ${output.exit_code})` : ""}`
    : typeof output === "string" ? output : JSON.stringify(output, null, 2);
  node.querySelector(".output").textContent = text;
}

function approvalButtons(node, approvalId) {
  if (node.querySelector(".approval")) return;
  const bar = el("div", "approval");
  const approve = el("button", "approve", "Approve");
  const deny = el("button", "deny", "Deny");
  // As the AI SDK answers one: the assistant message back through /api/chat, its tool
  // part `approval-responded`; the rest of the answer streams into the same message.
  const answer = async (approved) => {
    approve.disabled = deny.disabled = true;
    const messageId = node.closest(".message").dataset.id;
    const part = {
      type: `tool-${node.querySelector(".name").textContent}`, toolCallId: node.dataset.call,
      state: "approval-responded",
      approval: { id: approvalId, approved, reason: approved ? undefined : "denied in the web page" },
    };
    const message = { id: messageId, role: "assistant", parts: [part] };
    bar.remove();
    live.continuing = messageId;
    await postChat({ id: live.sessionId, trigger: "submit-message", messageId, messages: [message] });
  };
  approve.onclick = () => answer(true);
  deny.onclick = () => answer(false);
  bar.append("Needs approval", approve, deny);
  node.appendChild(bar);
}

// An assistant message's status (streaming, complete, interrupted, failed) is in its metadata.
function statusOf(message) { return (message.metadata && message.metadata.status) || "complete"; }

// `message` is an AI SDK UIMessage, as history answers and as the page sends.
function renderMessage(message) {
  const node = messageElement(message.id, message.role);
  node.replaceChildren();
  node.classList.toggle("interrupted", statusOf(message) === "interrupted");
  node.classList.toggle("failed", statusOf(message) === "failed");
  for (const part of message.parts) {
    if (part.type === "text") node.appendChild(textElement(message.role, part.text));
    else if (part.type === "reasoning") node.appendChild(el("div", "reasoning", part.text));
    else if (part.type === "file") node.appendChild(fileElement(part));
    else if (part.type.startsWith("tool-")) {
      const tool = toolElement(node, part.toolCallId, part.type.slice(5), part.input);
      setToolState(tool, part.state);
      if (part.state === "output-available") showOutput(tool, part.output);
      else if (part.errorText) tool.querySelector(".output").textContent = part.errorText;
      if (part.state === "approval-requested" && part.approval) approvalButtons(tool, part.approval.id);
    }
  }
  if (message.metadata && message.metadata.error) node.appendChild(el("div", "text", message.metadata.error));
}

// Assistant text is markdown (markdown.js: built as DOM nodes, never parsed as HTML);
// what a user typed is shown as typed.
function textElement(role, text) {
  if (role !== "assistant") return el("div", "text", text);
  const node = el("div", "text md");
  renderMarkdown(node, text);
  return node;
}

// Text parts whose source changed since they were drawn: drawn once per batch of
// deltas (what one network read brought), not once per delta.
const stale = new Set();

function redraw(id) {
  if (!stale.size) {
    queueMicrotask(() => {
      for (const key of stale) {
        const part = live.parts.get(key);
        if (part) renderMarkdown(part, live.texts.get(key) || "");
      }
      stale.clear();
    });
  }
  stale.add(id);
}

function fileElement(part) {
  const name = part.filename || part.mediaType;
  if (part.mediaType.startsWith("image/")) {
    const image = el("img", "file");
    image.src = part.url;
    image.alt = name;
    return image;
  }
  return el("div", "file", `📎 ${name}`);
}

// -- the stream ----------------------------------------------------------------------

function apply(chunk) {
  const node = live.message;
  switch (chunk.type) {
    case "start":
      live.message = messageElement(chunk.messageId, "assistant");
      // The rest of an answer after its approvals adds to it; any other starts it anew.
      if (live.continuing !== chunk.messageId) {
        live.message.replaceChildren();
        live.parts.clear();
        live.texts.clear();
      }
      live.continuing = null;
      return;
    case "text-start":
    case "reasoning-start": {
      const part = el("div", chunk.type === "text-start" ? "text md" : "reasoning", "");
      part.dataset.part = chunk.id;
      live.parts.set(chunk.id, part);
      if (chunk.type === "text-start") live.texts.set(chunk.id, "");
      node && node.appendChild(part);
      return;
    }
    case "text-delta": {
      if (!live.texts.has(chunk.id)) return;
      live.texts.set(chunk.id, live.texts.get(chunk.id) + chunk.delta);
      redraw(chunk.id);
      return;
    }
    case "reasoning-delta": {
      const part = live.parts.get(chunk.id);
      if (part) part.textContent += chunk.delta;
      return;
    }
    case "tool-input-start":
      node && toolElement(node, chunk.toolCallId, chunk.toolName);
      return;
    case "tool-input-available":
      node && toolElement(node, chunk.toolCallId, chunk.toolName, chunk.input);
      return;
    case "tool-approval-request": {
      const tool = node && node.querySelector(`.tool[data-call="${CSS.escape(chunk.toolCallId)}"]`);
      if (tool) { setToolState(tool, "approval-requested"); approvalButtons(tool, chunk.approvalId); }
      return;
    }
    case "tool-output-available":
    case "tool-output-error":
    case "tool-output-denied": {
      const tool = node && node.querySelector(`.tool[data-call="${CSS.escape(chunk.toolCallId)}"]`);
      if (!tool) return;
      const bar = tool.querySelector(".approval");
      if (bar) bar.remove();
      if (chunk.type === "tool-output-available") {
        showOutput(tool, chunk.output);
        setToolState(tool, chunk.preliminary ? "running" : "output-available");
      } else if (chunk.type === "tool-output-error") {
        tool.querySelector(".output").textContent = chunk.errorText;
        setToolState(tool, "output-error");
      } else setToolState(tool, "output-denied");
      return;
    }
    case "data-status":
      $("status").textContent = chunk.data.status;
      return;
    case "data-retry":
      // A retried step: drop what its failed attempt had written.
      for (const [id, part] of live.parts) {
        const match = /-s(\d+)a(\d+)p\d+$/.exec(id);
        if (match && Number(match[1]) === chunk.data.step && Number(match[2]) < chunk.data.attempt) {
          part.remove();
          live.parts.delete(id);
          live.texts.delete(id);
        }
      }
      return;
    case "abort":
      node && node.classList.add("interrupted");
      return;
    case "error":
      if (node) { node.classList.add("failed"); node.appendChild(el("div", "text", chunk.errorText)); }
      return;
    default:
      return;
  }
}

async function consume(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return false;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let id = null;
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("id:")) id = line.slice(3).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      if (!data.length) continue;  // a keep-alive comment
      const payload = data.join("\n");
      if (payload === "[DONE]") return true;
      if (id) live.lastEventId = id;
      apply(JSON.parse(payload));
    }
  }
}

// Reads a stream to its end; if the connection drops, resumes after the last event id.
async function follow(firstRequest) {
  live.abort && live.abort.abort();
  const abort = new AbortController();
  live.abort = abort;
  let request = firstRequest;
  for (let attempt = 0; attempt < 20 && !abort.signal.aborted; attempt++) {
    try {
      const response = await request(abort.signal);
      if (!response || response.status === 204) return;
      if (!response.ok) throw new Error(`stream answered ${response.status}`);
      if (await consume(response)) break;
    } catch (error) {
      if (abort.signal.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const sessionId = live.sessionId;
    const last = live.lastEventId;
    request = (signal) => fetch(`/v1/sessions/${encodeURIComponent(sessionId)}/stream${query()}`,
      { headers: headers(last ? { "Last-Event-ID": last } : {}), signal });
  }
  await refresh();
}

// -- actions -------------------------------------------------------------------------

async function refresh() {
  if (!live.sessionId) return;
  try {
    const usage = await api("GET", `/v1/sessions/${encodeURIComponent(live.sessionId)}/usage${query()}`);
    $("usage").textContent = `${usage.total.inputTokens} in · ${usage.total.outputTokens} out tokens`;
  } catch (error) { /* a new session has no usage yet */ }
  await listSessions();
}

async function listSessions() {
  try {
    const data = await api("GET", "/v1/sessions");
    const list = $("sessions");
    list.replaceChildren();
    for (const row of data.sessions) {
      if (row.sessionId === live.sessionId) $("status").textContent = row.status;
      const item = el("li");
      const open = el("a", "open", row.sessionId);
      open.onclick = () => { $("agent").value = row.agent; store.agent = row.agent; openSession(row.sessionId); };
      const ui = el("a", null, "Temporal UI");
      ui.href = row.uiUrl;
      ui.target = "_blank";
      item.append(open, el("span", "status", row.status), el("small", null, `${row.tokens} tokens`), ui);
      list.appendChild(item);
    }
  } catch (error) { showError(error); }
}

function openSession(id) {
  // Sends wait for this, so a late resume cannot cut off the answer to a new message.
  live.opening = load(id);
  return live.opening;
}

async function load(id) {
  showError(null);
  live.abort && live.abort.abort();
  live.sessionId = id;
  live.lastEventId = null;
  live.message = null;
  store.session = id;
  $("session-id").value = id;
  $("session-title").textContent = `Session ${id}`;
  $("status").textContent = "";
  $("usage").textContent = "";
  $("messages").replaceChildren();
  let history = [];
  try {
    history = (await api("GET", `/v1/sessions/${encodeURIComponent(id)}/history${query()}`)).messages;
  } catch (error) {
    if (error.code !== "session_not_found") showError(error);
  }
  // An answer still streaming is rebuilt from its start by the resume stream.
  const streaming = history.filter((m) => statusOf(m) === "streaming").map((m) => m.id);
  history.filter((m) => statusOf(m) !== "streaming").forEach(renderMessage);
  await follow((signal) => fetch(`/api/chat/${encodeURIComponent(id)}/stream${query()}`,
    { headers: headers(), signal }));
  if (streaming.length && !live.message) {  // it finished in between: show it from history
    const fresh = await api("GET", `/v1/sessions/${encodeURIComponent(id)}/history${query()}`);
    fresh.messages.filter((m) => streaming.includes(m.id)).forEach(renderMessage);
  }
  await refresh();
}

async function send(text) {
  if (live.opening) await live.opening.catch(() => {});
  if (!live.sessionId) await openSession(randomId());
  const message = { id: `u-${randomId()}`, role: "user", parts: [{ type: "text", text }] };
  renderMessage(message);
  await postChat({ id: live.sessionId, trigger: "submit-message", messages: [message] });
}

// POST /api/chat (a new message, or answered approvals) and follow the answer.
async function postChat(body) {
  await follow((signal) => fetch(`/api/chat${query()}`,
    { method: "POST", headers: headers(), body: JSON.stringify(body), signal }).then(async (response) => {
      if (!response.ok) {
        const data = await response.json().catch(() => null);
        throw new Error((data && data.error && data.error.message) || response.statusText);
      }
      return response;
    }).catch((error) => { showError(error); return null; }));
}

function randomId() { return Math.random().toString(36).slice(2, 10); }

// -- wiring --------------------------------------------------------------------------

$("api-key").value = store.key;
$("agent").value = store.agent;
$("api-key").addEventListener("change", (e) => { store.key = e.target.value.trim(); listSessions(); });
$("agent").addEventListener("change", (e) => { store.agent = e.target.value.trim(); });
$("open-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const id = $("session-id").value.trim();
  if (id) openSession(id);
});
$("new-session").addEventListener("click", () => openSession(randomId()));
$("refresh").addEventListener("click", listSessions);
$("send-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("message").value.trim();
  if (!text) return;
  $("message").value = "";
  send(text).catch(showError);
});
$("interrupt").addEventListener("click", () => {
  if (!live.sessionId) return;
  api("POST", `/v1/sessions/${encodeURIComponent(live.sessionId)}/interrupt${query()}`).catch(showError);
});
if (store.key) listSessions();
if (store.session) openSession(store.session);
