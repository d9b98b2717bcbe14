//! Tool calls in each family's own syntax (issue 28, item 1): Hermes (Qwen), Llama 3.x and
//! Mistral. No such model can be fetched here, so each is a small model of random weights
//! (`scripts/random-gguf.py`) carrying a chat template written in its family's form, with the
//! family's markers as control tokens, as their vocabularies have them. Random weights choose
//! nothing worth judging; a required call is constrained by the engine, so it is made in the
//! family's syntax, read back as a call, never shown as text, and its round trip renders as the
//! family's templates insist (Llama 3.x: one call per message; Mistral: ids of nine characters).

use std::ffi::OsStr;
use std::path::Path;

use lmstudio as lms;
use serde_json::Value;

/// A template in the form of Llama 3.1-3.3's: tools in the system turn, a call is the whole
/// answer with `parameters`, results in the `ipython` role, one call per assistant message.
const LLAMA3: &str = r#"{{- bos_token }}
{%- if tools %}<|start_header_id|>system<|end_header_id|>

Environment: ipython
To call a function, answer {"name": function name, "parameters": dictionary of argument name and its value}.
{% for t in tools %}{{ t | tojson }}
{% endfor %}<|eot_id|>
{%- endif %}
{%- for m in messages %}
{%- if 'tool_calls' in m %}
{%- if m.tool_calls | length != 1 %}{{ raise_exception('This model only supports single tool-calls at once!') }}{% endif %}<|start_header_id|>assistant<|end_header_id|>

{"name": "{{ m.tool_calls[0].function.name }}", "parameters": {{ m.tool_calls[0].function.arguments | tojson }}}<|eot_id|>
{%- elif m.role == 'tool' %}<|start_header_id|>ipython<|end_header_id|>

{{ m.content }}<|eot_id|>
{%- else %}<|start_header_id|>{{ m.role }}<|end_header_id|>

{{ m.content }}<|eot_id|>
{%- endif %}
{%- endfor %}<|start_header_id|>assistant<|end_header_id|>

"#;

/// A template in the form of Mistral's (Nemo): tools before the last user message, calls as a
/// JSON array after `[TOOL_CALLS]`, ids of nine letters and digits or an exception.
const MISTRAL: &str = r#"{{- bos_token }}
{%- for m in messages %}
{%- if m.role == 'user' %}
{%- if tools and loop.last %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}[INST]{{ m.content }}[/INST]
{%- elif m.tool_calls is defined %}[TOOL_CALLS][
{%- for c in m.tool_calls %}
{%- if c.id | length != 9 %}{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{% endif %}
{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}, "id": "{{ c.id }}"}{{ ", " if not loop.last }}
{%- endfor %}]{{ eos_token }}
{%- elif m.role == 'tool' %}
{%- if m.tool_call_id | length != 9 %}{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{% endif %}[TOOL_RESULTS]{"content": {{ m.content | tojson }}, "call_id": "{{ m.tool_call_id }}"}[/TOOL_RESULTS]
{%- elif m.role == 'assistant' %}{{ m.content }}{{ eos_token }}
{%- else %}[INST]{{ m.content }}[/INST]
{%- endif %}
{%- endfor %}"#;

/// A template in the form of Qwen 2.5's: tools in a system turn, calls in `<tool_call>` blocks,
/// results as `<tool_response>` in a user turn.
const HERMES: &str = r#"{%- if tools %}<|im_start|>system
# Tools
<tools>
{% for t in tools %}{{ t | tojson }}
{% endfor %}</tools>
For each call, answer <tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% endif %}
{%- for m in messages %}
{%- if m.role == 'tool' %}<|im_start|>user
<tool_response>
{{ m.content }}
</tool_response><|im_end|>
{% elif m.tool_calls %}<|im_start|>assistant
{% for c in m.tool_calls %}<tool_call>
{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% else %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endif %}
{%- endfor %}<|im_start|>assistant
"#;

