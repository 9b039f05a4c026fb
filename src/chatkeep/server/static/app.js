// chatkeep inspector: chat with a session and see exactly what the LLM gets. No build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { session: null, cursor: null, key: localStorage.getItem("chatkeep.key") || "" };

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  if (state.key) h["Authorization"] = "Bearer " + state.key;
  return h;
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...headers(!!options.body), ...(options.headers || {}) } });
  if (res.status === 401) { $("keybox").hidden = false; throw new Error("an API key is required"); }
  if (res.status === 204) return null;
  const body = await res.json();
  if (!res.ok) { const e = new Error(body.error ? body.error.message : res.statusText); e.status = res.status; throw e; }
  return body;
}

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = "status" + (error ? " error" : "");
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function textOf(m) {
  if (typeof m.content === "string") return m.content;
  if (Array.isArray(m.content)) return m.content.map((p) => p.text || "[" + p.type + "]").join("\n");
  return "";
}

// -- header ---------------------------------------------------------------------------------
async function loadMeta() {
  try {
    const info = await api("/v1/server");
    const meta = $("meta");
    meta.textContent = "";
    const badge = el("span", "badge" + (info.provider.offline ? " offline" : ""),
      info.provider.offline ? "offline responder (no LLM configured)" : "LLM: " + info.provider.model);
    badge.id = "provider";
    meta.append(badge, el("span", null, "store: " + info.store), el("span", null, "tenant: " + info.tenant),
      el("span", null, "lease: " + info.lease_policy), el("span", null, "v" + info.version));
    if (!$("token-limit").dataset.touched) $("token-limit").value = info.token_limit;
    $("system-prompt").textContent = info.system_prompt || "none";
  } catch (e) { setStatus(e.message, true); }
}

// -- sessions -------------------------------------------------------------------------------
async function loadSessions(append = false) {
  const params = new URLSearchParams({ limit: "50" });
  const prefix = $("search").value.trim();
  if (prefix) params.set("prefix", prefix);
  if (append && state.cursor) params.set("cursor", state.cursor);
  let page;
  try { page = await api("/v1/sessions?" + params); } catch (e) { setStatus(e.message, true); return; }
  const list = $("session-list");
  if (!append) list.textContent = "";
  for (const s of page.items) {
    const li = el("li", s.session_id === state.session ? "active" : "");
    li.dataset.sid = s.session_id;
    li.append(el("span", "sid", s.session_id), el("span", "count", s.message_count + " msg · " + s.total_tokens + " tok"));
    li.onclick = () => openSession(s.session_id);
    list.append(li);
  }
  if (!append && !page.items.length) list.append(el("li", "empty", prefix ? "no match" : "no sessions yet"));
  state.cursor = page.next_cursor;
  $("more-sessions").hidden = !page.next_cursor;
}

function enc(sid) { return encodeURIComponent(sid); }  // %2F keeps a "/" inside the id

async function openSession(sid) {
  state.session = sid;
  localStorage.setItem("chatkeep.session", sid);
  history.replaceState(null, "", "#session=" + encodeURIComponent(sid));
  $("session-title").textContent = sid;
  for (const li of $("session-list").children) li.classList.toggle("active", li.dataset.sid === sid);
  await refresh();
}

// -- transcript + window ----------------------------------------------------------------------
async function readAll(sid) {
  const items = [];
  let after = 0;
  for (;;) {
    const page = await api(`/v1/sessions/${enc(sid)}/messages?after_seq=${after}&limit=500`);
    items.push(...page.items);
    if (page.next_after_seq === null) return items;
    after = page.next_after_seq;
  }
}

async function refresh() {
  const sid = state.session;
  if (!sid) return;
  const limit = parseInt($("token-limit").value, 10) || 3000;
  let messages = [], win = null;
  try {
    [messages, win] = await Promise.all([readAll(sid), api(`/v1/sessions/${enc(sid)}/window?token_limit=${limit}`)]);
  } catch (e) {
    if (e.status !== 404) { setStatus(e.message, true); return; }
  }
  renderTranscript(messages, win);
  renderWindow(win, limit);
  const total = messages.reduce((n, m) => n + m.tokens, 0);
  $("session-stats").textContent = messages.length ? `${messages.length} messages · ${total} tokens stored` : "new session";
}

function renderTranscript(messages, win) {
  const list = $("transcript");
  list.textContent = "";
  const inWindow = new Set(win ? win.in_window : []);
  if (!messages.length) list.append(el("li", "empty", "Say something: every message is stored as you send it."));
  for (const m of messages) {
    const inside = inWindow.has(m.seq);
    const li = el("li", `msg ${m.role} ${inside ? "in" : "out"}`);
    li.dataset.seq = m.seq;
    const head = el("div", "head");
    head.append(el("span", null, "#" + m.seq), el("span", null, m.role), el("span", null, m.tokens + " tok"),
      el("span", "tag", inside ? "in window" : "not sent"));
    li.append(head, el("div", "body", textOf(m)));
    list.append(li);
  }
  list.scrollTop = list.scrollHeight;
}

