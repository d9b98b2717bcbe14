//! Tool calls in a chat: how the tools reach the model, how its output is held to a call when one
//! is required, and how calls are read back out of the text, while it streams.
//!
//! A chat template that knows tools gets them itself, and the model answers in its family's
//! syntax ([`Syntax`]): Hermes' (Qwen's) `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
//! Llama 3.x's answer that is one `{"name": ..., "parameters": {...}}`, Mistral's
//! `[TOOL_CALLS][{"name": ..., "arguments": {...}}]` (and its later `[TOOL_CALLS]name[ARGS]{...}`).
//! Any other template gets the generic form (llama.cpp's `common/chat` does the same for models
//! without a tool syntax): a system message lists the tools and asks for JSON,
//! `{"tool_calls": [{"name": ..., "arguments": {...}}]}` or `{"response": "..."}`, and the output is
//! constrained to exactly that JSON, so even a small model answers in a form that parses. A
//! required or named call is constrained in every syntax: its arguments validate against the
//! tool's schema. Reading calls back out of the output is [`syntax`]'s. Pure: no engine here.

mod syntax;

pub(crate) use syntax::{syntax_of, CallReader, Syntax, SYNTAX_MARKERS};
use syntax::{GenericAnswer, GenericCall, HERMES_CLOSE, HERMES_OPEN, MISTRAL_OPEN};

use serde::Serialize;
use serde_json::{json, Value};

use crate::types::config::Config;
use crate::types::result::ChatMessage;
use crate::types::tools::{Tool, ToolCall, ToolChoice};

/// A tool as `transformers` gives it to a chat template (OpenAI's shape).
#[derive(Debug, Serialize)]
pub(crate) struct TemplateTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: &'a Tool,
}

/// A call as a chat template reads it from an assistant message's `tool_calls`.
#[derive(Debug, Serialize)]
pub(crate) struct TemplateCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: GenericCall<'a>,
}

/// The results of one round of calls in the generic history.
#[derive(Debug, Serialize)]
struct ToolResponses<'a> {
    tool_responses: Vec<ToolResponseBody<'a>>,
}

#[derive(Debug, Serialize)]
struct ToolResponseBody<'a> {
    id: Option<&'a str>,
    content: &'a str,
}

/// The most calls one answer in the generic form makes. A model that was not trained for tools,
/// held to a call, may repeat it until its token limit (the default model did, greedy: seven calls
/// and counting at 200 tokens); bounded, the answer always ends, and a few calls are what such an
/// answer needs.
pub(crate) const MAX_PARALLEL_CALLS: usize = 8;

/// One prediction's use of tools: what the template is given, what the output is held to, and
/// how it is read.
#[derive(Debug, Clone)]
pub(crate) struct ToolUse {
    syntax: Syntax,
    tools: Vec<Tool>,
    choice: ToolChoice,
    /// Several calls in one answer.
    parallel: bool,
}

/// What a tool-using prediction's output is constrained to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Constraint {
    /// JSON of this schema.
    Json(Value),
    /// Blocks of JSON of this schema, each between `open` and `close` (Hermes' call blocks,
    /// Mistral's calls), at most `most` of them. Lazy: the output is free until `open` appears
    /// in it (a model that may answer in text or call).
    Blocks { schema: Value, open: &'static str, close: &'static str, most: usize, lazy: bool },
}

impl Constraint {
    /// The text a lazy constraint waits for.
    pub(crate) fn trigger(&self) -> Option<&'static str> {
        match self {
            Self::Blocks { open, lazy: true, .. } => Some(open),
            _ => None,
        }
    }
}

impl ToolUse {
    /// The tools a prediction with `config` offers, and how; `None` when it offers none
    /// ([`Config::offers_tools`]).
    pub(crate) fn new(syntax: Syntax, config: &Config) -> Option<Self> {
        config.offers_tools().then(|| Self {
            syntax,
            tools: config.tools.clone(),
            choice: config.tool_choice.clone().unwrap_or(ToolChoice::Auto),
            parallel: config.parallel_tool_calls.unwrap_or(true),
        })
    }

