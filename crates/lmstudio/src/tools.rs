//! Tool calls in a chat: how the tools reach the model, how its output is held to a call when one
//! is required, and how calls are read back out of the text, while it streams.
//!
//! Two syntaxes. A chat template that knows tools and writes calls as Hermes' (Qwen's)
//! `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` gets the tools itself and the model
//! answers in that syntax. Any other template gets the generic form (llama.cpp's `common/chat`
//! does the same for models without a tool syntax): a system message lists the tools and asks for
//! JSON, `{"tool_calls": [{"name": ..., "arguments": {...}}]}` or `{"response": "..."}`, and the
//! output is constrained to exactly that JSON, so even a small model answers in a form that
//! parses. A required or named call is constrained in both syntaxes: its arguments validate
//! against the tool's schema. Pure: no engine here.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
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

/// The generic answer's form, both ways: `{"tool_calls": [...]}` or `{"response": "..."}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum GenericAnswer<'a> {
    Calls {
        #[serde(borrow)]
        tool_calls: Vec<GenericCall<'a>>,
    },
    Response {
        response: String,
    },
}

/// `{"name": ..., "arguments": {...}}`; the id only in the history we write.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GenericCall<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    /// Hermes models write `parameters` at times.
    #[serde(default, alias = "parameters")]
    arguments: Value,
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    id: Option<&'a str>,
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

/// How a model's template and output carry tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// The template renders `tools`; calls are `<tool_call>{json}</tool_call>`.
    Hermes,
    /// Tools in a system message; the whole answer is JSON.
    Generic,
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";

