// The hub console: channels, follows with a live log, resume, publish, and a chart from /metrics.
// Plain JavaScript served from the binary: no build step, nothing fetched from elsewhere.
//
// Streams open only when the user follows something (or a follow list is restored from this tab's
// sessionStorage): an open EventSource is a request that never ends, so a page that opened one on load
// would never settle for `chromium --headless --virtual-time-budget=... --screenshot`. The channel table
// and the chart poll short requests instead.
"use strict";

const TOKEN_KEY = "sse-console-token";
const FOLLOWS_KEY = "sse-console-follows";
const POLL_MS = 1000;
const MAX_ROWS = 500;
const MAX_SAMPLES = 60;
// Series read from /metrics, first match wins: today's names and their Prometheus-convention variants.
const PUBLISHED_SERIES = ["sse_events_published_total", "events_published_total", "sse_events_published", "events_published"];
const SUBSCRIBER_SERIES = ["sse_subscribers", "sse_connections", "sse_connections_open", "subscribers", "connections"];

const $ = (id) => document.getElementById(id);
const state = {
  channels: [],
  follows: new Map(), // target -> { target, from, pattern: RegExp|null, streams: Map<channel, stream> }
  // EventSource only dispatches named events to listeners registered for that name.
  types: new Set(["message", "sse-reset", "sse-expired", "tick"]),
  samples: [],
  logCount: 0,
};
// For debugging from the browser's devtools (and for the tests): the console's live state.
window.consoleState = state;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.dataset[k.slice(5).replace(/-(.)/g, (_, c) => c.toUpperCase())] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// ---- channels -------------------------------------------------------------------------------------

async function pollChannels() {
  const status = $("hub-status");
  try {
    const resp = await fetch("/channels", { cache: "no-store" });
    if (!resp.ok) throw new Error("GET /channels: " + resp.status);
    state.channels = await resp.json();
    status.textContent = "hub up";
    status.className = "ok";
    renderChannels();
    refreshPatterns();
  } catch (e) {
    status.textContent = "hub unreachable (" + e.message + ")";
    status.className = "err";
  }
  setTimeout(pollChannels, POLL_MS);
}

function renderChannels() {
  const body = $("channels").tBodies[0];
  const rows = state.channels
    .slice()
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((c) => {
      const follow = el("button", { type: "button", class: "link", title: "follow " + c.name }, "follow");
      follow.addEventListener("click", () => addFollow(c.name, ""));
      return el("tr", { "data-channel": c.name },
        el("td", { class: "channel" }, c.name),
        el("td", { class: "subscribers num" }, String(c.subscribers)),
        el("td", { class: "last-id" }, el("code", {}, c.last_id == null ? "–" : String(c.last_id))),
        el("td", {}, follow));
    });
  if (rows.length === 0) rows.push(el("tr", { class: "empty" }, el("td", { colspan: "4" }, "no channels yet: publish to one below")));
  body.replaceChildren(...rows);
}

// ---- follows and the live log ----------------------------------------------------------------------

// `*` matches any run of characters; anything else matches itself.
function patternOf(target) {
  if (!target.includes("*")) return null;
  const escaped = target.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*");
  return new RegExp("^" + escaped + "$");
}

function addFollow(target, from) {
  target = target.trim();
  if (!target) return;
  let follow = state.follows.get(target);
  if (follow && from) removeFollow(target);
  follow = state.follows.get(target);
  if (!follow) {
    follow = { target, from: from || "", pattern: patternOf(target), streams: new Map() };
    state.follows.set(target, follow);
  }
  if (follow.pattern) refreshPatterns();
  else if (!follow.streams.has(target)) openStream(follow, target, follow.from);
  saveFollows();
  renderFollows();
}

function removeFollow(target) {
  const follow = state.follows.get(target);
  if (!follow) return;
  for (const s of follow.streams.values()) closeStream(s);
  state.follows.delete(target);
  saveFollows();
  renderFollows();
}

// A pattern follows every listed channel that matches it; new channels join on the next poll.
function refreshPatterns() {
  let changed = false;
  for (const follow of state.follows.values()) {
    if (!follow.pattern) continue;
    for (const c of state.channels) {
      if (follow.pattern.test(c.name) && !follow.streams.has(c.name)) {
        // The resume id applies to the channels matched when following; later ones start live.
        openStream(follow, c.name, follow.matched ? "" : follow.from);
        changed = true;
      }
    }
    follow.matched = true;
  }
  if (changed) renderFollows();
}

