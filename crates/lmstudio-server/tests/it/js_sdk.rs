//! LM Studio's JavaScript SDK (`@lmstudio/sdk`, installed from npm by the tests), unmodified,
//! against the real server. It validates every message against its schemas, so a field of the
//! wrong shape shows up here as a `communicationWarning` the SDK sends back (counted on
//! `/metrics`) or as a call that never resolves.

use std::net::SocketAddr;

use crate::{lms_client, metric, start_server};

/// What every script here starts with: `assert`, a logger that keeps what the SDK warns or errs
/// (each script checks it stays empty), and a limit for a call that never resolves.
const PREAMBLE: &str = r#"
const assert = require("node:assert/strict");
const logged = [];
const logger = {
  debug() {}, info() {},
  warn: (...a) => logged.push("warn: " + a.join(" ")),
  error: (...a) => logged.push("error: " + a.join(" ")),
};
setTimeout(() => { console.log("HUNG; logged: " + JSON.stringify(logged)); process.exit(3); }, 120000).unref();
"#;

/// Runs `script` after [`PREAMBLE`] against the server at `addr`.
fn run_node(script: &str, addr: SocketAddr) -> String {
    crate::run_node(&format!("{PREAMBLE}{script}"), addr)
}

/// The seed's flow, in JavaScript: load by name, complete, stream with callbacks, stats, model
/// info, cancel, respond, list, unload, load under an identifier. Everything the SDK logs as a
/// warning or an error fails the script.
const SEED_FLOW: &str = r#"
const { LMStudioClient } = require("@lmstudio/sdk");

(async () => {
  const client = new LMStudioClient({ baseUrl: process.env.BASE_URL, logger });
  const version = await client.system.getLMStudioVersion();
  assert.equal(typeof version.version, "string");
  const downloaded = await client.system.listDownloadedModels();
  assert.ok(downloaded.some(m => m.modelKey === "gemma-3-270m"), JSON.stringify(downloaded));
  const q = downloaded.find(m => m.modelKey === "gemma-3-270m").quantization;
  assert.deepEqual(q, { name: "Q4_K_M", bits: 4 });

  const model = await client.llm.model("gemma-3-270m");
  const info = await model.getModelInfo();
  assert.equal(info.displayName, "Gemma 3 270m");
  assert.equal(info.architecture, "gemma3");
  assert.ok(info.contextLength > 0 && info.maxContextLength >= info.contextLength);
  assert.ok((await model.getContextLength()) > 0);
  const any = await client.llm.model();
  assert.equal(any.identifier, model.identifier);

  const greedy = { maxTokens: 6, temperature: 0, repeatPenalty: 1 };
  const done = await model.complete("1, 2, 3,", greedy);
  assert.equal(done.content, " 4, 5,");
  assert.equal(done.stats.stopReason, "maxPredictedTokensReached");
  assert.equal(done.stats.predictedTokensCount, 6);
  assert.ok(done.stats.timeToFirstTokenSec > 0 && done.stats.tokensPerSecond > 0);
  assert.equal(done.modelInfo.identifier, model.identifier);

  // Streaming with callbacks: progress up to 1, the first token, each fragment.
  const progress = [], fragments = [];
  let firstToken = 0;
  const stream = model.complete("1, 2, 3,", {
    ...greedy,
    onPromptProcessingProgress: p => progress.push(p),
    onFirstToken: () => firstToken++,
    onPredictionFragment: f => fragments.push(f.content),
  });
  const iterated = [];
  for await (const fragment of stream) iterated.push(fragment.content);
  const streamed = await stream.result();
  assert.equal(iterated.join(""), " 4, 5,");
  assert.equal(fragments.join(""), " 4, 5,");
  assert.equal(streamed.content, " 4, 5,");
  assert.equal(firstToken, 1);
  assert.equal(progress[progress.length - 1], 1);

  // Cancel after two fragments of a prediction that could run for 500 tokens.
  const long = model.complete("Once upon a time", { maxTokens: 500, temperature: 0 });
  let n = 0;
  for await (const _ of long) { if (++n === 2) long.cancel(); }
  const cancelled = await long.result();
  assert.equal(cancelled.stats.stopReason, "userStopped");
  assert.ok(cancelled.stats.predictedTokensCount < 500);

  // Chat.
  const reply = await model.respond([{ role: "user", content: "Say hello." }], { maxTokens: 8, temperature: 0 });
  assert.equal(typeof reply.content, "string");
  assert.ok(reply.stats.predictedTokensCount > 0);

  const loaded = await client.llm.listLoaded();
  assert.ok(loaded.some(m => m.identifier === model.identifier));
  const named = await client.llm.load("gemma-3-270m", { identifier: "js-named", config: { contextLength: 1024 } });
  assert.equal(named.identifier, "js-named");
  assert.equal(await named.getContextLength(), 1024);
  await named.unload();
  assert.ok(!(await client.llm.listLoaded()).some(m => m.identifier === "js-named"));

  assert.deepEqual(logged, []);
  console.log("JS OK");
})().catch(e => { console.log("JS FAILED: " + (e && e.stack || e) + "\nlogged: " + JSON.stringify(logged)); process.exit(1); });
"#;

