// lmstudio-rs's web app: plain JavaScript, served by `lms server` itself (nothing fetched from
// elsewhere). It speaks the server's own HTTP APIs: LM Studio's REST v0 (streamed completions
// with their stats) and REST v1 (models: list, load, unload).
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "lms.apiKey";
const CHAT = "lms.chat";

// ---- HTTP ----------------------------------------------------------------------------------

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = localStorage.getItem(KEY);
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

/** The error a reply carries, in words. */
async function failure(res) {
  let message = res.status + " " + res.statusText;
  try {
    const body = await res.json();
    message = (body.error && (body.error.message || body.error)) || message;
  } catch (_) { /* not JSON */ }
  if (res.status === 401) {
    const key = prompt("This server requires an API key:");
    if (key) localStorage.setItem(KEY, key);
    message += " (key saved: try again)";
  }
  if (res.status === 429) message = "The server is busy: " + message + ". Try again in a moment.";
  return new Error(message);
}

/** The error for a request the network failed (the server gone, or the connection cut): the page
 * starts watching for the server to come back. */
function lostConnection(e) {
  watchConnection();
  const error = new Error("The connection to the server was lost (" + e.message + "). Is `lms server` running? Reconnecting…");
  error.lost = true;
  return error;
}

async function api(path, body) {
  let res;
  try {
    res = await fetch(path, body === undefined ? { headers: headers() } : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  } catch (e) {
    throw lostConnection(e);
  }
  if (!res.ok) throw await failure(res);
  return res.json();
}

/** POSTs `body` with `stream: true` and calls `onChunk` with each server-sent event's JSON and
 * the event's name (none for the completion's own chunks). */
async function stream(path, body, onChunk, signal) {
  let res;
  try {
    res = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify({ ...body, stream: true }), signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw lostConnection(e);
  }
  if (!res.ok) throw await failure(res);
  try {
    await readEvents(res, (data, name) => {
      if (data === "[DONE]") return false;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || String(chunk.error));
      onChunk(chunk, name);
      return true;
    });
  } catch (e) {
    // The body cut off mid-stream: the server went away (a TypeError, as fetch's own failures).
    if (e instanceof TypeError) throw lostConnection(e);
    throw e;
  }
}

// ---- the connection ------------------------------------------------------------------------

let watching = false;

/** Once a request finds the server gone: says so, asks `/health` every two seconds, and when the
 * server answers again, says so and refreshes what the pages show. */
async function watchConnection() {
  if (watching) return;
  watching = true;
  const line = $("connection");
  line.className = "lost";
  line.textContent = "The connection to the server was lost: reconnecting…";
  line.hidden = false;
  for (;;) {
    await new Promise((r) => setTimeout(r, 2000));
    try {
      const res = await fetch("/health", { headers: headers(), cache: "no-store" });
      if (res.ok) break;
    } catch (_) { /* still gone */ }
  }
  watching = false;
  line.className = "back";
  line.textContent = "Reconnected to the server.";
  clearError();
  refreshModelPicker();
  if (!$("page-models").hidden) refreshModels();
  setTimeout(() => { if (!watching) line.hidden = true; }, 4000);
}

/** Reads a server-sent-event body, calling `onData` with each `data:` line's text and the event's
 * name until the body ends or `onData` returns false. */
async function readEvents(res, onData) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end).split("\n");
      buffer = buffer.slice(end + 2);
      const name = event.find((line) => line.startsWith("event: "))?.slice(7);
      for (const line of event) {
        if (line.startsWith("data: ") && onData(line.slice(6), name) === false) return;
      }
    }
  }
}

function showError(e) {
  if (e.lost) return; // the connection line says it, and says when the server is back
  const banner = $("banner");
  banner.textContent = e.message;
  banner.hidden = false;
}

function clearError() {
  $("banner").hidden = true;
}

