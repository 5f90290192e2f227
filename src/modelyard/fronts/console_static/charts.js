// modelyard's console: live charts drawn on <canvas> from the server's own /metrics
// (Prometheus text), one sample a second. Loaded after console.js (shares its helpers).
"use strict";

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

$("chart-model").addEventListener("change", () => { previous = null; });