    /// The tools the template gets (OpenAI's shape, as `transformers` passes them): all of them
    /// for a template that knows tools, none for the generic form (they are in the messages).
    pub(crate) fn template_tools(&self) -> Vec<TemplateTool<'_>> {
        match self.syntax {
            Syntax::Generic => Vec::new(),
            _ => self.tools.iter().map(|t| TemplateTool { kind: "function", function: t }).collect(),
        }
    }

    /// The chat as the template is given it: as it is for a template that knows tools, with what
    /// its family's template insists on ([`family_history`]). Generic: the tools and the answer's
    /// form in the system message, earlier calls and results as the JSON the model writes and
    /// reads.
    pub(crate) fn messages(&self, chat: &[ChatMessage]) -> Vec<ChatMessage> {
        if self.syntax != Syntax::Generic {
            return family_history(self.syntax, chat);
        }
        let mut messages = generic_history(chat);
        let instructions = self.generic_instructions();
        match messages.first_mut() {
            Some(first) if first.role == "system" => first.content = format!("{}\n\n{instructions}", first.content),
            _ => messages.insert(0, ChatMessage::new("system", instructions)),
        }
        messages
    }

    fn generic_instructions(&self) -> String {
        let listed = to_json(&self.tools);
        let how = match &self.choice {
            ToolChoice::Auto | ToolChoice::None => {
                "To call tools, answer {\"tool_calls\": [{\"name\": \"<tool name>\", \"arguments\": {<its arguments>}}]}; \
                 to answer without a tool, answer {\"response\": \"<your answer>\"}."
                    .to_owned()
            }
            ToolChoice::Required => "Call one or more of them: answer {\"tool_calls\": [{\"name\": \"<tool name>\", \
                 \"arguments\": {<its arguments>}}]}."
                .to_owned(),
            ToolChoice::Function(name) => format!(
                "Call the tool {name}: answer {{\"tool_calls\": [{{\"name\": \"{name}\", \"arguments\": {{<its arguments>}}}}]}}."
            ),
        };
        format!("You can use these tools:\n{listed}\n\nAnswer in JSON only. {how}")
    }

    /// What the output is held to: the generic JSON always (a call or a response); when a call
    /// is required, a call in the family's syntax (Hermes blocks, a Llama 3.x call, Mistral's
    /// calls); when the model may answer freely, Hermes and Mistral calls from where one starts
    /// (lazily), a Llama 3.x answer not at all (its call has no marker to wait for).
    pub(crate) fn constraint(&self) -> Option<Constraint> {
        let offered: Vec<&Tool> = match &self.choice {
            ToolChoice::Function(name) => self.tools.iter().filter(|t| &t.name == name).collect(),
            _ => self.tools.iter().collect(),
        };
        let key = if self.syntax == Syntax::Llama3 { "parameters" } else { "arguments" };
        let call = one_of(offered.iter().map(|t| call_schema(t, key)).collect());
        let forced = !matches!(self.choice, ToolChoice::Auto | ToolChoice::None);
        let most = if self.parallel { MAX_PARALLEL_CALLS } else { 1 };
        let array = json!({"type": "array", "items": call, "minItems": 1, "maxItems": most});
        let lazy = !forced;
        match self.syntax {
            Syntax::Hermes => {
                Some(Constraint::Blocks { schema: call, open: HERMES_OPEN, close: HERMES_CLOSE, most, lazy })
            }
            Syntax::Llama3 => forced.then_some(Constraint::Json(call)),
            Syntax::Mistral => Some(Constraint::Blocks { schema: array, open: MISTRAL_OPEN, close: "", most: 1, lazy }),
            Syntax::Generic => {
                let calls = json!({
                    "type": "object",
                    "properties": {"tool_calls": array},
                    "required": ["tool_calls"],
                    "additionalProperties": false,
                });
                let response = json!({
                    "type": "object",
                    "properties": {"response": {"type": "string"}},
                    "required": ["response"],
                    "additionalProperties": false,
                });
                Some(Constraint::Json(if forced { calls } else { json!({"anyOf": [calls, response]}) }))
            }
        }
    }

    /// A reader of this prediction's output.
    pub(crate) fn reader(&self) -> CallReader {
        CallReader::new(self.syntax, self.parallel)
    }
}