/** A finished prediction's stats in one line (and its stop reason as data, for scripts). */
function statsLine(element, chunk) {
  const s = chunk.stats || {};
  const u = chunk.usage || {};
  const parts = [];
  if (u.completion_tokens !== undefined) parts.push(u.completion_tokens + " tokens");
  if (s.time_to_first_token != null) parts.push("TTFT " + s.time_to_first_token.toFixed(3) + " s");
  if (s.tokens_per_second != null) parts.push(s.tokens_per_second.toFixed(1) + " tok/s");
  if (s.stop_reason) parts.push("stop: " + s.stop_reason);
  if (chunk.loadTime != null) parts.push("model loaded in " + chunk.loadTime.toFixed(2) + " s");
  if (chunk.lost) parts.push("cut short: the connection was lost");
  if (s.total_draft_tokens_count !== undefined) parts.push("drafts " + s.accepted_draft_tokens_count + "/" + s.total_draft_tokens_count + " accepted");
  element.textContent = parts.join(" · ");
  element.dataset.stopReason = s.stop_reason || "";
}

/** A `load_progress` event (the model is loaded for this request: it was not) in `element`: how
 * far; the last says how long it took, which is returned (undefined before). */
function showLoad(element, chunk) {
  const took = chunk.load_time_seconds;
  element.textContent = took === undefined ? "loading the model: " + Math.round(chunk.progress * 100) + "%" : "";
  return took;
}

/**
 * Writes streamed text into `element` ten times a second: fragments are gathered and appended as
 * one new text node (the text before it is not touched again). Drawing each fragment as it came
 * cost the model a fifth of its speed on a 2-core machine, ten times a second a tenth (the rest is
 * the browser receiving the stream): bench/webapp.md. `flush()` writes what is pending now.
 */
function painter(element) {
  let pending = "";
  let frame = 0;
  const flush = () => {
    if (frame) clearTimeout(frame);
    frame = 0;
    if (pending) element.append(pending);
    pending = "";
  };
  const write = (text) => {
    pending += text;
    if (!frame) frame = setTimeout(flush, 100);
  };
  write.flush = flush;
  return write;
}

// ---- pages ---------------------------------------------------------------------------------

const PAGES = ["chat", "complete", "models", "logs"];

function route() {
  const page = PAGES.includes(location.hash.slice(1)) ? location.hash.slice(1) : "chat";
  for (const p of PAGES) {
    $("page-" + p).hidden = p !== page;
    if (p === page) $("nav-" + p).setAttribute("aria-current", "page");
    else $("nav-" + p).removeAttribute("aria-current");
  }
  if (page === "models") refreshModels();
  if (page === "logs") followLogs();
}

async function refreshModelPicker() {
  try {
    const list = await api("/api/v0/models");
    const select = $("model");
    const chosen = select.value || localStorage.getItem("lms.model");
    select.innerHTML = "";
    for (const m of list.data.filter((m) => m.type !== "embeddings")) {
      const option = document.createElement("option");
      option.value = m.id;
      option.textContent = m.id + (m.state === "loaded" ? " (loaded)" : "");
      select.append(option);
    }
    if (chosen && [...select.options].some((o) => o.value === chosen)) select.value = chosen;
  } catch (e) {
    showError(e);
  }
}

// ---- chat ----------------------------------------------------------------------------------

let chat = JSON.parse(localStorage.getItem(CHAT) || "[]");
let chatAbort = null;

function saveChat() {
  localStorage.setItem(CHAT, JSON.stringify(chat));
}

function renderChat() {
  const list = $("messages");
  list.innerHTML = "";
  chat.forEach((m, i) => {
    const li = document.createElement("li");
    li.className = m.role;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = m.role === "user" ? "You" : "Model";
    li.append(who);
    if (m.role === "user") {
      const edit = document.createElement("button");
      edit.className = "edit quiet";
      edit.type = "button";
      edit.textContent = "Edit";
      edit.addEventListener("click", () => {
        $("chat-input").value = m.content;
        chat = chat.slice(0, i);
        saveChat();
        renderChat();
        $("chat-input").focus();
      });
      li.append(edit);
    }
    const text = document.createElement("div");
    text.className = "content";
    text.textContent = m.content;
    li.append(text);
    const stats = document.createElement("p");
    stats.className = "stats";
    if (m.stats) statsLine(stats, m.stats);
    li.append(stats);
    list.append(li);
  });
  list.lastElementChild?.scrollIntoView({ block: "end" });
}

function numberOf(id) {
  const v = $(id).value.trim();
  return v === "" ? undefined : Number(v);
}

