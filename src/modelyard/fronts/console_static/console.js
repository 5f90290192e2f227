// modelyard's console: plain JavaScript, no build step. This file: calls and the API key (kept
// for this tab in sessionStorage, sent with every call), the models table, and the start;
// charts.js draws the live charts, playground.js the playground.
"use strict";

const KEY = "modelyard-key";
const $ = (id) => document.getElementById(id);
const state = {
  overview: null, selected: null, playBuiltFor: "", snippets: {}, tab: "curl", open: new Set(),
};

// ---- calls and the key -------------------------------------------------------------------

class Unauthorized extends Error {}

function authHeaders() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: "Bearer " + key } : {};
}

// the server's root as this page sees it (the app may be mounted under a prefix)
const ROOT = new URL(".", window.location.href);

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), ...authHeaders() };
  const reply = await fetch(new URL(path.replace(/^\//, ""), ROOT), { ...options, headers });
  if (reply.status === 401) {
    showLogin(sessionStorage.getItem(KEY) ? "that key was not accepted" : "");
    throw new Unauthorized();
  }
  return reply;
}

async function postJSON(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function errorText(reply) {
  const text = await reply.text();
  try {
    const body = JSON.parse(text);
    const error = body.error;
    return typeof error === "string" ? error : (error && error.message) || text;
  } catch (e) {
    return text || reply.statusText;
  }
}

function showLogin(message) {
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("login").key.focus();
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, event.target.key.value);
  event.target.key.value = "";
  start();
});

// ---- small DOM helpers --------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "on") Object.entries(value).forEach(([ev, fn]) => node.addEventListener(ev, fn));
    else if (name in node && name !== "list") node[name] = value;
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function bytes(n) {
  if (!n) return "";
  if (n < 2 ** 30) return (n / 2 ** 20).toFixed(0) + " MiB";
  return (n / 2 ** 30).toFixed(1) + " GiB";
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 0) return "forever";
  if (seconds === 0) return "unload when idle";
  if (seconds < 120) return seconds.toFixed(0) + " s";
  if (seconds < 7200) return (seconds / 60).toFixed(0) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

// ---- the models table ---------------------------------------------------------------------

async function refreshModels() {
  const reply = await api("/console/api/models");
  if (!reply.ok) throw new Error(await errorText(reply));
  state.overview = await reply.json();
  renderServer(state.overview);
  renderModels(state.overview);
  renderModelChoices(state.overview);
  await renderPlayground();
}

function renderServer(view) {
  const loaded = view.models.filter((m) => m.loaded.length).length;
  const facts = [`${view.models.length} models, ${loaded} loaded`, `control mode ${view.control_mode}`];
  if (view.rss_bytes) facts.push(`resident memory ${bytes(view.rss_bytes)}`);
  $("server-facts").textContent = facts.join(" · ");
  $("control-note").textContent = view.locked;
}

function renderModels(view) {
  $("models").tBodies[0].replaceChildren(...view.models.flatMap((m) => modelRow(m, view)));
}

function modelRow(model, view) {
  const versions = model.loaded.length
    ? `${model.loaded.join(", ")} loaded` + (model.versions.length > model.loaded.length
      ? ` of ${model.versions.join(", ")}` : "")
    : model.versions.length ? `${model.versions.join(", ")} on disk` : "";
  const row = el("tr", { "data-model": model.name },
    el("td", {}, el("strong", { textContent: model.name }), " ", whyButton(model)),
    el("td", { textContent: model.kind }),
    el("td", {}, el("span", { className: "state-" + model.state, textContent: model.state }),
      model.reason ? el("small", { textContent: " " + model.reason }) : null),
    el("td", { textContent: versions }),
    el("td", {}, model.runtime || model.platform,
      model.max_batch_size ? el("small", { textContent: ` batch ≤ ${model.max_batch_size}` }) : null),
    el("td", {}, memory(model, view)),
    el("td", {}, keepAlive(model, view)),
    el("td", { className: "actions" }, actions(model, view)),
  );
  return [row, ...reasons(model)];
}

// the advisor's choices and their reasons: a row under the model's, opened by "why"
function whyButton(model) {
  const count = Object.keys(model.reasons || {}).length;
  if (!count) return null;
  return el("button", {
    className: "why", textContent: `why (${count})`, "aria-expanded": String(state.open.has(model.name)),
    on: { click: () => {
      if (!state.open.delete(model.name)) state.open.add(model.name);
      renderModels(state.overview);
    } },
  });
}

function reasons(model) {
  const entries = Object.entries(model.reasons || {});
  if (!entries.length || !state.open.has(model.name)) return [];
  return [el("tr", { className: "reasons", "data-reasons": model.name },
    el("td", { colSpan: 8 },
      el("dl", {}, entries.flatMap(([k, v]) => [el("dt", { textContent: k }), el("dd", { textContent: v })]))))];
}

function memory(model, view) {
  const parts = [];
  if (model.process_rss_bytes) {  // measured: the model's own worker process
    parts.push(el("span", { className: "measured", textContent: bytes(model.process_rss_bytes) }),
      el("small", { textContent: " resident (its worker process)" }));
    if (model.estimate_bytes) parts.push(el("br"));
  }
  if (!model.estimate_bytes) return el("span", {}, parts);
  parts.push(el("span", { textContent: "≈ " + bytes(model.estimate_bytes),
    title: "the advisor's estimate of what serving it takes" }));
  if (model.loaded.length && view.rss_bytes && !model.process_rss_bytes) {
    const share = (100 * model.estimate_bytes / view.rss_bytes).toFixed(0);
    parts.push(el("small", { textContent: ` (${share}% of resident memory)`,
      title: "the advisor's estimate against the server process's resident memory now" }));
  }
  return el("span", {}, parts);
}

function keepAlive(model, view) {
  const keep = model.keep_alive_s ?? view.keep_alive_s;
  const until = model.expires_at ? new Date(model.expires_at * 1000).toLocaleTimeString() : "";
  const shown = model.loaded.length ? (until ? `until ${until}` : duration(keep) || "kept") : "";
  if (model.kind !== "llm") return shown;
  const allowed = view.control_mode === "ondemand" && !view.locked;
  const select = el("select", {
    className: "keep-alive", disabled: !allowed,
    title: allowed ? "keep this model loaded while idle for…"
      : "keep-alive applies in model control mode ondemand",
    on: { change: (e) => setKeepAlive(model.name, e.target.value) },
  },
  el("option", { value: "", textContent: shown || "keep for…" }),
  ["5m", "30m", "1h", "24h"].map((v) => el("option", { value: v, textContent: v })),
  el("option", { value: "-1", textContent: "forever" }));
  return select;
}

function actions(model, view) {
  const why = view.locked;
  const busy = model.state === "LOADING" || model.state === "UNLOADING";
  const load = el("button", {
    className: "load", textContent: model.loaded.length ? "reload" : "load",
    disabled: Boolean(why) || busy, title: why || "load (or reload) it from disk",
    on: { click: () => repository(model.name, "load") },
  });
  const unload = el("button", {
    className: "unload", textContent: "unload", disabled: Boolean(why) || busy || !model.loaded.length,
    title: why || (model.loaded.length ? "unload it" : "not loaded"),
    on: { click: () => repository(model.name, "unload") },
  });
  const tryIt = el("button", {
    className: "try", textContent: "try", on: { click: () => choose(model.name) },
  });
  return el("span", {}, load, " ", unload, " ", tryIt);
}

async function repository(name, action) {
  const message = $("action-message");
  message.textContent = `${action}ing ${name}…`;
  message.className = "note";
  document.querySelectorAll(`tr[data-model="${CSS.escape(name)}"] button`).forEach((b) => {
    b.disabled = true;
  });
  try {
    const reply = await postJSON(`/v2/repository/models/${encodeURIComponent(name)}/${action}`, {});
    message.textContent = reply.ok ? `${name}: ${action}ed` : `${name}: ${await errorText(reply)}`;
    message.className = reply.ok ? "note done" : "error";
  } finally {
    await refreshModels();
  }
}

async function setKeepAlive(name, value) {
  if (!value) return;
  const keep = value === "-1" ? -1 : value;
  const reply = await postJSON("/api/generate", { model: name, keep_alive: keep });
  $("action-message").textContent = reply.ok
    ? `${name}: kept loaded for ${value === "-1" ? "ever" : value} while idle`
    : `${name}: ${await errorText(reply)}`;
  await refreshModels();
}

// ---- start --------------------------------------------------------------------------------

let timers = [];

async function start() {
  timers.forEach(clearInterval);
  timers = [];
  try {
    await refreshModels();
  } catch (e) {
    if (!(e instanceof Unauthorized)) $("control-note").textContent = String(e);
    if (e instanceof Unauthorized) return;
  }
  $("login").hidden = true;
  $("main").hidden = false;
  if (!Object.keys(charts).length) buildCharts();
  const quietly = (fn) => () => fn().catch((e) => { if (!(e instanceof Unauthorized)) console.warn(e); });
  timers.push(setInterval(quietly(pollMetrics), 1000));
  timers.push(setInterval(quietly(refreshModels), 3000));
  quietly(pollMetrics)();
}

// the scripts are deferred: all three have run by now
document.addEventListener("DOMContentLoaded", start);
