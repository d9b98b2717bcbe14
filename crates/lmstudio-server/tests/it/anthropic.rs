//! Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) driven by the official
//! `anthropic` package against the real server and the default model. Calls are forced (`tool`,
//! `any`: a grammar holds them to the schema), so they parse and validate whatever the seed; what
//! the model chooses with `auto` is not judged, only its form.

use crate::{lms_client, run_python, start_server};

const MESSAGES: &str = r#"
import os, json
import jsonschema
import anthropic
from anthropic import Anthropic

client = Anthropic(base_url=f"http://{os.environ['HOST']}", api_key="unused")
model = "gemma-3-270m"
ask = [{"role": "user", "content": "Name three colours."}]

# Text, greedy: whole and streamed alike; usage counts the prompt (processed plus cached).
# (The package of 2026 has no `temperature`: older clients and agents send it, so it is taken.)
greedy = {"extra_body": {"temperature": 0}}
m = client.messages.create(model=model, max_tokens=12, system="Be brief.", messages=ask, **greedy)
assert m.type == "message" and m.role == "assistant" and m.model == model and m.id.startswith("msg_"), m
assert [b.type for b in m.content] == ["text"] and m.stop_reason in ("end_turn", "max_tokens"), m
text = m.content[0].text
assert len(text) >= 4, m
with client.messages.stream(model=model, max_tokens=12, system="Be brief.", messages=ask, **greedy) as s:
    streamed = "".join(s.text_stream)
    final = s.get_final_message()
assert streamed == text == final.content[0].text, (streamed, text, final)
assert final.stop_reason == m.stop_reason and final.usage.output_tokens == m.usage.output_tokens, final
prompt = m.usage.input_tokens + m.usage.cache_read_input_tokens
assert prompt > 0 and final.usage.input_tokens + final.usage.cache_read_input_tokens == prompt, final.usage
counted = client.messages.count_tokens(model=model, system="Be brief.", messages=ask).input_tokens
assert counted == prompt, (counted, prompt)

# A stop sequence taken from the greedy text ends it there, and is named.
stop = text[len(text) // 2:len(text) // 2 + 2]
m = client.messages.create(model=model, max_tokens=12, system="Be brief.", messages=ask, stop_sequences=[stop],
                           **greedy)
assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", stop), m
assert m.content[0].text == text[:text.index(stop)], (m, text, stop)

# A named call, whole: a tool_use block whose input fits the schema.
weather = {"type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 20},
           "unit": {"enum": ["C", "F"]}}, "required": ["city", "unit"], "additionalProperties": False}
tools = [{"name": "get_weather", "description": "The weather now in a city", "input_schema": weather},
         {"name": "get_time", "description": "The time now in a zone",
          "input_schema": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 12}}, "required": ["zone"]}}]
question = [{"role": "user", "content": "What is the weather in Oslo?"}]
m = client.messages.create(model=model, max_tokens=300, tools=tools, messages=question,
                           tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True})
assert m.stop_reason == "tool_use", m
calls = [b for b in m.content if b.type == "tool_use"]
assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].id, m
assert all(b.type != "text" or b.text == "" for b in m.content), "call syntax shown as text"
jsonschema.validate(calls[0].input, weather)

# `any`, streamed: each tool_use block's input_json_delta pieces make JSON that validates.
schemas = {t["name"]: t["input_schema"] for t in tools}
with client.messages.stream(model=model, max_tokens=400, tools=tools, messages=question, tool_choice={"type": "any"}) as s:
    events = [e for e in s]
    final = s.get_final_message()
raw = [e.type for e in events if e.type in ("message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop")]
assert raw[0] == "message_start" and raw[-2:] == ["message_delta", "message_stop"], raw
pieces = {}
for e in events:
    if e.type == "content_block_delta":
        assert e.delta.type == "input_json_delta", e
        pieces[e.index] = pieces.get(e.index, "") + e.delta.partial_json
assert final.stop_reason == "tool_use" and pieces, (final, pieces)
for block in final.content:
    assert block.type == "tool_use", final
    jsonschema.validate(block.input, schemas[block.name])
assert sorted(json.dumps(json.loads(p), sort_keys=True) for p in pieces.values()) == \
    sorted(json.dumps(b.input, sort_keys=True) for b in final.content), (pieces, final)