/// A chat with calls and results as the generic form writes and reads them, for a template that
/// knows no tools: an assistant's calls (and any text beside them) as its JSON answer, the results
/// that follow as one user message (a template may ask roles to alternate). Used with tools
/// offered or not, so that no template meets a `tool` role it does not know.
pub(crate) fn generic_history(chat: &[ChatMessage]) -> Vec<ChatMessage> {
    let mut messages: Vec<ChatMessage> = Vec::with_capacity(chat.len());
    let mut results: Vec<ToolResponseBody<'_>> = Vec::new();
    let flush = |results: &mut Vec<ToolResponseBody<'_>>, messages: &mut Vec<ChatMessage>| {
        if !results.is_empty() {
            let all = ToolResponses { tool_responses: std::mem::take(results) };
            messages.push(ChatMessage::new("user", to_json(&all)));
        }
    };
    for m in chat {
        if m.role == "tool" {
            results.push(ToolResponseBody { id: m.tool_call_id.as_deref(), content: &m.content });
            continue;
        }
        flush(&mut results, &mut messages);
        if m.tool_calls.is_empty() {
            messages.push(ChatMessage::new(m.role.clone(), m.content.clone()));
        } else {
            let answer = GenericAnswer::Calls { tool_calls: m.tool_calls.iter().map(generic_call).collect() };
            let mut content = to_json(&answer);
            if !m.content.trim().is_empty() {
                content = format!("{}\n{content}", m.content.trim());
            }
            messages.push(ChatMessage::new("assistant", content));
        }
    }
    flush(&mut results, &mut messages);
    messages
}

/// A chat with calls and results for a template of a tool syntax, shaped as its family's
/// templates insist: Llama 3.x's take one call per assistant message (several in a row for an
/// answer that made several), Mistral's refuse call ids that are not nine letters and digits
/// (each id becomes nine, the same for a call and its result).
pub(crate) fn family_history(syntax: Syntax, chat: &[ChatMessage]) -> Vec<ChatMessage> {
    match syntax {
        Syntax::Llama3 => chat
            .iter()
            .flat_map(|m| match m.tool_calls.len() {
                0 | 1 => vec![m.clone()],
                _ => m.tool_calls.iter().map(|c| ChatMessage::tool_calls(&m.content, vec![c.clone()])).collect(),
            })
            .collect(),
        Syntax::Mistral => chat
            .iter()
            .map(|m| {
                let mut m = m.clone();
                for call in &mut m.tool_calls {
                    call.id = mistral_id(&call.id);
                }
                m.tool_call_id = m.tool_call_id.as_deref().map(mistral_id);
                m
            })
            .collect(),
        Syntax::Hermes | Syntax::Generic => chat.to_vec(),
    }
}

/// Nine letters and digits for call id `id`, the same for the same id (FNV-1a, in base 62).
fn mistral_id(id: &str) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_owned();
    }
    let mut hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (0..9)
        .map(|_| {
            let digit = DIGITS[(hash % 62) as usize];
            hash /= 62;
            char::from(digit)
        })
        .collect()
}

/// `{"name": <the tool's>, <key>: <its parameters>}`, nothing else.
fn call_schema(tool: &Tool, key: &str) -> Value {
    let mut arguments = inline_refs(&tool.parameters);
    if let Value::Object(o) = &mut arguments {
        o.entry("type").or_insert_with(|| "object".into());
    }
    json!({
        "type": "object",
        "properties": {"name": {"const": tool.name}, key: arguments},
        "required": ["name", key],
        "additionalProperties": false,
    })
}

