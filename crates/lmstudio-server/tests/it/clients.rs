//! The real server on loopback, driven by LM Studio's unmodified Python SDK and the `openai`
//! package, running every example of the seed page.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use crate::{lms_client, run_python, start_server, start_server_with, test_config};

fn shared_server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| start_server(lms_client(4), None))
}

const SEED_EXAMPLES: &str = r#"
import os
import lmstudio as lms

lms.configure_default_client(os.environ["HOST"])

# 1. Instantiate a model (by name, loading it on first use), then the no-name form.
model = lms.llm("gemma-3-270m")
assert lms.llm().identifier == model.identifier

# 2. Generate a completion; 3. print prediction stats.
result = model.complete("My name is", config={"maxTokens": 100, "temperature": 0.6})
print(result)
assert isinstance(result.content, str) and result.content
assert result.model_info.display_name == "Gemma 3 270m"
# Unseeded sampling may end the text early.
stats = result.stats
assert (stats.stop_reason, stats.predicted_tokens_count) == ("maxPredictedTokensReached", 100) or (
    stats.stop_reason == "eosFound" and stats.predicted_tokens_count < 100), stats
assert result.stats.time_to_first_token_sec > 0
assert result.stats.prompt_tokens_count == 4

# Greedy completions are deterministic.
greedy = {"maxTokens": 6, "temperature": 0, "repeatPenalty": 1}
assert model.complete("1, 2, 3,", config=greedy).content == " 4, 5,"

# The terminal simulator: complete_stream with stopStrings ["$"].
console_history = ["$ ls", "Documents  Music  notes.txt", "$ cat notes.txt"]
prediction_stream = model.complete_stream("\n".join(console_history), config={"stopStrings": ["$"], "maxTokens": 60})
text = "".join(fragment.content for fragment in prediction_stream)
final = prediction_stream.result()
assert final.content == text and "$" not in text
assert final.stats.stop_reason in ("stopStringFound", "maxPredictedTokensReached", "eosFound")

# result() raises while the prediction runs; wait_for_result() blocks until done.
stream = model.complete_stream("Once upon a time", config={"maxTokens": 20})
try:
    stream.result()
    raise AssertionError("result() returned while running")
except Exception as e:
    assert "AssertionError" not in type(e).__name__
stats = stream.wait_for_result().stats
assert (stats.stop_reason, stats.predicted_tokens_count) == ("maxPredictedTokensReached", 20) or (
    stats.stop_reason == "eosFound" and stats.predicted_tokens_count < 20), stats

# Progress and the other three callbacks.
events = []
completion = model.complete(
    "apple banana cherry " * 300 + "My name is",
    config={"maxTokens": 5},
    on_prompt_processing_progress=lambda p: events.append(("progress", p)),
    on_first_token=lambda: events.append(("first",)),
    on_prediction_fragment=lambda f: events.append(("fragment", f.content)),
    on_message=lambda m: events.append(("message", m)),
)
progress = [e[1] for e in events if e[0] == "progress"]
assert progress[0] == 0.0 and progress[-1] == 1.0 and len(progress) >= 3, progress
assert all(a < b for a, b in zip(progress, progress[1:])), progress
kinds = [e[0] for e in events]
assert kinds.count("first") == 1 and kinds.index("first") > kinds.index("progress")
assert "".join(e[1] for e in events if e[0] == "fragment") == completion.content
assert kinds[-1] == "message"

# Cancel: the result comes back with userStopped. (Greedy, so that it cannot end before the
# first fragment.)
stream = model.complete_stream("Once upon a time", config={"maxTokens": 500, "temperature": 0})
it = iter(stream)
next(it)
stream.cancel()
for _ in it:
    pass
assert stream.result().stats.stop_reason == "userStopped"

# Model info, tokens, load config, listing.
assert model.get_info().identifier == model.identifier
assert model.get_context_length() == 2048, model.get_context_length()
assert model.count_tokens("hello world") == len(model.tokenize("hello world"))
assert [m.identifier for m in lms.list_loaded_models()] == [model.identifier]
assert any(m.model_key == "gemma-3-270m" for m in lms.list_downloaded_models())

