// modelyard's console: plain JavaScript, no build step. Reads /console/api/models and the
// server's own /metrics; every call carries the API key kept for this tab (sessionStorage).
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

// ---- live charts from /metrics ------------------------------------------------------------

const CHARTS = [
  { id: "rps", title: "requests / s", series: ["req/s"] },
  { id: "latency", title: "latency (ms)", series: ["p50", "p90", "p99"] },
  { id: "queue", title: "queue depth", series: ["waiting"] },
  { id: "batch", title: "batch size (rows per execution)", series: ["mean"] },
  { id: "tokens", title: "tokens / s generated", series: ["tokens/s"] },
  { id: "ttft", title: "time to first token (ms)", series: ["p50", "p90"] },
];
const COLORS = ["#2f6fed", "#e8590c", "#12825c"];
const KEEP = 120; // samples shown (one a second)
const charts = {};
let previous = null;

function buildCharts() {
  $("charts").replaceChildren(...CHARTS.map((spec) => {
    const canvas = el("canvas", { id: "chart-" + spec.id, "data-points": "0", "data-last": "" });
    const now = el("span", { className: "now" });
    charts[spec.id] = { spec, canvas, now, data: spec.series.map(() => []) };
    return el("div", { className: "chart" },
      el("h3", {}, spec.title, now), canvas,
      el("div", { className: "legend" }, spec.series.length > 1
        ? spec.series.map((s, i) => el("span", {}, el("i", { style: `background:${COLORS[i]}` }), s))
        : null));
  }));
  Object.values(charts).forEach(draw);  // the axes, before the first sample
}

function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: match[1], labels, value: Number(match[4]) });
  }
  return samples;
}

function summarise(samples, model) {
  const mine = samples.filter((s) => !model || (s.labels.model || s.labels.model_name) === model);
  const sum = (name) => mine.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);
  const buckets = (name) => {
    const out = {};
    for (const s of mine.filter((x) => x.name === name + "_bucket")) {
      out[s.labels.le] = (out[s.labels.le] || 0) + s.value;
    }
    return out;
  };
  return {
    time: performance.now() / 1000,
    requests: sum("modelyard_inference_request_success_total") + sum("modelyard_inference_request_failure_total")
      + sum("vllm:request_success_total"),
    latency: buckets("modelyard_inference_request_duration_seconds"),
    queue: sum("modelyard_inference_queue_depth") + sum("vllm:num_requests_waiting"),
    batchSum: sum("modelyard_inference_batch_size_sum"),
    batchCount: sum("modelyard_inference_batch_size_count"),
    tokens: sum("vllm:generation_tokens_total"),
    ttft: buckets("vllm:time_to_first_token_seconds"),
  };
}

// The q-quantile of the observations between two cumulative histograms (linear in a bucket).
function quantile(q, now, before) {
  const edges = Object.keys(now).map((le) => ({ le, bound: le === "+Inf" ? Infinity : Number(le) }))
    .sort((a, b) => a.bound - b.bound)
    .map((e) => ({ bound: e.bound, count: now[e.le] - ((before && before[e.le]) || 0) }));
  const total = edges.length ? edges[edges.length - 1].count : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let low = 0, below = 0;
  for (const edge of edges) {
    if (edge.count >= rank) {
      if (edge.bound === Infinity) return low;
      const inside = edge.count - below;
      return low + (edge.bound - low) * (inside ? (rank - below) / inside : 1);
    }
    low = edge.bound; below = edge.count;
  }
  return low;
}

async function pollMetrics() {
  const reply = await api("/metrics");
  if (!reply.ok) return;
  const now = summarise(parseMetrics(await reply.text()), $("chart-model").value);
  if (previous) {
    const dt = Math.max(now.time - previous.time, 1e-3);
    const rate = (a, b) => Math.max(0, a - b) / dt;
    const ms = (q, h, p) => { const v = quantile(q, h, p); return v === null ? null : v * 1000; };
    const executions = now.batchCount - previous.batchCount;
    push("rps", [rate(now.requests, previous.requests)]);
    push("latency", [0.5, 0.9, 0.99].map((q) => ms(q, now.latency, previous.latency)));
    push("queue", [now.queue]);
    push("batch", [executions > 0 ? (now.batchSum - previous.batchSum) / executions : null]);
    push("tokens", [rate(now.tokens, previous.tokens)]);
    push("ttft", [0.5, 0.9].map((q) => ms(q, now.ttft, previous.ttft)));
  }
  previous = now;
}