function renderWindow(win, limit) {
  const bar = $("budget-bar"), legend = $("budget-legend"), facts = $("window-facts"), wl = $("window-list");
  bar.textContent = legend.textContent = facts.textContent = wl.textContent = "";
  if (!win) { $("summary").textContent = "none"; wl.append(el("li", "empty", "nothing stored yet")); return; }
  const sys = (win.system_prompt ? win.system_prompt.tokens : 0) + win.system.reduce((n, m) => n + m.tokens, 0);
  const sum = win.summary ? win.summary.tokens : 0;
  const msgs = win.messages.reduce((n, m) => n + m.tokens, 0);
  const scale = Math.max(win.budget, win.tokens);
  for (const [cls, n, label] of [["sys", sys, "system"], ["sum", sum, "summary"], ["msgs", msgs, "messages"]]) {
    const seg = el("span", cls);
    seg.style.width = (100 * n / scale) + "%";
    seg.title = `${label}: ${n} tokens`;
    bar.append(seg);
    const item = el("span");
    item.append(el("i", cls), document.createTextNode(`${label} ${n}`));
    item.querySelector("i").style.background = `var(--${cls === "msgs" ? "in" : cls})`;
    legend.append(item);
  }
  bar.classList.toggle("over", win.over_budget);
  const pct = Math.round(100 * win.tokens / win.budget);
  for (const [k, v] of [["used", `${win.tokens} / ${win.budget} tokens (${pct}%)`],
    ["in window", `${win.in_window.length} messages`], ["left out", `${win.dropped} messages`],
    ["last seq", String(win.last_seq)], ["over budget", win.over_budget ? "yes (latest user message kept)" : "no"]]) {
    facts.append(el("dt", null, k), el("dd", null, v));
  }
  facts.id = "window-facts";
  $("budget-bar").dataset.tokens = win.tokens;
  $("summary").textContent = win.summary ? `${win.summary.text}\n(covers #1–#${win.summary.covers_through_seq}, ${win.summary.tokens} tok)` : "none";
  if (win.system_prompt) {
    const li = el("li");
    li.append(el("span", "seq", "–"), el("span", null, "system"), el("span", "txt", win.system_prompt.text),
      el("span", "tok", String(win.system_prompt.tokens)));
    wl.append(li);
  }
  if (win.summary) {
    const li = el("li");
    li.append(el("span", "seq", "–"), el("span", null, "summary"), el("span", "txt", win.summary.text),
      el("span", "tok", String(win.summary.tokens)));
    wl.append(li);
  }
  const rows = [...win.system, ...win.messages];
  for (const m of rows) {
    const li = el("li");
    li.append(el("span", "seq", "#" + m.seq), el("span", null, m.role), el("span", "txt", textOf(m)), el("span", "tok", String(m.tokens)));
    wl.append(li);
  }
  if (!rows.length) wl.append(el("li", "empty", "no stored messages in the window"));
}

// -- chat (server-sent events) ----------------------------------------------------------------
// One key per message typed: a retry after a lost connection or a 503 reuses it, so the server
// replays the stored turn instead of storing it (and calling the LLM) twice.
function newIdempotencyKey() {
  if (window.crypto && crypto.randomUUID) return "web-" + crypto.randomUUID();
  return "web-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

async function postTurn(body) {
  const key = newIdempotencyKey();
  for (let attempt = 1; ; attempt++) {
    let res = null;
    try {
      res = await fetch("/v1/chat", { method: "POST", headers: { ...headers(true), "Idempotency-Key": key },
        body: JSON.stringify(body) });
    } catch (e) {
      if (attempt >= 3) throw e;  // the connection failed: the turn may or may not be stored
    }
    if (res && (res.status !== 503 || attempt >= 3)) return res;
    const wait = res ? Math.min(5, parseInt(res.headers.get("Retry-After") || "1", 10) || 1) : attempt;
    setStatus(`connection problem; retrying in ${wait} s…`);
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
  }
}

async function send(text) {
  const sid = state.session;
  const limit = parseInt($("token-limit").value, 10) || undefined;
  $("send").disabled = true;
  setStatus("thinking…");
  const list = $("transcript");
  if (list.querySelector(".empty")) list.textContent = "";
  const mine = el("li", "msg user pending");
  mine.append(el("div", "head", "sending"), el("div", "body", text));
  const reply = el("li", "msg assistant pending");
  const replyBody = el("div", "body", "");
  reply.append(el("div", "head", "assistant · streaming"), replyBody);
  list.append(mine, reply);
  list.scrollTop = list.scrollHeight;
  try {
    const res = await postTurn({ session_id: sid, message: text, token_limit: limit, stream: true });
    if (!res.ok) { const b = await res.json(); throw new Error(b.error ? b.error.message : res.statusText); }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const chunk = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const ev = /^event: (.*)$/m.exec(chunk), data = /^data: (.*)$/m.exec(chunk);
        if (!ev || !data) continue;
        const payload = JSON.parse(data[1]);
        if (ev[1] === "delta") { replyBody.textContent += payload.text; list.scrollTop = list.scrollHeight; }
        if (ev[1] === "error") throw new Error(payload.error.message);
        if (ev[1] === "done") setStatus(`stored as #${payload.user.seq} and #${payload.assistant.seq}`);
      }
    }
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    $("send").disabled = false;
    await refresh();
    await loadSessions();
  }
}

// -- wiring -----------------------------------------------------------------------------------
function newSessionId() { return "session-" + new Date().toISOString().slice(0, 19).replace(/[-:T]/g, ""); }

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("message").value.trim();
  if (!text) return;
  if (!state.session) openSession(newSessionId());
  $("message").value = "";
  send(text);
});
$("message").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
});
$("new-session").onclick = () => {
  const sid = prompt("Session id", newSessionId());
  if (sid && sid.trim()) openSession(sid.trim());
};
let searchTimer = null;
$("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(() => loadSessions(), 200); });
$("more-sessions").onclick = () => loadSessions(true);
$("token-limit").addEventListener("change", () => { $("token-limit").dataset.touched = "1"; refresh(); });
$("savekey").onclick = () => {
  state.key = $("apikey").value.trim();
  localStorage.setItem("chatkeep.key", state.key);
  $("keybox").hidden = true;
  start();
};

async function start() {
  await loadMeta();
  await loadSessions();
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("session");
  const sid = fromHash || localStorage.getItem("chatkeep.session");
  if (sid) await openSession(sid);
}
start();