/// Issue 13, item 1: the JS SDK runs the seed's flow, and sends not one communication warning
/// (it sends one for every message of ours it cannot validate).
#[test]
fn js_sdk_runs_the_seed_flow_without_a_warning() {
    let addr = start_server(lms_client(2), None);
    let out = run_node(SEED_FLOW, addr);
    assert!(out.contains("JS OK"), "{out}");
    assert_eq!(metric(addr, "lms_client_warnings_total"), 0, "the SDK warned about our messages");
}

/// Issue 28: tools through the JS SDK. `respond` with `rawTools` forced (`force`: a grammar holds
/// the call to the schema, so the model's judgement does not matter): the call reaches the tool
/// callbacks, no text. `act` with tools (the SDK sends no choice: the model chooses, its choice is
/// not judged): whatever it calls runs with arguments that fit, and the result goes back.
const TOOLS: &str = r#"
const { LMStudioClient, rawFunctionTool } = require("@lmstudio/sdk");

(async () => {
  const client = new LMStudioClient({ baseUrl: process.env.BASE_URL, logger });
  const model = await client.llm.model("gemma-3-270m");
  const schema = { type: "object", properties: { city: { type: "string", minLength: 1, maxLength: 20 },
    unit: { enum: ["C", "F"] } }, required: ["city", "unit"], additionalProperties: false };
  const fits = a => {
    assert.deepEqual(Object.keys(a).sort(), ["city", "unit"], JSON.stringify(a));
    assert.ok(a.city.length >= 1 && a.city.length <= 20 && ["C", "F"].includes(a.unit), JSON.stringify(a));
  };
  const names = [], ends = [], fragments = [];
  const r = await model.respond("What is the weather in Oslo?", {
    rawTools: { type: "toolArray", force: true, tools: [{ type: "function",
      function: { name: "get_weather", description: "The weather now in a city", parameters: schema } }] },
    maxTokens: 400, seed: 1,
    onPredictionFragment: f => fragments.push(f.content),
    onToolCallRequestNameReceived: (id, name) => names.push(name),
    onToolCallRequestEnd: (id, info) => ends.push(info.toolCallRequest),
  });
  assert.equal(r.stats.stopReason, "toolCalls");
  assert.equal(r.content + fragments.join(""), "", "call syntax shown as text");
  // Parallel calls are allowed (the SDK cannot say otherwise): at most 8, each whole.
  assert.ok(ends.length >= 1 && ends.length <= 8 && names.length === ends.length, JSON.stringify(ends));
  for (const call of ends) {
    assert.equal(call.name, "get_weather");
    assert.equal(typeof call.id, "string");
    fits(call.arguments);
  }

  const ran = [];
  const weather = rawFunctionTool({ name: "get_weather", description: "The weather now in a city",
    parametersJsonSchema: schema, implementation: args => { fits(args); ran.push(args); return { temperature: 21 }; } });
  const messages = [], starts = [];
  const act = await model.act("What is the weather in Oslo?", [weather], {
    maxPredictionRounds: 2, maxTokens: 400, seed: 2,
    onMessage: m => messages.push(m), onRoundStart: i => starts.push(i),
  });
  assert.ok(act.rounds >= 1 && act.rounds <= 2, String(act.rounds));
  assert.deepEqual(starts, [...Array(act.rounds).keys()]);
  if (ran.length > 0) {
    const calls = messages[0].getToolCallRequests();
    assert.equal(calls.length, ran.length);
    const results = messages[1].getToolCallResults();
    assert.equal(results[0].toolCallId, calls[0].id);
    assert.equal(results[0].content, JSON.stringify({ temperature: 21 }));
  } else {
    assert.equal(messages.length, 1);
  }
  assert.deepEqual(logged, []);
  console.log("JS TOOLS OK rounds=" + act.rounds + " calls=" + ran.length);
  process.exit(0);
})().catch(e => { console.log("FAILED: " + (e.stack || e) + "; logged: " + JSON.stringify(logged)); process.exit(1); });
"#;

#[test]
fn js_sdk_calls_tools() {
    let addr = start_server(lms_client(2), None);
    let out = run_node(TOOLS, addr);
    assert!(out.contains("JS TOOLS OK"), "{out}");
    assert_eq!(metric(addr, "lms_client_warnings_total"), 0, "the SDK warned about our messages");
}

/// Issue 29: the JS SDK's embedding namespace, on a nomic-bert of random weights (an encoder:
/// LM Studio's type `embedding`) beside the default model: load, info, embed one text and several,
/// tokenize, count, list, unload, with no warning from the SDK.
const EMBEDDING: &str = r#"
const { LMStudioClient } = require("@lmstudio/sdk");