function push(id, values) {
  const chart = charts[id];
  values.forEach((v, i) => {
    chart.data[i].push(v);
    if (chart.data[i].length > KEEP) chart.data[i].shift();
  });
  chart.canvas.dataset.points = String(Number(chart.canvas.dataset.points) + 1);
  chart.canvas.dataset.last = JSON.stringify(values);
  // the latest value of each series (a histogram's last window with observations)
  const latest = chart.data.map((series) => [...series].reverse().find((v) => v !== null) ?? null);
  const shown = latest.map((v) => (v === null ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(0)));
  chart.now.textContent = shown.join(" / ");
  draw(chart);
}

function draw(chart) {
  const canvas = chart.canvas;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (canvas.width !== width * ratio) { canvas.width = width * ratio; canvas.height = height * ratio; }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const values = chart.data.flat().filter((v) => v !== null);
  const top = niceMax(Math.max(0, ...values));
  const left = 36, bottom = height - 14, right = width - 4;
  g.strokeStyle = "#e4e7ec"; g.fillStyle = "#667085"; g.font = "10px sans-serif"; g.lineWidth = 1;
  for (const f of [0, 0.5, 1]) {
    const y = bottom - f * (bottom - 6);
    g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
    g.fillText(label(top * f), 2, y + 3);
  }
  g.fillText(`last ${KEEP} s`, left, height - 2);
  const step = (right - left) / (KEEP - 1);
  chart.data.forEach((series, index) => {
    g.strokeStyle = g.fillStyle = COLORS[index]; g.lineWidth = 1.6; g.beginPath();
    const lone = [];
    series.forEach((v, i) => {
      if (v === null) return;
      const x = right - (series.length - 1 - i) * step;
      const y = bottom - (top ? v / top : 0) * (bottom - 6);
      const joined = i > 0 && series[i - 1] !== null;
      if (joined) g.lineTo(x, y); else g.moveTo(x, y);
      if (!joined && (i === series.length - 1 || series[i + 1] === null)) lone.push([x, y]);
    });
    g.stroke();
    for (const [x, y] of lone) { g.beginPath(); g.arc(x, y, 2.2, 0, 2 * Math.PI); g.fill(); }
  });
}

function niceMax(v) {
  if (v <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * power).find((m) => m >= v);
}

function label(v) {
  return v >= 1000 ? (v / 1000).toFixed(1) + "k" : v >= 10 ? v.toFixed(0) : v.toFixed(v ? 1 : 0);
}

// ---- playground ---------------------------------------------------------------------------

function renderModelChoices(view) {
  const names = view.models.map((m) => m.name);
  for (const id of ["play-model", "chart-model"]) {
    const select = $(id);
    const keep = id === "chart-model" ? [select.options[0]] : [];
    const current = select.value;
    const known = [...select.options].map((o) => o.value).filter(Boolean);
    if (known.join() !== names.join()) {
      select.replaceChildren(...keep, ...names.map((n) => el("option", { value: n, textContent: n })));
      select.value = current;
    }
  }
  if (!state.selected || !names.includes(state.selected)) {
    const ready = view.models.find((m) => m.loaded.length) || view.models[0];
    state.selected = ready ? ready.name : null;
  }
  $("play-model").value = state.selected || "";
}

function choose(name) {
  state.selected = name;
  $("play-model").value = name;
  renderPlayground();
  $("playground").scrollIntoView({ behavior: "smooth" });
}