struct Family {
    name: &'static str,
    template: &'static str,
    control: &'static [&'static str],
    /// Text that is call syntax in this family, never to be shown.
    syntax: &'static [&'static str],
}

const FAMILIES: [Family; 3] = [
    Family {
        name: "llama3",
        template: LLAMA3,
        control: &["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|python_tag|>"],
        syntax: &["\"parameters\""],
    },
    Family {
        name: "mistral",
        template: MISTRAL,
        control: &[
            "[INST]",
            "[/INST]",
            "[AVAILABLE_TOOLS]",
            "[/AVAILABLE_TOOLS]",
            "[TOOL_CALLS]",
            "[TOOL_RESULTS]",
            "[/TOOL_RESULTS]",
        ],
        syntax: &["TOOL_CALLS", "\"arguments\""],
    },
    Family {
        name: "hermes",
        template: HERMES,
        control: &["<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"],
        syntax: &["tool_call", "\"arguments\""],
    },
];

/// A small model of random weights, `test/<name>` in the store at `dir`, with this template and
/// these control tokens.
fn random_model(dir: &Path, name: &str, template: &str, control: &[&str]) {
    let folder = dir.join("test").join(name);
    std::fs::create_dir_all(&folder).expect("mkdir");
    let template_file = folder.join("template.jinja");
    std::fs::write(&template_file, template).expect("template");
    let mut args: Vec<&OsStr> = vec!["--chat-template".as_ref(), template_file.as_os_str()];
    for token in control {
        args.extend([OsStr::new("--control"), OsStr::new(token)]);
    }
    lms_test_support::random_gguf("tiny", &folder.join(format!("{name}.gguf")), &args);
    std::fs::remove_file(template_file).expect("rm");
}

/// A store of one random model per family, `test/<family>`.
fn family_store(dir: &Path) -> lms::ModelStore {
    for family in &FAMILIES {
        random_model(dir, family.name, family.template, family.control);
    }
    lms::ModelStore::new(dir)
}

fn weather() -> lms::Tool {
    // Bounded, so that random weights held to it end within the token limit.
    let parameters = serde_json::from_str(
        r#"{"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["C", "F"]}},
            "required": ["city", "unit"], "additionalProperties": false}"#,
    )
    .expect("schema");
    lms::Tool::new("get_weather", "The weather now in a city", parameters)
}

fn forced(seed: u32) -> lms::Config {
    lms::Config {
        tools: vec![weather(), lms::Tool::new("get_time", "The time now", serde_json::json!({"type": "object"}))],
        tool_choice: Some(lms::ToolChoice::Function("get_weather".into())),
        parallel_tool_calls: Some(false),
        seed: Some(seed),
        max_tokens: Some(200),
        ..Default::default()
    }
}

