//! OpenAI's Responses API (`/v1/responses`) driven by the official `openai` package against the
//! real server and the default model. Calls are forced (a named function, `required`: a grammar
//! holds them to the schema), so they parse and validate whatever the seed; what the model
//! chooses with `auto` is not judged, only its form.

use crate::{lms_client, run_python, start_server};

const RESPONSES: &str = r#"
import os, json
import jsonschema
from openai import OpenAI, BadRequestError, NotFoundError

client = OpenAI(base_url=f"http://{os.environ['HOST']}/v1", api_key="unused")
model = "gemma-3-270m"
greedy = dict(model=model, max_output_tokens=12, temperature=0)

# Text, greedy: whole and streamed alike, events in order and numbered.
r = client.responses.create(input="Name three colours.", instructions="Be brief.", **greedy)
assert r.object == "response" and r.id.startswith("resp_") and r.status in ("completed", "incomplete"), r
assert [o.type for o in r.output] == ["message"] and r.output_text, r
assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens and r.instructions == "Be brief.", r
events = list(client.responses.create(input="Name three colours.", instructions="Be brief.", stream=True, **greedy))
types = [e.type for e in events]
assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response." + r.status, types
assert [e.sequence_number for e in events] == list(range(len(events))), types
assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == r.output_text, events
assert events[-1].response.output_text == r.output_text and events[-1].response.usage.output_tokens == r.usage.output_tokens

# previous_response_id: the next turn's prompt is the first turn, its answer and the new input
# (the instructions do not carry over), token for token what chat completions count for it.
r2 = client.responses.create(input="Three more.", previous_response_id=r.id, **greedy)
assert r2.previous_response_id == r.id, r2
chat = client.chat.completions.create(model=model, max_tokens=1, messages=[
    {"role": "user", "content": "Name three colours."}, {"role": "assistant", "content": r.output_text},
    {"role": "user", "content": "Three more."}])
assert r2.usage.input_tokens == chat.usage.prompt_tokens, (r2.usage, chat.usage)
assert client.responses.retrieve(r.id).output_text == r.output_text
client.responses.delete(r2.id)
for gone in [lambda: client.responses.retrieve(r2.id),
             lambda: client.responses.create(input="x", previous_response_id=r2.id, **greedy)]:
    try:
        gone()
        raise AssertionError("a deleted response was found")
    except NotFoundError:
        pass
unkept = client.responses.create(input="Hi", store=False, **greedy)
try:
    client.responses.retrieve(unkept.id)
    raise AssertionError("store: false was kept")
except NotFoundError:
    pass

# A named call (flat function tool): a function_call item whose arguments validate.
weather = {"type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 20},
           "unit": {"enum": ["C", "F"]}}, "required": ["city", "unit"], "additionalProperties": False}
clock = {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 12}}, "required": ["zone"]}
tools = [{"type": "function", "name": "get_weather", "description": "The weather now in a city", "parameters": weather},
         {"type": "function", "name": "get_time", "description": "The time now in a zone", "parameters": clock}]
schemas = {"get_weather": weather, "get_time": clock}
question = "What is the weather in Oslo?"
r = client.responses.create(model=model, input=question, tools=tools, max_output_tokens=300, parallel_tool_calls=False,
                            tool_choice={"type": "function", "name": "get_weather"})
assert [o.type for o in r.output] == ["function_call"] and r.status == "completed", r
call = r.output[0]
assert call.name == "get_weather" and call.call_id and call.id.startswith("fc_"), call
jsonschema.validate(json.loads(call.arguments), weather)

# `required`, streamed: each call's argument deltas make JSON that validates, as `done` says.
events = list(client.responses.create(model=model, input=question, tools=tools, max_output_tokens=400,
                                      tool_choice="required", stream=True))
assert not [e for e in events if e.type == "response.output_text.delta"], "call syntax shown as text"
pieces = {}
for e in events:
    if e.type == "response.function_call_arguments.delta":
        pieces[e.item_id] = pieces.get(e.item_id, "") + e.delta
done = {e.item_id: e for e in events if e.type == "response.function_call_arguments.done"}
assert pieces and set(pieces) == set(done), events
for item_id, text in pieces.items():
    assert done[item_id].arguments == text
    jsonschema.validate(json.loads(text), schemas[done[item_id].name])
final = events[-1].response
assert [o.type for o in final.output] == ["function_call"] * len(pieces), final

# The round trip, as items and through previous_response_id: the results go back; the model
# answers as it chooses.
outputs = [{"type": "function_call_output", "call_id": c.call_id, "output": "21 degrees"} for c in final.output]
items = [{"role": "user", "content": question}] + [c.model_dump() for c in final.output] + outputs
for r in [client.responses.create(model=model, input=items, tools=tools, max_output_tokens=60, temperature=0.5),
          client.responses.create(model=model, input=outputs, previous_response_id=final.id, tools=tools,
                                  max_output_tokens=60, temperature=0.5)]:
    for o in r.output:
        if o.type == "function_call":
            jsonschema.validate(json.loads(o.arguments), schemas[o.name])
        else:
            assert o.type == "message" and "tool_calls" not in r.output_text, r

# Fields that change nothing here are taken (and echoed); the rest refused by name.
r = client.responses.create(input="Hi", user="u1", prompt_cache_key="k", metadata={"a": "b"}, truncation="disabled",
                            **greedy)
assert r.metadata == {"a": "b"}, r
for bad, why in [(dict(tools=[{"type": "web_search"}]), "web_search"),
                 (dict(extra_body={"conversation": "conv_1"}), "conversation"),
                 (dict(input=[{"role": "user", "content": [{"type": "input_image", "image_url": "data:,"}]}]), "input_image")]:
    try:
        client.responses.create(**{"input": "Hi", **greedy, **bad})
        raise AssertionError(f"accepted: {why}")
    except BadRequestError as e:
        assert why in str(e), e
print("RESPONSES OK")
"#;

#[test]
fn openai_responses_api_works() {
    // One slot: greedy answers repeat exactly when no other request shares the batch.
    let out = run_python(RESPONSES, start_server(lms_client(1), None));
    assert!(out.contains("RESPONSES OK"), "{out}");
}