async function renderPlayground() {
  const model = state.overview.models.find((m) => m.name === state.selected);
  // a tensor model's form follows its inputs (known once loaded); a chat keeps its history
  const key = model ? `${model.name}|${model.kind}|${model.kind === "llm" || model.kind === "embedding" ? "" : model.loaded.join()}` : "";
  if (key === state.playBuiltFor) return;
  state.playBuiltFor = key;
  const form = $("play-form");
  if (!model) { form.replaceChildren(el("p", { className: "note", textContent: "no models" })); return; }
  if (model.kind === "llm") form.replaceChildren(chatPlayground(model));
  else if (model.kind === "embedding") form.replaceChildren(embeddingPlayground(model));
  else if (!model.loaded.length) {
    form.replaceChildren(el("p", { className: "note",
      textContent: `${model.name} is not loaded: load it to see its inputs and try it.` }));
    setSnippets({});
  } else form.replaceChildren(tensorPlayground(model));
}

const HOST = () => ROOT.href.replace(/\/$/, "");
const KEY_HEADER = () => (sessionStorage.getItem(KEY) ? ' -H "Authorization: Bearer $MODELYARD_API_KEY"' : "");
const KEY_PY = () => (sessionStorage.getItem(KEY) ? 'os.environ["MODELYARD_API_KEY"]' : '"unused"');

function setSnippets(snippets) {
  state.snippets = snippets;
  const names = Object.keys(snippets);
  if (!names.includes(state.tab)) state.tab = names[0] || "";
  $("snippet-tabs").replaceChildren(...names.map((n) => el("button", {
    textContent: n, className: n === state.tab ? "on" : "",
    on: { click: () => { state.tab = n; setSnippets(state.snippets); } },
  })));
  $("snippet").textContent = snippets[state.tab] || "";
}

// classic models: a field per input tensor, KServe v2 infer
function sampleValue(tensor) {
  const dims = tensor.shape.map((d) => (d < 0 ? 1 : d));
  const fill = tensor.datatype === "BYTES" ? "hello world" : tensor.datatype === "BOOL" ? true
    : tensor.datatype.startsWith("FP") ? 0.5 : 1;
  const build = (level) => (level === dims.length ? fill
    : Array.from({ length: Math.min(dims[level], 16) }, () => build(level + 1)));
  return dims.length ? build(0) : [fill];
}

function shapeOf(value) {
  const shape = [];
  for (let v = value; Array.isArray(v); v = v[0]) shape.push(v.length);
  return shape;
}

function tensorPlayground(model) {
  const fields = model.inputs.map((t) => el("div", {},
    el("label", { textContent: `${t.name}  ${t.datatype} [${t.shape.join(", ")}]` }),
    el("textarea", { name: t.name, rows: 3, value: JSON.stringify(sampleValue(t)),
      on: { input: () => setSnippets(tensorSnippets(model, readInputs(model, true))) } })));
  const output = el("div", { className: "output", id: "infer-output" });
  const run = el("button", { id: "infer-run", textContent: "infer", on: { click: () => infer(model, output) } });
  setTimeout(() => setSnippets(tensorSnippets(model, readInputs(model, true))));
  return el("div", {}, el("p", { className: "note",
    textContent: "Each input as JSON, its shape read from the nesting (KServe v2 infer)." }),
  ...fields, el("div", { className: "row" }, run), output);
}

function readInputs(model, lenient) {
  return model.inputs.map((t) => {
    const text = document.querySelector(`#play-form textarea[name="${CSS.escape(t.name)}"]`).value;
    let value;
    try { value = JSON.parse(text); } catch (e) {
      if (lenient) value = text;
      else throw new Error(`input ${t.name}: not JSON (${e.message})`);
    }
    if (!Array.isArray(value)) value = [value];
    return { name: t.name, datatype: t.datatype, shape: shapeOf(value), data: value.flat(Infinity) };
  });
}