/// `schema` with its local references (`#/$defs/...`, `#/definitions/...`) replaced by what they
/// name, so that it still means the same under `arguments` (llama.cpp's converter resolves them
/// from the root of the whole schema). A reference that recurses is left after a few levels; the
/// converter then refuses it.
fn inline_refs(schema: &Value) -> Value {
    fn walk(v: &Value, defs: &serde_json::Map<String, Value>, depth: usize) -> Value {
        match v {
            Value::Object(o) => {
                let target = o.get("$ref").and_then(Value::as_str).and_then(|r| {
                    r.strip_prefix("#/$defs/").or_else(|| r.strip_prefix("#/definitions/")).and_then(|n| defs.get(n))
                });
                match target {
                    Some(t) if depth < 16 => walk(t, defs, depth + 1),
                    _ => Value::Object(
                        o.iter()
                            .filter(|(k, _)| *k != "$defs" && *k != "definitions")
                            .map(|(k, v)| (k.clone(), walk(v, defs, depth)))
                            .collect(),
                    ),
                }
            }
            Value::Array(a) => Value::Array(a.iter().map(|v| walk(v, defs, depth)).collect()),
            other => other.clone(),
        }
    }
    let empty = serde_json::Map::new();
    let defs = schema.get("$defs").or_else(|| schema.get("definitions")).and_then(Value::as_object).unwrap_or(&empty);
    walk(schema, defs, 0)
}

fn one_of(mut schemas: Vec<Value>) -> Value {
    if schemas.len() == 1 {
        schemas.remove(0)
    } else {
        json!({"anyOf": schemas})
    }
}

/// The grammar of up to `most` blocks of `json_grammar`'s sentences (as llama.cpp's converter
/// writes it: its start rule `root`), each between the texts `open` and `close`, a newline or two
/// allowed inside and between them.
pub(crate) fn blocks_grammar(json_grammar: &str, open: &str, close: &str, most: usize) -> String {
    let literal = |text: &str| {
        let escaped: String = text
            .chars()
            .map(|c| match c {
                '"' => "\\\"".to_owned(),
                '\\' => "\\\\".to_owned(),
                '\n' => "\\n".to_owned(),
                c => c.to_string(),
            })
            .collect();
        format!("\"{escaped}\"")
    };
    let json: Vec<String> = json_grammar
        .lines()
        .map(|l| match l.strip_prefix("root ::=") {
            Some(rest) => format!("tc-json ::={rest}"),
            None => l.to_owned(),
        })
        .collect();
    let close = if close.is_empty() { String::new() } else { format!(" tc-space {}", literal(close)) };
    let more = match most.saturating_sub(1) {
        0 => String::new(),
        n => format!(" (tc-space tc-block){{0,{n}}}"),
    };
    format!(
        "root ::= tc-block{more}\ntc-block ::= {} tc-space tc-json{close}\ntc-space ::= [ \\n]{{0,2}}\n{}\n",
        literal(open),
        json.join("\n")
    )
}