function openStream(follow, channel, from) {
  const stream = { channel, source: null, types: new Set(), replayUntil: null, state: "connecting", closed: false };
  follow.streams.set(channel, stream);
  if (!from) {
    connect(stream, "");
    return;
  }
  // Rows up to the channel's last id right now come from the replay window: ask the hub for it first.
  fetch("/channels", { cache: "no-store" })
    .then((resp) => (resp.ok ? resp.json() : []))
    .catch(() => [])
    .then((list) => {
      const c = Array.isArray(list) ? list.find((x) => x.name === channel) : null;
      const last = c && c.last_id != null ? String(c.last_id) : null;
      stream.replayUntil = last !== from ? last : null;
      if (!stream.closed) connect(stream, from);
    });
}

function connect(stream, from) {
  let url = "/events/" + encodeURIComponent(stream.channel);
  // EventSource cannot set headers: the first connect resumes with the hub's `lastEventId` query
  // parameter, reconnects send the browser's own Last-Event-ID header.
  if (from) url += "?lastEventId=" + encodeURIComponent(from);
  const source = new EventSource(url);
  stream.source = source;
  for (const type of state.types) listen(stream, type);
  source.onopen = () => setStreamState(stream, "open");
  source.onerror = () => setStreamState(stream, source.readyState === EventSource.CLOSED ? "closed" : "connecting");
}

function closeStream(stream) {
  stream.closed = true;
  if (stream.source) stream.source.close();
}

function listen(stream, type) {
  if (!stream.source || stream.types.has(type)) return;
  stream.types.add(type);
  stream.source.addEventListener(type, (e) => logEvent(stream, type, e));
}

function setStreamState(stream, value) {
  stream.state = value;
  renderFollows();
}

function addType(type) {
  type = type.trim();
  if (!type || state.types.has(type)) return;
  state.types.add(type);
  for (const follow of state.follows.values()) for (const s of follow.streams.values()) listen(s, type);
  renderTypes();
}

function logEvent(stream, type, e) {
  // Rows up to the channel's last id at follow time came from the replay window, not live.
  const replay = stream.replayUntil != null && type !== "sse-reset";
  if (replay && e.lastEventId === stream.replayUntil) stream.replayUntil = null;
  const now = new Date();
  const time = now.toLocaleTimeString([], { hour12: false }) + "." + String(now.getMilliseconds()).padStart(3, "0");
  const typeCell = el("td", { class: "type" }, type);
  if (replay) typeCell.append(el("span", { class: "tag" }, "replay"));
  const cls = "event" + (type === "sse-reset" ? " reset" : "") + (type === "sse-expired" ? " expired" : "");
  const row = el("tr", { class: cls, "data-channel": stream.channel, "data-id": e.lastEventId, "data-type": type },
    el("td", { class: "time" }, time),
    el("td", { class: "channel" }, stream.channel),
    el("td", { class: "id" }, e.lastEventId),
    typeCell,
    el("td", { class: "data" }, e.data));
  if (replay) row.dataset.replay = "1";
  const body = $("log-rows");
  body.prepend(row);
  while (body.rows.length > MAX_ROWS) body.lastElementChild.remove();
  state.logCount += 1;
  $("log-count").textContent = String(state.logCount);
}

function renderFollows() {
  const items = [];
  for (const follow of state.follows.values()) {
    const unfollow = el("button", { type: "button", class: "link", title: "stop following" }, "unfollow");
    unfollow.addEventListener("click", () => removeFollow(follow.target));
    const li = el("li", { "data-target": follow.target }, el("span", { class: "target" }, follow.target));
    if (follow.from) li.append(el("span", { class: "muted small" }, "after " + follow.from));
    if (follow.pattern && follow.streams.size === 0) li.append(el("span", { class: "muted small" }, "no matching channel yet"));
    for (const s of follow.streams.values()) {
      li.append(el("span", { class: "stream " + s.state, "data-channel": s.channel }, s.channel + ": " + s.state));
    }
    li.append(unfollow);
    items.push(li);
  }
  $("follows").replaceChildren(...items);
  $("log-hint").hidden = items.length > 0;
}

function renderTypes() {
  $("types").replaceChildren(...[...state.types].map((t) => el("span", { class: "chip" }, t)));
}

function saveFollows() {
  const list = [...state.follows.values()].map((f) => f.target);
  sessionStorage.setItem(FOLLOWS_KEY, JSON.stringify(list));
}

function restoreFollows() {
  let list = [];
  try { list = JSON.parse(sessionStorage.getItem(FOLLOWS_KEY) || "[]"); } catch (_) { list = []; }
  for (const target of Array.isArray(list) ? list : []) if (typeof target === "string") addFollow(target, "");
}

// ---- publish --------------------------------------------------------------------------------------