# Structured output: a pydantic class as the response format; the result's `parsed`.
from pydantic import BaseModel, Field
class Answer(BaseModel):
    answer: bool
    reason: str = Field(max_length=40)  # bounded, so that no seed outruns maxTokens
r = model.complete("Is water wet? As JSON:", response_format=Answer, config={"maxTokens": 300, "seed": 4})
assert r.stats.stop_reason == "eosFound" and set(r.parsed) == {"answer", "reason"}, r
assert isinstance(r.parsed["answer"], bool)

# Speculative decoding with a draft model (the model as its own), and its stats by LM Studio's names.
r = model.complete("1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4,", config={"draftModel": "gemma-3-270m",
    "maxTokens": 12, "temperature": 0, "repeatPenalty": 1, "speculativeDecodingMinContinueDraftingProbability": 0.5})
plain = model.complete("1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4,", config={"maxTokens": 12, "temperature": 0, "repeatPenalty": 1})
assert r.content == plain.content, (r.content, plain.content)
assert r.stats.used_draft_model_key == "gemma-3-270m", r.stats
assert r.stats.accepted_draft_tokens_count > 0 and r.stats.total_draft_tokens_count == (
    r.stats.accepted_draft_tokens_count + r.stats.rejected_draft_tokens_count + r.stats.ignored_draft_tokens_count), r.stats
assert plain.stats.used_draft_model_key is None
try:
    lms.llm("no-such-model")
    raise AssertionError("loaded a model that does not exist")
except lms.LMStudioModelNotFoundError:
    pass
print("SDK OK")
"#;

#[test]
fn python_sdk_runs_the_seed_examples() {
    let out = run_python(SEED_EXAMPLES, shared_server());
    assert!(out.contains("SDK OK"), "{out}");
}

const OPENAI: &str = r#"
import os
from openai import OpenAI, NotFoundError

client = OpenAI(base_url=f"http://{os.environ['HOST']}/v1", api_key="unused")
assert "gemma-3-270m" in [m.id for m in client.models.list().data]
c = client.completions.create(model="gemma-3-270m", prompt="1, 2, 3,", max_tokens=6, temperature=0, extra_body={"repeat_penalty": 1})
assert c.choices[0].text == " 4, 5,", c
assert c.choices[0].finish_reason == "length" and c.usage.completion_tokens == 6
chat = client.chat.completions.create(model="gemma-3-270m", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8, seed=3)
assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens <= 8
# llama.cpp's ignore_eos: the answer runs to max_tokens whatever this base model would say.
chunks = list(client.chat.completions.create(
    model="gemma-3-270m", messages=[{"role": "user", "content": "Say hey"}], max_tokens=8, seed=3, stream=True,
    extra_body={"ignore_eos": True}))
assert chunks[0].choices[0].delta.role == "assistant"
assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
assert chunks[-1].choices[0].finish_reason == "length"
text = "".join(ch.choices[0].text for ch in client.completions.create(
    model="gemma-3-270m", prompt="1, 2, 3,", max_tokens=6, temperature=0, stream=True, extra_body={"repeat_penalty": 1}))
assert text == " 4, 5,", text
try:
    client.completions.create(model="nope", prompt="x")
    raise AssertionError("unknown model accepted")
except NotFoundError:
    pass
# Structured output: a JSON schema, and any JSON object.
import json
schema = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]},
          "population": {"type": "integer", "minimum": 0, "maximum": 99999999}},
          "required": ["city", "population"], "additionalProperties": False}
c = client.chat.completions.create(model="gemma-3-270m", messages=[{"role": "user", "content": "A city?"}],
    max_tokens=200, seed=1, response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}})
v = json.loads(c.choices[0].message.content)
assert v["city"] in ("Paris", "Rome") and isinstance(v["population"], int), v
c = client.completions.create(model="gemma-3-270m", prompt="A JSON object:", max_tokens=60, seed=2,
    extra_body={"response_format": {"type": "json_object"}})