#[test]
fn each_family_calls_in_its_own_syntax_and_takes_the_results_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = lms::Client::with_store(family_store(dir.path()));
    let mut chat = lms::Chat::new();
    chat.add_user_message("What is the weather in Oslo?");
    for family in &FAMILIES {
        let name = family.name;
        let config = lms::LoadConfig { context_length: Some(1024), ..Default::default() };
        let model = client.load(name, &config).unwrap_or_else(|e| panic!("{name} loads: {e}"));
        let mut stream = model.respond_stream(&chat, forced(3)).expect("starts");
        let shown: String = stream.by_ref().map(|f| f.expect("a fragment").content).collect();
        let r = stream.result().expect("responds");
        assert_eq!((shown.as_str(), r.content.as_str()), ("", ""), "{name}: call syntax shown as text");
        assert_eq!(r.stats.stop_reason, lms::StopReason::ToolCalls, "{name}: {r:?}");
        assert_eq!(r.tool_calls.len(), 1, "{name}: {r:?}");
        let call = r.tool_calls[0].clone();
        assert_eq!(call.name, "get_weather", "{name}");
        let arguments: Value = serde_json::from_str(&call.arguments).expect("JSON arguments");
        let validator = jsonschema::validator_for(&weather().parameters).expect("schema");
        assert!(validator.is_valid(&arguments), "{name}: {arguments}");

        // Two calls answered: the history renders as the family's template insists.
        let other = lms::ToolCall { id: format!("{}x", call.id), ..call.clone() };
        let mut round = chat.clone();
        round.push(lms::ChatMessage::tool_calls("", vec![call.clone(), other.clone()]));
        round.push(lms::ChatMessage::tool_result(&call.id, "21 C"));
        round.push(lms::ChatMessage::tool_result(&other.id, "19 C"));
        let prompt = model.apply_prompt_template(round.messages()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(prompt.contains("21 C") && prompt.contains("19 C"), "{name}: {prompt}");
        match name {
            "llama3" => {
                let (calls, results) = (prompt.matches("\"parameters\"").count(), prompt.matches("ipython").count());
                assert_eq!((calls, results), (2, 2), "one call per message: {prompt}");
            }
            "mistral" => {
                let ids: Vec<&str> = prompt.split("\"call_id\": \"").skip(1).map(|s| &s[..9]).collect();
                assert_eq!(ids.len(), 2, "{prompt}");
                assert!(ids.iter().all(|id| prompt.contains(&format!("\"id\": \"{id}\""))), "{prompt}");
            }
            _ => assert_eq!(prompt.matches("<tool_response>").count(), 2, "{name}: {prompt}"),
        }
        let config = lms::Config { tool_choice: Some(lms::ToolChoice::Auto), max_tokens: Some(8), ..forced(4) };
        let answer = model.respond(&round, config).unwrap_or_else(|e| panic!("{name}: {e}"));
        if answer.tool_calls.is_empty() {
            let text = &answer.content;
            assert!(!family.syntax.iter().any(|s| text.starts_with(s)), "{name}: call syntax shown: {text}");
        }
        client.unload(model.identifier()).expect("unloads");
    }
}

/// A template in the form of DeepSeek R1's and Qwen3's thinking models: the prompt opens the
/// reasoning, unless `enable_thinking` is false, when it holds an empty one.
const THINKER: &str = r#"{%- for m in messages %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}<|im_start|>assistant
{% if enable_thinking is defined and enable_thinking is false %}<think>

</think>

{% else %}<think>
{% endif %}"#;

/// Issue 28, item 8: a template that opens the reasoning in the prompt makes the whole output
/// reasoning until the model closes it (random weights never write `</think>`, which is no token
/// of theirs); `enable_thinking: false` reaches the template, whose prompt then holds an empty
/// reasoning, and the output is answer.
#[test]
fn a_prompt_that_opens_the_reasoning_and_the_thinking_switch() {
    let dir = tempfile::tempdir().expect("temp dir");
    random_model(dir.path(), "thinker", THINKER, &["<|im_start|>", "<|im_end|>"]);
    let client = lms::Client::with_store(lms::ModelStore::new(dir.path()));
    let model = client.load("thinker", &lms::LoadConfig { context_length: Some(512), ..Default::default() });
    let model = model.expect("loads");
    let mut chat = lms::Chat::new();
    chat.add_user_message("Think first.");
    let config = |thinking| lms::Config {
        enable_thinking: thinking,
        max_tokens: Some(8),
        ignore_eos: Some(true),
        seed: Some(1),
        ..Default::default()
    };
    let thinks = model.respond(&chat, config(None)).expect("responds");
    assert!(thinks.content.is_empty() && !thinks.reasoning_content.is_empty(), "{thinks:?}");
    // Tokens are counted with the text they make (a byte of a character cut at the end makes none).
    assert!(thinks.stats.reasoning_tokens_count.is_some_and(|n| (1..=8).contains(&n)), "{thinks:?}");
    let answers = model.respond(&chat, config(Some(false))).expect("responds");
    assert!(answers.reasoning_content.is_empty() && !answers.content.is_empty(), "{answers:?}");
    let longer = model.count_chat_tokens(&chat, &config(Some(false))).expect("counts");
    assert!(longer > model.count_chat_tokens(&chat, &config(None)).expect("counts"), "the switch reached the template");
}