async function infer(model, output) {
  output.replaceChildren(el("p", { className: "note", textContent: "running…" }));
  let inputs;
  try { inputs = readInputs(model, false); } catch (e) {
    output.replaceChildren(el("p", { className: "error", textContent: e.message })); return;
  }
  const started = performance.now();
  const reply = await postJSON(`/v2/models/${encodeURIComponent(model.name)}/infer`, { inputs });
  const took = (performance.now() - started).toFixed(1);
  if (!reply.ok) {
    output.replaceChildren(el("p", { className: "error", textContent: await errorText(reply) }));
    return;
  }
  const body = await reply.json();
  output.replaceChildren(el("p", { className: "note", textContent: `answered in ${took} ms` }),
    el("table", {}, el("tr", {}, ["output", "datatype", "shape", "data"].map((h) => el("th", { textContent: h }))),
      body.outputs.map((o) => el("tr", { "data-output": o.name },
        el("td", { textContent: o.name }), el("td", { textContent: o.datatype }),
        el("td", { textContent: JSON.stringify(o.shape) }),
        el("td", { textContent: JSON.stringify(o.data) })))));
}

function tensorSnippets(model, inputs) {
  const body = JSON.stringify({ inputs });
  const url = `${HOST()}/v2/models/${model.name}/infer`;
  const py = inputs.map((t, i) => (t.datatype === "BYTES"
    ? `x${i} = httpclient.InferInput("${t.name}", ${JSON.stringify(t.shape)}, "BYTES")\n` +
      `x${i}.set_data_from_numpy(np.array(${JSON.stringify(t.data)}, dtype=object).reshape(${JSON.stringify(t.shape)}))`
    : `x${i} = httpclient.InferInput("${t.name}", ${JSON.stringify(t.shape)}, "${t.datatype}")\n` +
      `x${i}.set_data_from_numpy(np.array(${JSON.stringify(t.data)}, dtype=np.${numpyType(t.datatype)}).reshape(${JSON.stringify(t.shape)}))`)).join("\n");
  const headers = sessionStorage.getItem(KEY) ? ', headers={"Authorization": "Bearer " + os.environ["MODELYARD_API_KEY"]}' : "";
  return {
    curl: `curl -s ${url}${KEY_HEADER()} \\\n  -H "Content-Type: application/json" \\\n  -d '${body}'`,
    tritonclient: `import os\nimport numpy as np\nimport tritonclient.http as httpclient\n\n` +
      `client = httpclient.InferenceServerClient("${window.location.host}")\n${py}\n` +
      `result = client.infer("${model.name}", [${inputs.map((_, i) => "x" + i).join(", ")}]${headers})\n` +
      model.outputs.map((o) => `print(result.as_numpy("${o.name}"))`).join("\n"),
  };
}

function numpyType(datatype) {
  // INT8 -> int8, UINT64 -> uint64 ...; BF16 has no numpy type: float32, converted on the way
  return { FP16: "float16", FP32: "float32", FP64: "float64", BOOL: "bool_", BF16: "float32" }[datatype]
    || datatype.toLowerCase();
}

// LLMs: a streaming chat over OpenAI's /v1/chat/completions
function chatPlayground(model) {
  const log = el("div", { className: "chat", id: "chat-log" });
  const text = el("input", { type: "text", id: "chat-input", placeholder: "Say something…" });
  const maxTokens = el("input", { type: "number", id: "chat-max-tokens", value: 96, min: 1, style: "width:5em" });
  const send = el("button", { id: "chat-send", textContent: "send" });
  const messages = [];
  const go = async (event) => {
    event.preventDefault();
    if (!text.value.trim()) return;
    messages.push({ role: "user", content: text.value });
    log.append(el("div", { className: "msg user", textContent: text.value }));
    text.value = "";
    send.disabled = true;
    try { messages.push({ role: "assistant", content: await stream(model, messages, Number(maxTokens.value), log) }); }
    finally { send.disabled = false; }
  };
  const form = el("form", { className: "row", on: { submit: go } }, text,
    el("label", { textContent: "max tokens", style: "margin:0;align-self:center" }), maxTokens, send);
  setSnippets(chatSnippets(model));
  return el("div", {}, el("p", { className: "note",
    textContent: model.loaded.length ? "Streamed from /v1/chat/completions." :
      "Not loaded: the first message loads it (ondemand), or load it above." }), log, form);
}