assert c.choices[0].finish_reason == "length" or isinstance(json.loads(c.choices[0].text), dict), c
print("OPENAI OK")
"#;

#[test]
fn openai_client_works() {
    let out = run_python(OPENAI, shared_server());
    assert!(out.contains("OPENAI OK"), "{out}");
}

/// Issue 28: tools through the `openai` package. The default model's template has no tool syntax,
/// so calls take the generic form, constrained: a named or required call parses and validates
/// whatever the seed; with `auto` the model's choice is not judged, only its form.
const OPENAI_TOOLS: &str = r#"
import os, json
import jsonschema
from openai import OpenAI, BadRequestError

client = OpenAI(base_url=f"http://{os.environ['HOST']}/v1", api_key="unused")
weather = {"type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 20},
           "unit": {"enum": ["C", "F"]}}, "required": ["city", "unit"], "additionalProperties": False}
clock = {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 12}}, "required": ["zone"]}
tools = [{"type": "function", "function": {"name": "get_weather", "description": "The weather now in a city", "parameters": weather}},
         {"type": "function", "function": {"name": "get_time", "description": "The time now in a zone", "parameters": clock}}]
schemas = {"get_weather": weather, "get_time": clock}
messages = [{"role": "user", "content": "What is the weather in Oslo?"}]

c = client.chat.completions.create(model="gemma-3-270m", messages=messages, tools=tools, max_tokens=200, seed=1,
    parallel_tool_calls=False, tool_choice={"type": "function", "function": {"name": "get_weather"}})
choice = c.choices[0]
assert choice.finish_reason == "tool_calls" and choice.message.content is None, c
call = choice.message.tool_calls[0]
assert len(choice.message.tool_calls) == 1 and call.type == "function" and call.id.startswith("call_"), c
assert call.function.name == "get_weather", c
jsonschema.validate(json.loads(call.function.arguments), weather)
# The message as the package read it goes back as it is (`refusal`, `audio`... null), with its result.
again = messages + [choice.message.model_dump(), {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
c = client.chat.completions.create(model="gemma-3-270m", messages=again, tools=tools, tool_choice="none", max_tokens=4)
assert c.choices[0].message.tool_calls is None, c

# Streamed: no text, the call in deltas whose arguments concatenate to JSON that validates.
chunks = list(client.chat.completions.create(model="gemma-3-270m", messages=messages, tools=tools, max_tokens=200,
    seed=2, parallel_tool_calls=False, tool_choice="required", stream=True))
assert chunks[0].choices[0].delta.role == "assistant", chunks[0]
assert not "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices), "call syntax shown as text"
calls = {}
for ch in chunks:
    for d in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
        entry = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
        entry["id"] = d.id or entry["id"]
        entry["name"] += d.function.name or ""
        entry["arguments"] += d.function.arguments or ""
assert len(calls) == 1 and chunks[-1].choices[0].finish_reason == "tool_calls", chunks[-1]
first = calls[0]
jsonschema.validate(json.loads(first["arguments"]), schemas[first["name"]])

# The round trip: the call and its result go back; the model answers as it chooses.
messages += [{"role": "assistant", "content": None, "tool_calls": [{"id": first["id"], "type": "function",
              "function": {"name": first["name"], "arguments": first["arguments"]}}]},
             {"role": "tool", "tool_call_id": first["id"], "content": json.dumps({"temperature": 21, "unit": "C"})}]
c = client.chat.completions.create(model="gemma-3-270m", messages=messages, tools=tools, max_tokens=60, seed=3)
choice = c.choices[0]
if choice.finish_reason == "tool_calls":
    for call in choice.message.tool_calls:
        jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])
else:
    assert choice.message.tool_calls is None and "tool_calls" not in (choice.message.content or ""), c

# `none`: no tools offered, plain text.
c = client.chat.completions.create(model="gemma-3-270m", messages=messages[:1], tools=tools, tool_choice="none",
    max_tokens=8, seed=4)