async function answer() {
  const messages = [];
  const system = $("chat-system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  for (const m of chat) messages.push({ role: m.role, content: m.content });
  const body = {
    model: $("model").value,
    messages,
    temperature: numberOf("chat-temperature"),
    max_tokens: numberOf("chat-max-tokens"),
    seed: numberOf("chat-seed"),
    top_k: numberOf("chat-top-k"),
    top_p: numberOf("chat-top-p"),
    min_p: numberOf("chat-min-p"),
    repeat_penalty: numberOf("chat-repeat-penalty"),
    prompt_progress: true,
    load_progress: true,
  };
  const schema = $("chat-schema").value.trim();
  if (schema) {
    try {
      body.response_format = { type: "json_schema", json_schema: { name: "answer", schema: JSON.parse(schema) } };
    } catch (e) {
      showError(new Error("The JSON schema is not JSON: " + e.message));
      return;
    }
  }
  const reply = { role: "assistant", content: "" };
  chat.push(reply);
  renderChat();
  const item = $("messages").lastElementChild;
  const text = item.querySelector(".content");
  const stats = item.querySelector(".stats");
  chatAbort = new AbortController();
  setChatBusy(true);
  clearError();
  const write = painter(text);
  try {
    let loadTime;
    await stream("/api/v0/chat/completions", body, (chunk, name) => {
      if (name === "load_progress") {
        loadTime = showLoad(stats, chunk);
        return;
      }
      if (chunk.progress !== undefined && !reply.content) {
        stats.textContent = chunk.progress < 1 ? "processing the prompt: " + Math.round(chunk.progress * 100) + "%" : "";
      }
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        reply.content += delta;
        write(delta);
      }
      if (chunk.stats) {
        write.flush();
        reply.stats = { stats: chunk.stats, usage: chunk.usage, loadTime };
        statsLine(stats, reply.stats);
      }
    }, chatAbort.signal);
  } catch (e) {
    write.flush();
    if (e.name === "AbortError") {
      reply.stats = { stats: { stop_reason: "userStopped" }, usage: {} };
      statsLine(stats, reply.stats);
    } else {
      if (e.lost) {
        // What came is kept, marked as cut short; Regenerate asks again once the server is back.
        reply.stats = { stats: {}, usage: {}, lost: true };
        statsLine(stats, reply.stats);
      }
      showError(e);
    }
  } finally {
    chatAbort = null;
    setChatBusy(false);
    saveChat();
  }
}

function setChatBusy(busy) {
  $("chat-send").disabled = busy;
  $("chat-regenerate").disabled = busy;
  $("chat-stop").disabled = !busy;
}

$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const content = $("chat-input").value.trim();
  if (!content || chatAbort) return;
  $("chat-input").value = "";
  chat.push({ role: "user", content });
  saveChat();
  answer();
});
$("chat-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("chat-form").requestSubmit();
  }
});
$("chat-stop").addEventListener("click", () => chatAbort?.abort());
$("chat-regenerate").addEventListener("click", () => {
  if (chat.length && chat[chat.length - 1].role === "assistant") chat.pop();
  if (chat.length) answer();
});
$("chat-clear").addEventListener("click", () => {
  chat = [];
  saveChat();
  renderChat();
});

// ---- complete ------------------------------------------------------------------------------

let completeAbort = null;

$("complete-run").addEventListener("click", async () => {
  const output = $("complete-output");
  const stats = $("complete-stats");
  output.textContent = "";
  stats.textContent = "";
  stats.dataset.stopReason = "";
  const stop = $("complete-stop").value.split("\n").filter((s) => s.length > 0);
  const body = {
    model: $("model").value,
    prompt: $("complete-prompt").value,
    max_tokens: numberOf("complete-max-tokens"),
    temperature: numberOf("complete-temperature"),
    top_k: numberOf("complete-top-k"),
    top_p: numberOf("complete-top-p"),
    min_p: numberOf("complete-min-p"),
    repeat_penalty: numberOf("complete-repeat-penalty"),
    seed: numberOf("complete-seed"),
    stop: stop.length ? stop : undefined,
    speculation: $("complete-speculation").value || undefined,
    ignore_eos: $("complete-ignore-eos").checked || undefined,
    prompt_progress: true,
    load_progress: true,
  };
  const bar = $("complete-progress");
  bar.value = 0;
  $("complete-progress-label").hidden = false;
  completeAbort = new AbortController();
  $("complete-run").disabled = true;
  $("complete-cancel").disabled = false;
  clearError();
  const write = painter(output);
  try {
    let loadTime;
    await stream("/api/v0/completions", body, (chunk, name) => {
      if (name === "load_progress") {
        loadTime = showLoad(stats, chunk);
        return;
      }
      if (chunk.progress !== undefined) bar.value = chunk.progress;
      const text = chunk.choices?.[0]?.text;
      if (text) write(text);
      if (chunk.stats) {
        write.flush();
        statsLine(stats, { ...chunk, loadTime });
      }
    }, completeAbort.signal);
  } catch (e) {
    write.flush();
    if (e.name === "AbortError") statsLine(stats, { stats: { stop_reason: "userStopped" } });
    else {
      if (e.lost) statsLine(stats, { lost: true });
      showError(e);
    }
  } finally {
    completeAbort = null;
    $("complete-run").disabled = false;
    $("complete-cancel").disabled = true;
  }
});
$("complete-cancel").addEventListener("click", () => completeAbort?.abort());