(async () => {
  const client = new LMStudioClient({ baseUrl: process.env.BASE_URL, logger });
  const downloaded = await client.system.listDownloadedModels();
  const kinds = Object.fromEntries(downloaded.map(m => [m.modelKey, m.type]));
  assert.equal(kinds["nomic-embed-text-v1.5"], "embedding", JSON.stringify(kinds));
  const model = await client.embedding.model("nomic-embed-text-v1.5");
  const info = await model.getModelInfo();
  assert.equal(info.type, "embedding");
  assert.equal(info.architecture, "nomic-bert");
  assert.equal(await model.getContextLength(), 2048);
  const one = await model.embed("Hello, world!");
  assert.equal(one.embedding.length, 768);
  const norm = Math.sqrt(one.embedding.reduce((s, x) => s + x * x, 0));
  assert.ok(Math.abs(norm - 1) < 1e-4, String(norm));
  const two = await model.embed(["Hello, world!", "Goodbye, world!"]);
  assert.equal(two.length, 2);
  assert.ok(one.embedding.every((x, i) => Math.abs(x - two[0].embedding[i]) < 1e-5));
  const tokens = await model.tokenize("Hello, world!");
  assert.equal(tokens.length, (await model.countTokens("Hello, world!")) + 2);
  const loaded = await client.embedding.listLoaded();
  assert.deepEqual(loaded.map(m => m.identifier), ["nomic-embed-text-v1.5"]);
  await model.unload();
  assert.deepEqual(await client.embedding.listLoaded(), []);
  assert.deepEqual(logged, []);
  console.log("JS EMBEDDING OK");
})().catch(e => { console.log("FAILED: " + (e.stack || e) + "; logged: " + JSON.stringify(logged)); process.exit(1); });
"#;

#[test]
fn js_sdk_embeds() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.f16.gguf");
    lms_test_support::random_gguf("nomic-bert", &file, &[]);
    let client = lmstudio::Client::with_load_config(lmstudio::ModelStore::new(dir.path()), Default::default());
    let addr = start_server(client, None);
    let out = run_node(EMBEDDING, addr);
    assert!(out.contains("JS EMBEDDING OK"), "{out}");
    assert_eq!(metric(addr, "lms_client_warnings_total"), 0, "the SDK warned about our messages");
}

/// Issue 31: LM Studio's `client.diagnostics.unstable_streamLogs` (what LM Studio's `lms log
/// stream` reads): a chat's prompt arrives as the model reads it, through the model's template,
/// with the instance's identifier; the SDK finds nothing to warn about in the events; the stream
/// ends when the SDK's stop function asks.
const STREAM_LOGS: &str = r#"
const { LMStudioClient } = require("@lmstudio/sdk");

(async () => {
  const client = new LMStudioClient({ baseUrl: process.env.BASE_URL, logger });
  const logs = [];
  const stop = client.diagnostics.unstable_streamLogs(log => logs.push(log));
  const model = await client.llm.model("gemma-3-270m");
  await new Promise(r => setTimeout(r, 300)); // the channel is open once the server has it
  await model.respond([{ role: "user", content: "Name a color." }], { maxTokens: 3 });
  for (let i = 0; i < 50 && logs.length === 0; i++) await new Promise(r => setTimeout(r, 100));
  stop();
  // The server ends the stream when asked (the SDK sends "stop") while the client stays connected.
  const metrics = process.env.BASE_URL.replace(/^ws/, "http") + "/metrics";
  let streams = NaN;
  for (let i = 0; i < 50 && streams !== 0; i++) {
    if (i > 0) await new Promise(r => setTimeout(r, 100));
    streams = Number(((await (await fetch(metrics)).text()).match(/^lms_log_streams (\d+)$/m) || [])[1]);
  }
  assert.equal(streams, 0, "the log stream outlived its stop");
  const input = logs.find(l => l.data.type === "llm.prediction.input");
  assert.ok(input, JSON.stringify(logs));
  assert.ok(input.data.input.includes("<start_of_turn>user\nName a color.<end_of_turn>"), input.data.input);
  assert.equal(input.data.modelIdentifier, model.identifier);
  assert.ok(input.data.modelPath.endsWith(".gguf"), input.data.modelPath);
  assert.ok(Math.abs(input.timestamp - Date.now()) < 60000, String(input.timestamp));
  assert.deepEqual(logged, []);
  console.log("JS LOGS OK");
  process.exit(0);
})().catch(e => { console.log("FAILED: " + (e.stack || e) + "; logged: " + JSON.stringify(logged)); process.exit(1); });
"#;

#[test]
fn js_sdk_streams_the_prompt_log() {
    let addr = start_server(lms_client(2), None);
    let out = run_node(STREAM_LOGS, addr);
    assert!(out.contains("JS LOGS OK"), "{out}");
    assert_eq!(metric(addr, "lms_client_warnings_total"), 0, "the SDK warned about our messages");
}