assert c.choices[0].message.tool_calls is None and c.choices[0].finish_reason in ("stop", "length"), c
# A tool that is not offered, and a tool message without its call: 400s that say so.
for bad in [dict(tools=tools, tool_choice={"type": "function", "function": {"name": "nope"}}, messages=messages[:1]),
            dict(messages=[{"role": "tool", "content": "21"}])]:
    try:
        client.chat.completions.create(model="gemma-3-270m", **bad)
        raise AssertionError(f"accepted: {bad}")
    except BadRequestError as e:
        assert "nope" in str(e) or "tool_call_id" in str(e), e
print("TOOLS OK")
"#;

#[test]
fn openai_client_calls_tools() {
    let out = run_python(OPENAI_TOOLS, shared_server());
    assert!(out.contains("TOOLS OK"), "{out}");
}

/// Issue 28: tools through LM Studio's Python SDK. `respond` with `rawTools` forced (`force`):
/// the answer is a call (stop reason `toolCalls`) and no text, whatever the model would choose.
/// `act` (the SDK sends no choice: the model's is not judged): what it calls runs with arguments
/// that fit, the results go back, the rounds end.
const SDK_TOOLS: &str = r#"
import os
import jsonschema
import lmstudio as lms
from lmstudio import Chat

lms.configure_default_client(os.environ["HOST"])
model = lms.llm("gemma-3-270m")
schema = {"type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 20},
          "unit": {"enum": ["C", "F"]}}, "required": ["city", "unit"], "additionalProperties": False}
raw = {"type": "toolArray", "force": True, "tools": [{"type": "function",
       "function": {"name": "get_weather", "description": "The weather now in a city", "parameters": schema}}]}
fragments = []
r = model.respond("What is the weather in Oslo?", config={"rawTools": raw, "maxTokens": 400, "seed": 1},
                  on_prediction_fragment=lambda f: fragments.append(f.content))
assert r.stats.stop_reason == "toolCalls", r.stats
assert r.content == "" and "".join(fragments) == "", "call syntax shown as text"

ran = []
def get_weather(city: str, unit: str) -> str:
    """The weather now in a city"""
    ran.append({"city": city, "unit": unit})
    return "21 degrees"

chat = Chat()
chat.add_user_message("What is the weather in Oslo?")
predictions, messages = [], []
result = model.act(chat, [get_weather], max_prediction_rounds=2, config={"maxTokens": 400, "seed": 2},
                   on_prediction_completed=predictions.append, on_message=messages.append)
assert 1 <= result.rounds <= 2 and len(predictions) == result.rounds, result
if result.rounds == 2:
    # The model called: its calls ran on arguments that fit, their results went back in order.
    assert len(messages) == 3, messages
    calls = [p.tool_call_request for p in messages[0].content if p.type == "toolCallRequest"]
    results = messages[1].content
    # The SDK puts results in the order they finish.
    assert calls and sorted(r.tool_call_id for r in results) == sorted(c.id for c in calls), messages
    # The schema the SDK made of the function's signature: two strings.
    signature = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                 "required": ["city", "unit"], "additionalProperties": False}
    for call in calls:
        jsonschema.validate(dict(call.arguments), signature)
    assert [r.content for r in results] == ['"21 degrees"'] * len(calls), messages
    assert sorted(map(str, ran)) == sorted(str(dict(c.arguments)) for c in calls), (ran, calls)
else:
    assert len(messages) == 1 and not ran and predictions[0].stats.stop_reason != "toolCalls", (messages, predictions)
print("SDK TOOLS OK", result.rounds, ran)
"#;

#[test]
fn python_sdk_calls_tools() {
    let out = run_python(SDK_TOOLS, shared_server());
    assert!(out.contains("SDK TOOLS OK"), "{out}");
}