/// The syntax of a model whose chat template is `source`.
pub(crate) fn syntax_of(source: &str) -> Syntax {
    // Qwen3-Coder's and GLM's calls are XML inside the same tag (`<function=...>`, `<arg_key>`):
    // not this syntax.
    let xml_inside = source.contains("<function=") || source.contains("<arg_key>");
    if source.contains("tools") && source.contains(HERMES_OPEN) && !xml_inside {
        Syntax::Hermes
    } else {
        Syntax::Generic
    }
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
    /// JSON of this schema (the generic syntax).
    Json(Value),
    /// One Hermes call block whose JSON follows this schema.
    HermesCall(Value),
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
            Syntax::Hermes => self.tools.iter().map(|t| TemplateTool { kind: "function", function: t }).collect(),
            Syntax::Generic => Vec::new(),
        }
    }

    /// The chat as the template is given it. Generic: the tools and the answer's form in the
    /// system message, earlier calls and results as the JSON the model writes and reads.
    pub(crate) fn messages(&self, chat: &[ChatMessage]) -> Vec<ChatMessage> {
        if self.syntax == Syntax::Hermes {
            return chat.to_vec();
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

    /// What the output is held to: the generic JSON always (a call or a response); a Hermes call
    /// block when a call is required; nothing for a Hermes model that may answer freely.
    pub(crate) fn constraint(&self) -> Option<Constraint> {
        let offered: Vec<&Tool> = match &self.choice {
            ToolChoice::Function(name) => self.tools.iter().filter(|t| &t.name == name).collect(),
            _ => self.tools.iter().collect(),
        };
        let call = one_of(offered.iter().map(|t| call_schema(t)).collect());
        let forced = !matches!(self.choice, ToolChoice::Auto | ToolChoice::None);
        match self.syntax {
            Syntax::Hermes => forced.then_some(Constraint::HermesCall(call)),
            Syntax::Generic => {
                let most = if self.parallel { MAX_PARALLEL_CALLS } else { 1 };
                let array = json!({"type": "array", "items": call, "minItems": 1, "maxItems": most});
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
        CallReader { syntax: self.syntax, parallel: self.parallel, output: String::new(), shown: 0 }
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

/// `{"name": <the tool's>, "arguments": <its parameters>}`, nothing else.
fn call_schema(tool: &Tool) -> Value {
    let mut arguments = inline_refs(&tool.parameters);
    if let Value::Object(o) = &mut arguments {
        o.entry("type").or_insert_with(|| "object".into());
    }
    json!({
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": arguments},
        "required": ["name", "arguments"],
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

/// The grammar of a Hermes call block, around the grammar of its JSON (`call_grammar`, as
/// llama.cpp's converter writes it: its start rule `root`).
pub(crate) fn hermes_grammar(call_grammar: &str) -> String {
    let call: Vec<String> = call_grammar
        .lines()
        .map(|l| match l.strip_prefix("root ::=") {
            Some(rest) => format!("call ::={rest}"),
            None => l.to_owned(),
        })
        .collect();
    format!("root ::= \"{HERMES_OPEN}\\n\" call \"\\n{HERMES_CLOSE}\"\n{}\n", call.join("\n"))
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

/// Reads a prediction's output as it streams: what of it is text to show (never call syntax),
/// and at the end, the text and the calls.
#[derive(Debug)]
pub(crate) struct CallReader {
    syntax: Syntax,
    /// Several calls taken; else the first alone (a model may write more than it was allowed).
    parallel: bool,
    output: String,
    /// Bytes of visible text already given out.
    shown: usize,
}

impl CallReader {
    /// Takes the next piece of output; returns the text to show now.
    pub(crate) fn feed(&mut self, piece: &str) -> String {
        self.output.push_str(piece);
        let visible = match self.syntax {
            Syntax::Hermes => hermes_text_so_far(&self.output).to_owned(),
            Syntax::Generic => generic_response_so_far(&self.output),
        };
        match visible.get(self.shown..) {
            Some(new) if visible.len() > self.shown => {
                self.shown = visible.len();
                new.to_owned()
            }
            _ => String::new(),
        }
    }

    /// The whole output read: the answer's text, the calls, and the text not shown yet.
    pub(crate) fn finish(&mut self, output: &str) -> (String, Vec<ToolCall>, String) {
        let (text, mut calls) = match self.syntax {
            Syntax::Hermes => hermes_calls(output),
            Syntax::Generic => generic_calls(output),
        };
        if !self.parallel {
            calls.truncate(1);
        }
        let rest = text.get(self.shown..).unwrap_or_default().to_owned();
        (text, calls, rest)
    }
}

/// The text before the first call block, less any end that may be the start of one.
/// Trimmed as the whole answer's text is, so that what streams is a prefix of it: trailing space
/// waits for the text after it.
fn hermes_text_so_far(output: &str) -> &str {
    let before = output.find(HERMES_OPEN).map_or(output, |at| &output[..at]);
    // The tag is ASCII: a tail that starts it ends on a character boundary.
    let bytes = before.as_bytes();
    let keep = (1..HERMES_OPEN.len())
        .rev()
        .find(|&n| bytes.len() >= n && HERMES_OPEN.as_bytes().starts_with(&bytes[bytes.len() - n..]))
        .map_or(before.len(), |n| before.len() - n);
    before.get(..keep).unwrap_or_default().trim()
}

/// The text outside call blocks (trimmed) and the calls in them. A block whose JSON does not
/// read as a call stays text.
fn hermes_calls(output: &str) -> (String, Vec<ToolCall>) {
    let (mut text, mut calls, mut rest) = (String::new(), Vec::new(), output);
    while let Some(open) = rest.find(HERMES_OPEN) {
        let body_start = open + HERMES_OPEN.len();
        let (body, after, closed) = match rest[body_start..].find(HERMES_CLOSE) {
            Some(close) => (&rest[body_start..body_start + close], body_start + close + HERMES_CLOSE.len(), true),
            None => (&rest[body_start..], rest.len(), false),
        };
        match serde_json::from_str::<GenericCall>(body.trim()).ok().map(call_of) {
            Some(call) => {
                text.push_str(&rest[..open]);
                calls.push(call);
            }
            // A block that ends and is not a call is the model's text; one cut short (a token
            // limit) is a call that never finished, never text.
            None if closed => text.push_str(&rest[..after]),
            None => text.push_str(&rest[..open]),
        }
        rest = &rest[after..];
    }
    text.push_str(rest);
    (text.trim().to_owned(), calls)
}

/// The generic answer: its calls, or its response as the text (output that is neither stays text).
fn generic_calls(output: &str) -> (String, Vec<ToolCall>) {
    match serde_json::from_str::<GenericAnswer>(output.trim()) {
        Ok(GenericAnswer::Calls { tool_calls }) => (String::new(), tool_calls.into_iter().map(call_of).collect()),
        Ok(GenericAnswer::Response { response }) => (response, Vec::new()),
        // Cut short (a token limit): what there is of a response; a call's JSON is never text.
        Err(_) => (generic_response_so_far(output), Vec::new()),
    }
}

/// The response string of a generic answer so far, as far as it is decoded: nothing until the
/// output is seen to be `{"response": "...`.
fn generic_response_so_far(output: &str) -> String {
    let mut s = output;
    for token in ["{", "\"response\"", ":", "\""] {
        match s.trim_start_matches(|c: char| c.is_ascii_whitespace()).strip_prefix(token) {
            Some(rest) => s = rest,
            None => return String::new(),
        }
    }
    decode_partial_string(s)
}

/// Decodes a JSON string's characters from `s` (just after its opening quote) up to its closing
/// quote or the last whole escape.
fn decode_partial_string(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => {
                let Some(e) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        if hex.len() < 4 {
                            break;
                        }
                        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                            Some(c) => out.push(c),
                            // Half of a surrogate pair: the whole answer decodes it at the end.
                            None => break,
                        }
                    }
                    other => out.push(other),
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// A call with a fresh id; its arguments as JSON text (none: `{}`).
fn call_of(call: GenericCall<'_>) -> ToolCall {
    let arguments = match call.arguments {
        // Arguments written as a string of JSON (some models do): that JSON.
        Value::String(s) if serde_json::from_str::<Value>(&s).is_ok_and(|v| v.is_object()) => s,
        Value::Null => "{}".to_owned(),
        other => other.to_string(),
    };
    ToolCall { id: call_id(), name: call.name.into_owned(), arguments }
}

/// A fresh call id, `call_` and 24 hex digits, unique in this process.
fn call_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    format!("call_{:016x}{:08x}", nanos, n as u32)
}

#[cfg(test)]
mod tests {
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
        assert_eq!(tools.constraint(), None, "a Hermes model may answer freely");
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
        let Some(Constraint::HermesCall(schema)) = hermes.constraint() else { panic!("forced") };
        assert_eq!(schema["anyOf"].as_array().map(Vec::len), Some(2));
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
    fn the_hermes_grammar_wraps_the_calls_grammar() {
        let g = hermes_grammar("root ::= \"{\" space \"}\"\nspace ::= \" \"?");
        assert_eq!(
            g,
            "root ::= \"<tool_call>\\n\" call \"\\n</tool_call>\"\ncall ::= \"{\" space \"}\"\nspace ::= \" \"?\n"
        );
        // A call cut short is not text.
        assert_eq!(generic_calls("{\"tool_calls\": [{\"na"), (String::new(), Vec::new()));
        assert_eq!(generic_calls("{\"response\": \"Hel").0, "Hel");
    }

    #[test]
    fn references_are_inlined_and_arguments_are_objects() {
        let schema =
            r##"{"$defs": {"Day": {"enum": ["mon", "tue"]}}, "properties": {"day": {"$ref": "#/$defs/Day"}}}"##;
        let nested = Tool::new("book", "", serde_json::from_str(schema).expect("schema"));
        let call = call_schema(&nested);
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
    fn hermes_templates_are_recognised() {
        assert_eq!(syntax_of("{% if tools %}<tool_call>{% endif %}"), Syntax::Hermes);
        assert_eq!(syntax_of("{{ messages }}"), Syntax::Generic);
        let xml = "{% if tools %}<tool_call>\n<function={{ name }}>{% endif %}";
        assert_eq!(syntax_of(xml), Syntax::Generic);
    }
}