async function stream(model, messages, maxTokens, log) {
  const bubble = el("div", { className: "msg assistant", "data-updates": "0", "data-done": "false" });
  log.append(bubble);
  const reply = await postJSON("/v1/chat/completions",
    { model: model.name, messages, stream: true, max_tokens: maxTokens });
  if (!reply.ok) {
    bubble.className = "msg error";
    bubble.textContent = await errorText(reply);
    bubble.dataset.done = "true";
    return "";
  }
  const reader = reply.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "", text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    const events = buffered.split("\n\n");
    buffered = events.pop();
    for (const event of events) {
      const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
      if (!data || data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) { bubble.append(el("span", { className: "error", textContent: " " + chunk.error.message })); continue; }
      const piece = (chunk.choices[0] && chunk.choices[0].delta && chunk.choices[0].delta.content) || "";
      if (!piece) continue;
      text += piece;
      bubble.textContent = text;
      bubble.dataset.updates = String(Number(bubble.dataset.updates) + 1);
      log.scrollTop = log.scrollHeight;
    }
  }
  bubble.dataset.done = "true";
  return text;
}

function chatSnippets(model) {
  const body = JSON.stringify({ model: model.name, stream: true, max_tokens: 64,
    messages: [{ role: "user", content: "Name one fruit." }] });
  return {
    curl: `curl -N ${HOST()}/v1/chat/completions${KEY_HEADER()} \\\n  -H "Content-Type: application/json" \\\n  -d '${body}'`,
    openai: `import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="${HOST()}/v1", api_key=${KEY_PY()})\n` +
      `stream = client.chat.completions.create(\n    model="${model.name}",\n` +
      `    messages=[{"role": "user", "content": "Name one fruit."}],\n    max_tokens=64,\n    stream=True,\n)\n` +
      `for chunk in stream:\n    print(chunk.choices[0].delta.content or "", end="", flush=True)`,
  };
}

// embedding models: the cosine similarity of two texts over /v1/embeddings
function embeddingPlayground(model) {
  const a = el("textarea", { id: "embed-a", rows: 2, value: "A cat sits on the mat." });
  const b = el("textarea", { id: "embed-b", rows: 2, value: "A kitten is lying on a rug." });
  const result = el("div", { className: "cosine", id: "embed-result" });
  const run = el("button", { id: "embed-run", textContent: "compare", on: { click: async () => {
    result.textContent = "…";
    const reply = await postJSON("/v1/embeddings", { model: model.name, input: [a.value, b.value] });
    if (!reply.ok) { result.textContent = ""; result.append(el("span", { className: "error", textContent: await errorText(reply) })); return; }
    const [x, y] = (await reply.json()).data.map((d) => d.embedding);
    result.textContent = `cosine ${cosine(x, y).toFixed(4)}`;
    result.title = `${x.length} dimensions`;
  } } });
  setSnippets(embeddingSnippets(model));
  return el("div", {}, el("p", { className: "note", textContent: "Two texts, their cosine similarity (/v1/embeddings)." }),
    el("label", { textContent: "first text" }), a, el("label", { textContent: "second text" }), b,
    el("div", { className: "row" }, run), result);
}

function cosine(x, y) {
  let dot = 0, nx = 0, ny = 0;
  for (let i = 0; i < x.length; i++) { dot += x[i] * y[i]; nx += x[i] * x[i]; ny += y[i] * y[i]; }
  return dot / Math.sqrt(nx * ny);
}

function embeddingSnippets(model) {
  const body = JSON.stringify({ model: model.name, input: ["A cat sits on the mat.", "A kitten is lying on a rug."] });
  return {
    curl: `curl -s ${HOST()}/v1/embeddings${KEY_HEADER()} \\\n  -H "Content-Type: application/json" \\\n  -d '${body}'`,
    openai: `import os\nimport numpy as np\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="${HOST()}/v1", api_key=${KEY_PY()})\n` +
      `a, b = (np.array(d.embedding) for d in client.embeddings.create(\n` +
      `    model="${model.name}", input=["A cat sits on the mat.", "A kitten is lying on a rug."]).data)\n` +
      `print(a @ b / np.linalg.norm(a) / np.linalg.norm(b))`,
  };
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

$("play-model").addEventListener("change", (e) => { state.selected = e.target.value; renderPlayground(); });
$("chart-model").addEventListener("change", () => { previous = null; });
start();