/// Sends one HTTP/1.1 request on a fresh connection.
fn request(addr: SocketAddr, request_line: &str, body: &str) -> TcpStream {
    let mut sock = TcpStream::connect(addr).expect("connects");
    let head = "Host: localhost\r\nConnection: close\r\nContent-Type: application/json";
    write!(sock, "{request_line} HTTP/1.1\r\n{head}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).expect("sends");
    sock
}

/// One HTTP/1.1 exchange on a fresh connection; returns the response's body.
fn http(addr: SocketAddr, request_line: &str, body: &str) -> String {
    let mut response = String::new();
    request(addr, request_line, body).read_to_string(&mut response).expect("reads");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or(response)
}

/// Starts a streaming completion that cannot end by itself, reads one event, and hangs up.
fn abandon_stream(addr: SocketAddr) {
    let body =
        r#"{"model":"gemma-3-270m","prompt":"Once upon a time","stream":true,"temperature":0,"ignore_eos":true}"#;
    let mut reader = BufReader::new(request(addr, "POST /v1/completions", body));
    let mut line = String::new();
    while reader.read_line(&mut line).expect("reads") > 0 {
        if line.contains("data: {") {
            return; // dropping the socket hangs up mid-stream
        }
        line.clear();
    }
    panic!("no event arrived");
}

/// The value of a gauge on `/metrics`.
fn gauge(addr: SocketAddr, name: &str) -> u64 {
    let metrics = http(addr, "GET /metrics", "");
    let line = metrics.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).unwrap_or_else(|| panic!("{metrics}"));
    line.parse().unwrap_or_else(|_| panic!("{name}: {line}"))
}