async function publish(ev) {
  ev.preventDefault();
  const out = $("pub-result");
  const channel = $("pub-channel").value.trim();
  const type = $("pub-event").value.trim();
  const id = $("pub-id").value;
  const body = { data: $("pub-data").value };
  if (type) { body.event = type; addType(type); }
  if (id) body.id = id;
  const headers = { "Content-Type": "application/json" };
  const token = $("token").value;
  if (token) headers.Authorization = "Bearer " + token;
  out.textContent = "publishing…";
  out.className = "";
  try {
    const resp = await fetch("/events/" + encodeURIComponent(channel), { method: "POST", headers, body: JSON.stringify(body) });
    const json = await resp.json().catch(() => ({}));
    if (resp.ok) {
      out.textContent = "published id " + json.id;
      out.className = "ok";
      out.dataset.id = json.id;
    } else {
      out.textContent = resp.status + ": " + (json.error || resp.statusText);
      out.className = "err";
    }
  } catch (e) {
    out.textContent = "failed: " + e.message;
    out.className = "err";
  }
}

function setupToken() {
  const input = $("token");
  input.value = sessionStorage.getItem(TOKEN_KEY) || "";
  input.addEventListener("input", () => {
    if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
    else sessionStorage.removeItem(TOKEN_KEY);
  });
  $("token-forget").addEventListener("click", () => {
    input.value = "";
    sessionStorage.removeItem(TOKEN_KEY);
  });
}

// ---- chart ----------------------------------------------------------------------------------------

// Prometheus text format: `name{labels} value`; labelled series of one name are summed.
function parseMetrics(text) {
  const out = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const value = Number(m[3]);
    if (Number.isFinite(value)) out.set(m[1], (out.get(m[1]) || 0) + value);
  }
  return out;
}

function pick(metrics, names) {
  for (const name of names) if (metrics.has(name)) return { name, value: metrics.get(name) };
  return null;
}

async function pollMetrics() {
  const status = $("chart-status");
  try {
    const resp = await fetch("/metrics", { cache: "no-store" });
    if (!resp.ok) throw new Error("GET /metrics: " + resp.status);
    const metrics = parseMetrics(await resp.text());
    const published = pick(metrics, PUBLISHED_SERIES);
    const subscribers = pick(metrics, SUBSCRIBER_SERIES);
    const t = performance.now();
    const prev = state.samples[state.samples.length - 1];
    let rate = 0;
    if (prev && published && prev.published != null && t > prev.t) {
      rate = Math.max(0, (published.value - prev.published) / ((t - prev.t) / 1000));
    }
    state.samples.push({ t, published: published ? published.value : null, rate, subscribers: subscribers ? subscribers.value : 0 });
    while (state.samples.length > MAX_SAMPLES) state.samples.shift();
    $("rate-now").textContent = prev ? rate.toFixed(1) : "–";
    $("subs-now").textContent = subscribers ? String(subscribers.value) : "–";
    status.textContent = "series: " + (published ? published.name : "no published counter") + ", " +
      (subscribers ? subscribers.name : "no subscriber gauge");
    drawChart();
  } catch (e) {
    status.textContent = "metrics unavailable (" + e.message + ")";
  }
  setTimeout(pollMetrics, POLL_MS);
}

function drawChart() {
  const samples = state.samples;
  const points = (key) => {
    const max = Math.max(1, ...samples.map((s) => s[key]));
    return samples
      .map((s, i) => {
        const x = (MAX_SAMPLES - samples.length + i) * (300 / (MAX_SAMPLES - 1));
        const y = 78 - (s[key] / max) * 74;
        return x.toFixed(1) + "," + y.toFixed(1);
      })
      .join(" ");
  };
  $("chart-rate").setAttribute("points", points("rate"));
  $("chart-subs").setAttribute("points", points("subscribers"));
  $("chart").dataset.samples = String(samples.length);
}

// ---- start ----------------------------------------------------------------------------------------

function start() {
  $("origin").textContent = location.origin;
  setupToken();
  renderTypes();
  $("publish-form").addEventListener("submit", publish);
  $("follow-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const from = $("follow-from").value.trim();
    for (const target of $("follow-target").value.split(/[\s,]+/)) addFollow(target, from);
    $("follow-target").value = "";
    $("follow-from").value = "";
  });
  $("types-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    for (const t of $("types-input").value.split(/[\s,]+/)) addType(t);
    $("types-input").value = "";
  });
  $("log-clear").addEventListener("click", () => {
    $("log-rows").replaceChildren();
    state.logCount = 0;
    $("log-count").textContent = "0";
  });
  restoreFollows();
  pollChannels();
  pollMetrics();
}

start();