// ---- models --------------------------------------------------------------------------------

function mib(bytes) {
  return bytes ? (bytes / 1048576).toFixed(0) + " MiB" : "";
}

let refreshes = 0;

async function refreshModels() {
  const body = $("models-table").querySelector("tbody");
  // A refresh that answers after a later one (a slow list, then a load's) is not drawn.
  const mine = ++refreshes;
  try {
    const list = await api("/api/v1/models");
    if (mine !== refreshes) return;
    body.innerHTML = "";
    for (const m of list.models) {
      const row = document.createElement("tr");
      row.dataset.model = m.key;
      const cells = [m.key, m.type, m.architecture || "", m.quantization?.name || "", mib(m.size_bytes), m.max_context_length || ""];
      for (const c of cells) {
        const td = document.createElement("td");
        td.textContent = c;
        row.append(td);
      }
      const loaded = document.createElement("td");
      loaded.className = "instances";
      for (const instance of m.loaded_instances || []) {
        const unload = document.createElement("button");
        unload.type = "button";
        unload.className = "quiet";
        unload.textContent = "Unload " + instance.id;
        unload.addEventListener("click", () => act(() => api("/api/v1/models/unload", { instance_id: instance.id })));
        loaded.append(unload);
        const st = instance.state;
        if (st) {
          const line = document.createElement("span");
          line.className = "stats instance-state";
          const ttl = st.ttlLeftMs != null ? " · TTL left " + Math.round(st.ttlLeftMs / 1000) + " s" : "";
          line.textContent = st.slots + " slots · " + st.running + " running · " + st.queued + " queued" + ttl + " · " + st.memoryMib + " MiB" + (st.jit ? " · JIT" : "");
          loaded.append(document.createElement("br"), line, document.createElement("br"));
        }
      }
      row.append(loaded);
      const actions = document.createElement("td");
      const load = document.createElement("button");
      load.type = "button";
      load.className = "load";
      load.textContent = "Load";
      load.addEventListener("click", () => act(() => loadModel(m.key)));
      actions.append(load);
      row.append(actions);
      body.append(row);
    }
  } catch (e) {
    showError(e);
  }
}

/** The load settings of the form. */
function loadSettings(model) {
  return {
    model,
    context_length: numberOf("load-context"),
    parallel: numberOf("load-parallel"),
    ttl: numberOf("load-ttl"),
    gpu: $("load-gpu").value || undefined,
  };
}

/** Shows what the load takes (the server's estimate, before anything loads), then loads. */
async function loadModel(model) {
  const status = $("load-status");
  const settings = loadSettings(model);
  const { estimate: e, available_mib: available, fits } = await api("/api/v1/models/estimate", settings);
  const parts = "weights " + e.weightsMib + ", KV cache " + e.kvCacheMib + ", compute " + e.computeMib + ", prompt cache " + e.promptCacheMib;
  status.textContent = model + " needs about " + e.totalMib + " MiB (" + parts + ")" + (e.gpuMib ? ", " + e.gpuMib + " MiB on the GPU" : "") +
    (available != null ? "; " + available + " MiB available" : "") + (fits ? "; loading…" : "; more than is available");
  await api("/api/v1/models/load", settings);
  status.textContent = model + " loaded (about " + e.totalMib + " MiB)";
}

async function act(call) {
  clearError();
  try {
    await call();
  } catch (e) {
    showError(e);
  }
  await refreshModels();
  await refreshModelPicker();
}

