//! Reasoning split out on every endpoint (issue 28, item 8): `reasoning_content` on chat
//! completions, a reasoning item on responses, a `thinking` block on messages, labelled fragments
//! over LM Studio's protocol. The default model does not think, so a grammar (llama.cpp's
//! `grammar` extension) holds it to `<think>reasoning</think>answer`, as a thinking model writes;
//! the official clients read the split, whole and streamed alike.

use crate::{lms_client, run_python, start_server};

/// Reasoning, then an answer, each a few letters, a letter first.
const THINKS: &str = r#"root ::= "<think>" [a-z] [a-z ]{0,24} "</think>" [a-z] [a-z ]{0,24}"#;

const CLIENTS: &str = r#"
import os
from openai import OpenAI
from anthropic import Anthropic

host = os.environ["HOST"]
oa = OpenAI(base_url=f"http://{host}/v1", api_key="unused")
model = "gemma-3-270m"
ask = [{"role": "user", "content": "Is the sky blue?"}]
held = {"grammar": GRAMMAR}

# Chat completions: reasoning_content apart from the content, whole and streamed.
c = oa.chat.completions.create(model=model, messages=ask, max_tokens=120, temperature=0, extra_body=held)
m = c.choices[0].message
reasoning, answer = m.model_extra["reasoning_content"], m.content
assert reasoning and answer and "think>" not in reasoning + answer, m
r, t = "", ""
for chunk in oa.chat.completions.create(model=model, messages=ask, max_tokens=120, temperature=0, stream=True,
                                        extra_body=held):
    if chunk.choices:
        d = chunk.choices[0].delta
        r += (d.model_extra or {}).get("reasoning_content") or ""
        t += d.content or ""
assert (r, t) == (reasoning, answer), (r, t, reasoning, answer)

# Responses: a reasoning item, then the message; streamed as reasoning_text then output_text.
resp = oa.responses.create(model=model, input="Is the sky blue?", max_output_tokens=120, temperature=0,
                           extra_body=held)
assert [o.type for o in resp.output] == ["reasoning", "message"], resp.output
assert resp.output[0].content[0].text == reasoning and resp.output_text == answer, resp
assert resp.usage.output_tokens_details.reasoning_tokens > 0, resp.usage
events = list(oa.responses.create(model=model, input="Is the sky blue?", max_output_tokens=120, temperature=0,
                                  stream=True, extra_body=held))
deltas = lambda kind: "".join(e.delta for e in events if e.type == kind)
assert deltas("response.reasoning_text.delta") == reasoning, events
assert deltas("response.output_text.delta") == answer, events
added = [(e.output_index, e.item.type) for e in events if e.type == "response.output_item.added"]
assert added == [(0, "reasoning"), (1, "message")], added
assert [o.type for o in events[-1].response.output] == ["reasoning", "message"], events[-1]

# Messages: a thinking block, then the text.
an = Anthropic(base_url=f"http://{host}", api_key="unused")
greedy = {"extra_body": {"temperature": 0, **held}}
msg = an.messages.create(model=model, max_tokens=120, messages=ask, **greedy)
assert [b.type for b in msg.content] == ["thinking", "text"], msg
assert (msg.content[0].thinking, msg.content[1].text) == (reasoning, answer), msg
with an.messages.stream(model=model, max_tokens=120, messages=ask, **greedy) as s:
    kinds = [e.delta.type for e in s if e.type == "content_block_delta"]
    final = s.get_final_message()
assert kinds[0] == "thinking_delta" and kinds[-1] == "text_delta", kinds
assert (final.content[0].thinking, final.content[1].text) == (reasoning, answer), final
print("REASONING OK", reasoning, "|", answer)
"#;

#[test]
fn official_clients_read_reasoning_apart() {
    // One slot: greedy answers repeat exactly when no other request shares the batch.
    let addr = start_server(lms_client(1), None);
    let script = CLIENTS.replace("GRAMMAR", &format!("{THINKS:?}"));
    let out = run_python(&script, addr);
    assert!(out.contains("REASONING OK"), "{out}");

    // LM Studio's protocol: the fragments carry their labels, and the remote backend splits alike.
    let remote = lmstudio::Client::connect(&addr.to_string()).expect("connects");
    let model = remote.llm("gemma-3-270m").expect("loaded");
    let mut chat = lmstudio::Chat::new();
    chat.add_user_message("Is the sky blue?");
    let config = lmstudio::Config {
        structured: Some(lmstudio::Structured::Gbnf(THINKS.into())),
        temperature: Some(0.0),
        max_tokens: Some(120),
        ..Default::default()
    };
    let mut stream = model.respond_stream(&chat, config).expect("starts");
    let fragments: Vec<lmstudio::Fragment> = stream.by_ref().map(|f| f.expect("a fragment")).collect();
    let r = stream.result().expect("responds");
    let reasoning: String =
        fragments.iter().filter(|f| f.reasoning == lmstudio::ReasoningType::Reasoning).map(|f| &*f.content).collect();
    assert!(!r.reasoning_content.is_empty() && !r.content.is_empty(), "{r:?}");
    assert_eq!(reasoning, r.reasoning_content);
    assert!(fragments.iter().any(|f| f.reasoning == lmstudio::ReasoningType::StartTag), "{fragments:?}");
    let printed = out.lines().find_map(|l| l.strip_prefix("REASONING OK ")).expect("printed");
    assert_eq!(printed, format!("{} | {}", r.reasoning_content, r.content), "every protocol splits alike");
}