# The round trip: the calls and their results go back; the model answers as it chooses.
results = [{"type": "tool_result", "tool_use_id": b.id, "content": "21 degrees"} for b in final.content]
again = question + [{"role": "assistant", "content": [b.model_dump() for b in final.content]},
                    {"role": "user", "content": results}]
counted = client.messages.count_tokens(model=model, messages=again, tools=tools).input_tokens
m = client.messages.create(model=model, max_tokens=60, tools=tools, messages=again, extra_body={"temperature": 0.5})
assert counted == m.usage.input_tokens + m.usage.cache_read_input_tokens, (counted, m.usage)
assert counted > client.messages.count_tokens(model=model, messages=again).input_tokens, "tools count"
if m.stop_reason == "tool_use":
    for b in m.content:
        if b.type == "tool_use":
            jsonschema.validate(b.input, schemas[b.name])
else:
    assert [b.type for b in m.content] == ["text"] and "tool_calls" not in m.content[0].text, m

# `none`: tools not offered; plain text.
m = client.messages.create(model=model, max_tokens=8, tools=tools, messages=question, tool_choice={"type": "none"})
assert [b.type for b in m.content] == ["text"] and m.stop_reason in ("end_turn", "max_tokens"), m

# What cannot be honoured is refused by name, in Anthropic's error shape.
refused = [dict(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "base64",
                 "media_type": "image/png", "data": "AAAA"}}]}], why="image"),
           dict(messages=question, extra_body={"top_logprobs": 2}, why="top_logprobs"),
           dict(messages=question, tools=[{"type": "web_search_20250305", "name": "web_search"}], why="web_search")]
for bad in refused:
    why = bad.pop("why")
    try:
        client.messages.create(model=model, max_tokens=4, **bad)
        raise AssertionError(f"accepted: {why}")
    except anthropic.BadRequestError as e:
        assert e.body["type"] == "error" and e.body["error"]["type"] == "invalid_request_error", e.body
        assert why in e.body["error"]["message"], e.body
try:
    client.messages.create(model="no-such-model", max_tokens=4, messages=question)
    raise AssertionError("an unknown model answered")
except anthropic.NotFoundError as e:
    assert e.body["error"]["type"] == "not_found_error", e.body
# Fields the clients send that change nothing here are taken.
m = client.messages.create(model=model, max_tokens=2, messages=question, metadata={"user_id": "u1"},
                           service_tier="auto", thinking={"type": "disabled"}, speed="standard",
                           cache_control={"type": "ephemeral"}, output_config={"effort": "low"})
assert m.usage.output_tokens <= 2, m
# Structured output (`output_config.format`): JSON of the schema.
answer = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
          "additionalProperties": False}
m = client.messages.create(model=model, max_tokens=40, messages=[{"role": "user", "content": "Is the sky blue?"}],
                           output_config={"format": {"type": "json_schema", "schema": answer}})
jsonschema.validate(json.loads(m.content[0].text), answer)
print("ANTHROPIC OK")
"#;

#[test]
fn anthropic_package_works() {
    // One slot: greedy answers repeat exactly when no other request shares the batch.
    let out = run_python(MESSAGES, start_server(lms_client(1), None));
    assert!(out.contains("ANTHROPIC OK"), "{out}");
}

const AUTH: &str = r#"
import os
import anthropic
from anthropic import Anthropic

base = f"http://{os.environ['HOST']}"
ask = dict(model="gemma-3-270m", max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
assert Anthropic(base_url=base, api_key="secret").messages.create(**ask).content
assert Anthropic(base_url=base, api_key=None, auth_token="secret").messages.create(**ask).content
try:
    Anthropic(base_url=base, api_key="wrong").messages.create(**ask)
    raise AssertionError("a wrong key was taken")
except anthropic.AuthenticationError as e:
    assert e.body["error"]["type"] == "authentication_error", e.body
print("AUTH OK")
"#;

#[test]
fn anthropic_clients_authenticate_with_x_api_key_or_bearer() {
    let out = run_python(AUTH, start_server(lms_client(1), Some("secret")));
    assert!(out.contains("AUTH OK"), "{out}");
}