$("models-refresh").addEventListener("click", refreshModels);

/** Starts a download on the server and follows its job until it ends. */
$("download-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const model = $("download-model").value.trim();
  if (!model) return;
  const status = $("download-status");
  const bar = $("download-progress");
  const mb = (b) => (b / 1048576).toFixed(1);
  clearError();
  $("download-run").disabled = true;
  try {
    let job = await api("/api/v1/models/download", { model });
    if (job.status === "already_downloaded") {
      status.textContent = model + " is already downloaded";
      return;
    }
    bar.hidden = false;
    while (job.status === "downloading") {
      bar.max = job.total_size_bytes || 1;
      bar.value = job.downloaded_bytes;
      status.textContent = mb(job.downloaded_bytes) + " of " + mb(job.total_size_bytes) + " MiB" +
        (job.bytes_per_second ? " (" + mb(job.bytes_per_second) + " MiB/s)" : "");
      await new Promise((r) => setTimeout(r, 300));
      job = await api("/api/v1/models/download/status/" + encodeURIComponent(job.job_id));
    }
    if (job.status === "failed") throw new Error("The download failed: " + (job.error || "no reason given"));
    bar.max = job.total_size_bytes || 1;
    bar.value = job.downloaded_bytes;
    status.textContent = model + " downloaded (" + mb(job.downloaded_bytes) + " MiB, checked)";
    await refreshModels();
    await refreshModelPicker();
  } catch (e) {
    showError(e);
  } finally {
    $("download-run").disabled = false;
  }
});

// ---- logs ----------------------------------------------------------------------------------

// Followed from the first visit of the page on (the server records prompts and answers only while
// someone listens), reconnecting when the connection drops.
let following = false;
const MAX_LOG_ITEMS = 2000;

function logKind(data) {
  return data.type === "llm.prediction.input" ? "input" : data.type === "llm.prediction.output" ? "output" : "server";
}

function showLog(event) {
  const data = event.data;
  const kind = logKind(data);
  const li = document.createElement("li");
  li.className = kind + " " + (data.level || "");
  li.dataset.kind = kind;
  const meta = document.createElement("span");
  meta.className = "meta";
  const when = new Date(event.timestamp).toLocaleTimeString();
  if (kind === "server") {
    meta.textContent = when + " · server · " + data.level;
    li.append(meta, data.content);
  } else {
    meta.textContent = when + " · " + (kind === "input" ? "prompt to " : "answer of ") + data.modelIdentifier;
    li.append(meta, kind === "input" ? data.input : data.output);
    if (kind === "output" && data.stats) {
      const stats = document.createElement("span");
      stats.className = "meta";
      statsLine(stats, { stats: { tokens_per_second: data.stats.tokensPerSecond, time_to_first_token: data.stats.timeToFirstTokenSec, stop_reason: data.stats.stopReason }, usage: { completion_tokens: data.stats.predictedTokensCount } });
      li.append(stats);
    }
  }
  filterOne(li);
  const list = $("logs");
  list.append(li);
  while (list.children.length > MAX_LOG_ITEMS) list.firstElementChild.remove();
  if (!$("page-logs").hidden) li.scrollIntoView({ block: "end" });
}

function filterOne(li) {
  const text = $("logs-filter").value.toLowerCase();
  li.hidden = !$("logs-" + li.dataset.kind).checked || (text !== "" && !li.textContent.toLowerCase().includes(text));
}

async function followLogs() {
  if (following) return;
  following = true;
  for (;;) {
    try {
      $("logs-state").textContent = "live";
      const res = await fetch("/logs?history=1", { headers: headers() });
      if (!res.ok) throw await failure(res);
      $("logs").innerHTML = "";
      await readEvents(res, (data) => showLog(JSON.parse(data)));
    } catch (e) {
      showError(e);
    }
    $("logs-state").textContent = "connection lost: reconnecting…";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

for (const id of ["logs-input", "logs-output", "logs-server", "logs-filter"]) {
  $(id).addEventListener("input", () => [...$("logs").children].forEach(filterOne));
}
$("logs-clear").addEventListener("click", () => { $("logs").innerHTML = ""; });
$("model").addEventListener("change", () => localStorage.setItem("lms.model", $("model").value));
window.addEventListener("hashchange", route);

renderChat();
refreshModelPicker();
route();