#[test]
fn a_client_that_hangs_up_frees_its_slot() {
    // Two slots: the abandoned prediction in one (unlimited, it would run to the end of its 2,048
    // tokens), the next requests in the other.
    let addr = start_server(lms_client(2), None);
    abandon_stream(addr);
    // The server sees the hang-up when a write fails, a token or two later, and the engine stops
    // the prediction at its next step: within one request of 16 tokens. Up to four are allowed;
    // the abandoned prediction would outlast a hundred.
    let next = r#"{"model":"gemma-3-270m","prompt":"1, 2, 3,","max_tokens":16,"temperature":0,"ignore_eos":true}"#;
    let freed = (0..4).any(|_| {
        let body = http(addr, "POST /v1/completions", next);
        assert!(body.contains(r#""completion_tokens":16"#), "{body}");
        gauge(addr, "lms_predictions_running") == 0
    });
    assert!(freed, "the abandoned prediction kept its slot:\n{}", http(addr, "GET /metrics", ""));
    assert_eq!(gauge(addr, "lms_predictions_queued"), 0);
    assert_eq!(gauge(addr, "lms_prediction_slots"), 2);
}

/// Issue 12, D5: a non-streaming client that hangs up leaves no prediction counted: the gauges come
/// from the engine, which counts the prediction until it ends.
#[test]
fn a_non_streaming_client_that_hangs_up_leaves_the_gauges_at_0() {
    let addr = start_server(lms_client(1), None);
    let body =
        r#"{"model":"gemma-3-270m","prompt":"Once upon a time","max_tokens":16,"temperature":0,"ignore_eos":true}"#;
    drop(request(addr, "POST /v1/completions", body));
    // One slot: this one runs after the abandoned one, whether or not that one was stopped.
    let next = http(addr, "POST /v1/completions", body);
    assert!(next.contains(r#""completion_tokens":16"#), "{next}");
    assert_eq!((gauge(addr, "lms_predictions_running"), gauge(addr, "lms_predictions_queued")), (0, 0));
}

/// Whether the server closes `sock` (reads end) before `within` passes, sending nothing back.
fn closed_by_server(sock: &mut TcpStream, within: Duration) -> bool {
    sock.set_read_timeout(Some(within)).expect("timeout");
    match sock.read(&mut [0u8; 256]) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// Issue 12, D3: a client that sends half a request head and stops is closed after the header-read
/// timeout (1 s here), as is an idle connection that never sends anything; a whole request on a
/// fresh connection is served meanwhile.
#[test]
fn a_client_that_never_finishes_its_headers_is_closed() {
    let config = lmstudio_server::ServerConfig { header_read_timeout: Duration::from_secs(1), ..test_config() };
    let addr = start_server_with(lms_client(1), config);
    let mut slow = TcpStream::connect(addr).expect("connects");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: local").expect("sends");
    let mut idle = TcpStream::connect(addr).expect("connects");
    assert!(http(addr, "GET /health", "").contains("ok"));
    // Far longer than the timeout: only a server that never closes them fails this.
    assert!(closed_by_server(&mut slow, Duration::from_secs(30)), "a half-sent head was kept open");
    assert!(closed_by_server(&mut idle, Duration::from_secs(30)), "an idle connection was kept open");
}

/// Issue 12, D3: connections beyond `max_connections` are closed as soon as they are accepted;
/// once one of those held closes, a new one is served again.
#[test]
fn connections_beyond_the_cap_are_closed_at_once() {
    let config = lmstudio_server::ServerConfig { max_connections: 3, ..test_config() };
    let addr = start_server_with(lms_client(1), config);
    let mut held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).expect("connects")).collect();
    // The cap is per served connection: wait until the server has taken all three.
    let mut extra = TcpStream::connect(addr).expect("the kernel accepts");
    assert!(closed_by_server(&mut extra, Duration::from_secs(30)), "a 4th connection was served");
    held.pop();
    let served = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        let mut response = String::new();
        let _ = request(addr, "GET /health", "").read_to_string(&mut response);
        response.contains("ok")
    });
    assert!(served, "no connection was served after one of the three closed");
    drop(held);
}

const DUPLICATES: &str = r#"
import os, re
import lmstudio as lms

client = lms.Client(os.environ["HOST"])
small = {"contextLength": 512}
client.llm.load_new_instance("gemma-3-270m", "dup-id", config=small)
try:
    client.llm.load_new_instance("gemma-3-270m", "dup-id", config=small)
    raise SystemExit("a duplicate identifier was accepted")
except lms.LMStudioServerError as e:
    # LM Studio's own test suite matches exactly this.
    assert re.search("Model load error.*already exists", str(e)), str(e)
first = client.llm.load_new_instance("gemma-3-270m", config=small)
second = client.llm.load_new_instance("gemma-3-270m", config=small)
assert (first.identifier, second.identifier) == ("gemma-3-270m", "gemma-3-270m:2"), (first, second)
client.llm.unload("gemma-3-270m")
client.llm.unload("dup-id")
found = client.llm.model("gemma-3-270m").identifier
assert found == "gemma-3-270m:2", (found, [m.identifier for m in client.llm.list_loaded()])
print("DUPLICATES OK")
"#;

/// Issue 13, item 5, through LM Studio's Python SDK: a duplicate identifier fails as LM Studio's
/// suite expects; loads without one are named `key`, `key:2`; the key finds `key:2`.
#[test]
fn python_sdk_sees_instances_named_as_lm_studio_names_them() {
    let out = run_python(DUPLICATES, start_server(lms_client(1), None));
    assert!(out.contains("DUPLICATES OK"), "{out}");
}

const NO_SUCH_PRESET: &str = r#"
import os
import lmstudio as lms

client = lms.Client(os.environ["HOST"])
model = client.llm.model("gemma-3-270m")
for stream in (False, True):
    try:
        if stream:
            prediction = model.complete_stream("Some text", preset="No such preset")
            prediction.wait_for_result()
        else:
            model.complete("Some text", preset="No such preset")
        raise SystemExit("an unknown preset was accepted")
    except lms.LMStudioPresetNotFoundError as e:
        assert "No such preset" in str(e), str(e)
print("PRESET OK")
"#;

/// Issue 13, item 4, as LM Studio's suite checks it (`test_invalid_preset_request_*`): an unknown
/// preset is `LMStudioPresetNotFoundError` in the Python SDK, streaming or not.
#[test]
fn python_sdk_gets_preset_not_found() {
    let out = run_python(NO_SUCH_PRESET, shared_server());
    assert!(out.contains("PRESET OK"), "{out}");
}