/// `grammar` (llama.cpp's from a JSON schema) with at most one space where its `space` rule
/// allows up to two newlines and twenty blanks: a call's tokens go to the call, not to indents (the
/// default model, greedy, wrote a newline and indent before each argument).
pub(crate) fn compact(grammar: &str) -> String {
    let lines = grammar.lines().map(|l| if l.starts_with("space ::=") { r#"space ::= " "?"# } else { l });
    lines.collect::<Vec<_>>().join("\n")
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A call as the generic history and a template show it: the arguments as the object, when they
/// parse.
fn generic_call(call: &ToolCall) -> GenericCall<'_> {
    let arguments = serde_json::from_str(&call.arguments).unwrap_or_else(|_| Value::String(call.arguments.clone()));
    GenericCall { name: call.name.as_str().into(), arguments, id: Some(&call.id) }
}

/// A call as a chat template reads it (`message.tool_calls[i]`).
pub(crate) fn template_call(call: &ToolCall) -> TemplateCall<'_> {
    TemplateCall { id: &call.id, kind: "function", function: generic_call(call) }
}

#[cfg(test)]
mod tests {
    use super::syntax::{call_of, generic_calls, hermes_calls};
    use super::*;

    fn weather() -> Tool {
        let parameters = serde_json::from_str(
            r#"{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}"#,
        )
        .expect("schema");
        Tool::new("get_weather", "The weather in a city", parameters)
    }

    /// What `new` makes of these tools and this choice.
    fn offer(syntax: Syntax, tools: &[Tool], choice: Option<&ToolChoice>, parallel: bool) -> Option<ToolUse> {
        let config = Config {
            tools: tools.to_vec(),
            tool_choice: choice.cloned(),
            parallel_tool_calls: Some(parallel),
            ..Config::default()
        };
        ToolUse::new(syntax, &config)
    }

    fn feed_all(reader: &mut CallReader, pieces: &[&str]) -> String {
        pieces.iter().map(|p| reader.feed(p)).collect()
    }

    #[test]
    fn generic_calls_are_read_and_never_shown() {
        let tools = offer(Syntax::Generic, &[weather()], Some(&ToolChoice::Required), true).expect("offered");
        let mut reader = tools.reader();
        let pieces = ["{\"tool", "_calls\": [{\"name\": \"get_weather\", ", "\"arguments\": {\"city\": \"Oslo\"}}]}"];
        assert_eq!(feed_all(&mut reader, &pieces), "");
        let (text, calls, rest) = reader.finish(&pieces.concat());
        assert_eq!((text.as_str(), rest.as_str()), ("", ""));
        assert_eq!(calls.len(), 1);
        assert_eq!((calls[0].name.as_str(), calls[0].arguments.as_str()), ("get_weather", r#"{"city":"Oslo"}"#));
        assert!(calls[0].id.starts_with("call_"));
    }

    #[test]
    fn a_generic_response_streams_as_text() {
        let tools = offer(Syntax::Generic, &[weather()], None, true).expect("offered");
        let mut reader = tools.reader();
        let pieces = ["{ \"resp", "onse\" : \"It is ", "sunny \\\"", "today\\n\\u00e9", "\"}"];
        let shown = feed_all(&mut reader, &pieces);
        let (text, calls, rest) = reader.finish(&pieces.concat());
        assert!(calls.is_empty());
        assert_eq!(text, "It is sunny \"today\n\u{e9}");
        assert_eq!(format!("{shown}{rest}"), text, "shown while streaming, then the rest");
    }

    #[test]
    fn hermes_text_streams_up_to_a_call_and_the_call_is_read() {
        let tools = offer(Syntax::Hermes, &[weather()], None, true).expect("offered");
        let trigger = tools.constraint().and_then(|c| c.trigger());
        assert_eq!(trigger, Some("<tool_call>"), "a Hermes model may answer freely until a call starts");
        let mut reader = tools.reader();
        let pieces = [
            "Let me check.",
            "\n<tool",
            "_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
        ];
        let shown = feed_all(&mut reader, &pieces);
        assert_eq!(shown, "Let me check.", "no call syntax is shown");
        let (text, calls, rest) = reader.finish(&pieces.concat());
        assert_eq!((text.as_str(), rest.as_str(), calls.len()), ("Let me check.", "", 1));
        assert_eq!(calls[0].arguments, r#"{"city":"Oslo"}"#);
        // Two calls in a row, and a block that is not a call stays text.
        // Text of any script streams without cutting a character; a call cut short is not text.
        let mut reader = tools.reader();
        let shown = feed_all(&mut reader, &["Vær så god: ", "café", "\u{1F600}", "<tool_c"]);
        assert_eq!(shown, "Vær så god: café\u{1F600}");
        let (text, calls, rest) = reader.finish("Vær så god: café\u{1F600}<tool_call>{\"name\": \"get_we");
        assert_eq!((text.as_str(), calls.len(), rest.as_str()), ("Vær så god: café\u{1F600}", 0, ""));
        let (text, calls) = hermes_calls(
            "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"b\", \"parameters\": {\"x\": 1}}</tool_call><tool_call>nope</tool_call>",
        );
        assert_eq!(calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(calls[1].arguments, r#"{"x":1}"#);
        assert_eq!(text, "<tool_call>nope</tool_call>");
        assert_ne!(calls[0].id, calls[1].id);
    }

    #[test]
    fn compact_grammars_allow_one_space() {
        let g = "root ::= \"{\" space \"}\"\nspace ::= | \" \" | \"\\n\"{1,2} [ \\t]{0,20}\nother ::= space";
        assert_eq!(compact(g), "root ::= \"{\" space \"}\"\nspace ::= \" \"?\nother ::= space");
    }

    #[test]
    fn the_constraint_follows_the_choice() {
        let other = Tool::new("other", "", json!({}));
        let tools = [weather(), other];
        let named =
            offer(Syntax::Generic, &tools, Some(&ToolChoice::Function("other".into())), false).expect("offered");
        let Some(Constraint::Json(schema)) = named.constraint() else { panic!("generic is JSON") };
        assert_eq!(schema["properties"]["tool_calls"]["items"]["properties"]["name"]["const"], "other");
        assert_eq!(schema["properties"]["tool_calls"]["maxItems"], 1, "one call when not parallel");
        let auto = offer(Syntax::Generic, &tools, None, true).expect("offered");
        let Some(Constraint::Json(schema)) = auto.constraint() else { panic!("generic is JSON") };
        assert_eq!(schema["anyOf"][1]["required"][0], "response", "auto may answer");
        let most = &schema["anyOf"][0]["properties"]["tool_calls"]["maxItems"];
        assert_eq!(most, MAX_PARALLEL_CALLS, "parallel calls are bounded");
        let hermes = offer(Syntax::Hermes, &tools, Some(&ToolChoice::Required), true).expect("offered");
        let Some(Constraint::Blocks { schema, open, most, lazy, .. }) = hermes.constraint() else { panic!("forced") };
        assert_eq!((schema["anyOf"].as_array().map(Vec::len), open), (Some(2), "<tool_call>"));
        assert_eq!((most, lazy), (MAX_PARALLEL_CALLS, false), "forced from the start, parallel blocks bounded");
        let llama = offer(Syntax::Llama3, &tools, Some(&ToolChoice::Required), true).expect("offered");
        let Some(Constraint::Json(schema)) = llama.constraint() else { panic!("forced, bare JSON") };
        assert_eq!(schema["anyOf"][0]["required"], json!(["name", "parameters"]), "Llama 3.x's key");
        let mistral = offer(Syntax::Mistral, &tools, Some(&ToolChoice::Required), false).expect("offered");
        let Some(Constraint::Blocks { schema, open, close, .. }) = mistral.constraint() else { panic!("forced") };
        assert_eq!((open, close, &schema["maxItems"]), ("[TOOL_CALLS]", "", &json!(1)));
        // Free to answer: calls held to their schemas from where one starts, Llama 3.x's not at all.
        for (syntax, trigger) in [(Syntax::Hermes, Some("<tool_call>")), (Syntax::Mistral, Some("[TOOL_CALLS]"))] {
            let auto = offer(syntax, &tools, None, true).expect("offered").constraint().expect("lazy");
            assert_eq!(auto.trigger(), trigger, "{syntax:?}");
        }
        assert_eq!(offer(Syntax::Llama3, &tools, None, true).expect("offered").constraint(), None);
        for syntax in [Syntax::Hermes, Syntax::Llama3, Syntax::Mistral] {
            let auto = offer(syntax, &tools, None, true).expect("offered");
            assert_eq!(auto.template_tools().len(), 2, "{syntax:?}'s template renders the tools");
        }
        assert!(offer(Syntax::Generic, &tools, Some(&ToolChoice::None), true).is_none());
        assert!(offer(Syntax::Generic, &[], None, true).is_none());
    }

    #[test]
    fn the_generic_history_carries_calls_and_results_as_json() {
        let tools = offer(Syntax::Generic, &[weather()], None, true).expect("offered");
        let call = ToolCall { id: "call_1".into(), name: "get_weather".into(), arguments: r#"{"city":"Oslo"}"#.into() };
        let chat = [
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Weather in Oslo?"),
            ChatMessage::tool_calls("", vec![call]),
            ChatMessage::tool_result("call_1", "sunny"),
        ];
        let messages = tools.messages(&chat);
        assert!(messages[0].content.starts_with("Be brief.\n\nYou can use these tools:"), "{}", messages[0].content);
        assert!(messages[0].content.contains("get_weather"));
        let assistant: Value = serde_json::from_str(&messages[2].content).expect("JSON");
        assert_eq!(assistant["tool_calls"][0]["arguments"]["city"], "Oslo");
        assert_eq!(messages[3].role, "user");
        let result: Value = serde_json::from_str(&messages[3].content).expect("JSON");
        let first = &result["tool_responses"][0];
        assert_eq!((&first["id"], &first["content"]), (&json!("call_1"), &json!("sunny")));
        // Two results in a row are one user message; text beside calls stays.
        let call = ToolCall { id: "c".into(), name: "get_weather".into(), arguments: "{}".into() };
        let chat = [
            ChatMessage::tool_calls("Checking.", vec![call.clone(), call]),
            ChatMessage::tool_result("c", "a"),
            ChatMessage::tool_result("c", "b"),
            ChatMessage::new("user", "thanks"),
        ];
        let history = generic_history(&chat);
        assert_eq!(history.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(), ["assistant", "user", "user"]);
        assert!(history[0].content.starts_with("Checking.\n{\"tool_calls\""), "{}", history[0].content);
        assert!(chat.iter().any(ChatMessage::is_tool_traffic) && !history.iter().any(ChatMessage::is_tool_traffic));
    }

    #[test]
    fn block_grammars_hold_the_json_between_the_texts() {
        let json = "root ::= \"{\" space \"}\"\nspace ::= \" \"?";
        let g = blocks_grammar(json, "<tool_call>", "</tool_call>", 3);
        assert_eq!(
            g,
            "root ::= tc-block (tc-space tc-block){0,2}\n\
             tc-block ::= \"<tool_call>\" tc-space tc-json tc-space \"</tool_call>\"\n\
             tc-space ::= [ \\n]{0,2}\ntc-json ::= \"{\" space \"}\"\nspace ::= \" \"?\n"
        );
        let g = blocks_grammar(json, "[TOOL_CALLS]", "", 1);
        assert!(g.starts_with("root ::= tc-block\ntc-block ::= \"[TOOL_CALLS]\" tc-space tc-json\n"), "{g}");
        // A call cut short is not text.
        assert_eq!(generic_calls("{\"tool_calls\": [{\"na"), (String::new(), Vec::new()));
        assert_eq!(generic_calls("{\"response\": \"Hel").0, "Hel");
    }

    #[test]
    fn references_are_inlined_and_arguments_are_objects() {
        let schema =
            r##"{"$defs": {"Day": {"enum": ["mon", "tue"]}}, "properties": {"day": {"$ref": "#/$defs/Day"}}}"##;
        let nested = Tool::new("book", "", serde_json::from_str(schema).expect("schema"));
        let call = call_schema(&nested, "arguments");
        let arguments = &call["properties"]["arguments"];
        assert_eq!(arguments["properties"]["day"]["enum"][0], "mon");
        assert_eq!(arguments["type"], "object");
        assert!(arguments.get("$defs").is_none());
        let as_string: GenericCall = serde_json::from_str(r#"{"name": "f", "arguments": "Oslo"}"#).expect("reads");
        assert_eq!(call_of(as_string).arguments, r#""Oslo""#, "arguments are JSON text");
        let as_json: GenericCall = serde_json::from_str(r#"{"name": "f", "arguments": "{\"a\": 1}"}"#).expect("reads");
        assert_eq!(call_of(as_json).arguments, r#"{"a": 1}"#);
    }

    #[test]
    fn each_familys_templates_are_recognised() {
        assert_eq!(syntax_of("{% if tools %}<tool_call>{% endif %}"), Syntax::Hermes);
        assert_eq!(syntax_of("{{ messages }}"), Syntax::Generic);
        let xml = "{% if tools %}<tool_call>\n<function={{ name }}>{% endif %}";
        assert_eq!(syntax_of(xml), Syntax::Generic);
        assert_eq!(syntax_of("{% for t in tools %}[AVAILABLE_TOOLS]{% endfor %}[TOOL_CALLS]"), Syntax::Mistral);
        let llama = "{% if tools %}\"parameters\"{% endif %}<|start_header_id|>ipython<|end_header_id|>";
        assert_eq!(syntax_of(llama), Syntax::Llama3);
        assert_eq!(syntax_of("<|start_header_id|>user<|end_header_id|>"), Syntax::Generic, "Llama 3.0: no tools");
    }

    #[test]
    fn llama3_answers_are_calls_when_they_are_json_calls() {
        let tools = offer(Syntax::Llama3, &[weather()], None, false).expect("offered");
        let mut reader = tools.reader();
        let pieces = [" {\"name\": \"get_weather\", ", "\"parameters\": {\"city\": \"Oslo\"}}"];
        assert_eq!(feed_all(&mut reader, &pieces), "", "a call is never shown");
        let (text, calls, rest) = reader.finish(&pieces.concat());
        assert_eq!((text.as_str(), rest.as_str(), calls.len()), ("", "", 1));
        assert_eq!((calls[0].name.as_str(), calls[0].arguments.as_str()), ("get_weather", r#"{"city":"Oslo"}"#));
        // Text streams; JSON that is not a call is text; a call cut short is not.
        let mut reader = tools.reader();
        assert_eq!(feed_all(&mut reader, &["It is ", "sunny. "]), "It is sunny.");
        assert_eq!(reader.finish("It is sunny. ").2, "");
        let mut reader = tools.reader();
        assert_eq!(feed_all(&mut reader, &["{\"a\": 1}"]), "");
        assert_eq!(reader.finish("{\"a\": 1}"), ("{\"a\": 1}".to_owned(), Vec::new(), "{\"a\": 1}".to_owned()));
        let cut = tools.reader().finish("{\"name\": \"get_wea");
        assert_eq!((cut.0.as_str(), cut.1.len()), ("", 0));
        // Several calls (`;` between), after the Python tag.
        let two = "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {}}";
        let (_, calls, _) = offer(Syntax::Llama3, &[weather()], None, true).expect("offered").reader().finish(two);
        assert_eq!(calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn mistral_calls_are_read_in_both_forms() {
        let tools = offer(Syntax::Mistral, &[weather()], None, true).expect("offered");
        let mut reader = tools.reader();
        let pieces = [
            "Checking",
            " now.[TOOL",
            "_CALLS][{\"name\": \"get_weather\", ",
            "\"arguments\": {\"city\": \"Oslo\"}, \"id\": \"a1b2c3d4e\"}]",
        ];
        assert_eq!(feed_all(&mut reader, &pieces), "Checking now.");
        let (text, calls, rest) = reader.finish(&pieces.concat());
        assert_eq!((text.as_str(), rest.as_str(), calls.len()), ("Checking now.", "", 1));
        assert_eq!(calls[0].arguments, r#"{"city":"Oslo"}"#);
        let newer = "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}[TOOL_CALLS]other[CALL_ID]x1[ARGS]{}";
        let (text, calls, _) = tools.reader().finish(newer);
        assert_eq!(text, "");
        assert_eq!(
            calls.iter().map(|c| (c.name.as_str(), c.arguments.as_str())).collect::<Vec<_>>(),
            [("get_weather", r#"{"city":"Oslo"}"#), ("other", "{}")]
        );
        assert_eq!(tools.reader().finish("[TOOL_CALLS][{\"name\": \"get_w").1.len(), 0, "cut short");
        assert_eq!(tools.reader().finish("[TOOL_CALLS] Hello there").0, "[TOOL_CALLS] Hello there", "no call: text");
    }

    #[test]
    fn family_histories_are_what_their_templates_take() {
        let call = |id: &str| ToolCall { id: id.into(), name: "get_weather".into(), arguments: "{}".into() };
        let chat = [
            ChatMessage::new("user", "Weather?"),
            ChatMessage::tool_calls("", vec![call("call_0001"), call("call_0002")]),
            ChatMessage::tool_result("call_0001", "sunny"),
            ChatMessage::tool_result("call_0002", "rain"),
        ];
        let llama = family_history(Syntax::Llama3, &chat);
        let calls_each: Vec<usize> = llama.iter().map(|m| m.tool_calls.len()).collect();
        assert_eq!(calls_each, [0, 1, 1, 0, 0], "one call per message");
        let mistral = family_history(Syntax::Mistral, &chat);
        let ids = [&mistral[1].tool_calls[0].id, &mistral[1].tool_calls[1].id];
        for id in ids {
            assert!(id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        }
        assert_ne!(ids[0], ids[1]);
        assert_eq!((mistral[2].tool_call_id.as_ref(), mistral[3].tool_call_id.as_ref()), (Some(ids[0]), Some(ids[1])));
        assert_eq!(mistral_id("abcDEF123"), "abcDEF123", "a Mistral id stays");
    }
}
