// modelyard's console: the playground, by kind of model (a form from the input tensors, a
// streaming chat, embedding similarity), with the equivalent code beside it. Loaded after
// console.js (shares its helpers).
"use strict";

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

$("play-model").addEventListener("change", (e) => { state.selected = e.target.value; renderPlayground(); });
