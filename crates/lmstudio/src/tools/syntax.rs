//! Each family's tool-call syntax: how a template is recognised, its markers, and reading calls
//! out of a prediction's output while it streams: the text to show (never call syntax) as it
//! comes, and at the end, the answer's text and its calls.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::tools::ToolCall;

/// How a model's template and output carry tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// The template renders `tools`; calls are `<tool_call>{json}</tool_call>`.
    Hermes,
    /// Llama 3.x: the template renders `tools`; a call is the whole answer,
    /// `{"name": ..., "parameters": {...}}`, one per answer.
    Llama3,
    /// Mistral: the template renders `tools`; calls follow `[TOOL_CALLS]`, as a JSON array, or
    /// each as `name[ARGS]{...}`; the template wants call ids of nine letters and digits.
    Mistral,
    /// Tools in a system message; the whole answer is JSON.
    Generic,
}

pub(super) const HERMES_OPEN: &str = "<tool_call>";
pub(super) const HERMES_CLOSE: &str = "</tool_call>";
pub(super) const MISTRAL_OPEN: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";
const MISTRAL_CALL_ID: &str = "[CALL_ID]";
/// Llama 3.1's marker of a call to its built-in tools, which some answers put before a JSON call.
const LLAMA_PYTHON_TAG: &str = "<|python_tag|>";

/// The markers of the syntaxes above. Where a vocabulary has one as a control token (Mistral's
/// `[TOOL_CALLS]`), the engine writes it out as text, as it does ordinary tokens, so that the
/// output can be read: llama.cpp leaves control tokens out of the text by default.
pub(crate) const SYNTAX_MARKERS: [&str; 6] =
    [HERMES_OPEN, HERMES_CLOSE, MISTRAL_OPEN, MISTRAL_ARGS, MISTRAL_CALL_ID, LLAMA_PYTHON_TAG];

/// The syntax of a model whose chat template is `source`.
pub(crate) fn syntax_of(source: &str) -> Syntax {
    // Qwen3-Coder's and GLM's calls are XML inside the same tag (`<function=...>`, `<arg_key>`):
    // not this syntax.
    let xml_inside = source.contains("<function=") || source.contains("<arg_key>");
    if !source.contains("tools") {
        Syntax::Generic
    } else if source.contains(HERMES_OPEN) && !xml_inside {
        Syntax::Hermes
    } else if source.contains(MISTRAL_OPEN) {
        Syntax::Mistral
    } else if source.contains("<|start_header_id|>ipython<|end_header_id|>") && source.contains("parameters") {
        Syntax::Llama3
    } else {
        Syntax::Generic
    }
}

/// The generic answer's form, both ways: `{"tool_calls": [...]}` or `{"response": "..."}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum GenericAnswer<'a> {
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
    pub(super) name: std::borrow::Cow<'a, str>,
    /// Hermes models write `parameters` at times.
    #[serde(default, alias = "parameters")]
    pub(super) arguments: Value,
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub(super) id: Option<&'a str>,
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
    pub(super) fn new(syntax: Syntax, parallel: bool) -> Self {
        Self { syntax, parallel, output: String::new(), shown: 0 }
    }

    /// Takes the next piece of output; returns the text to show now.
    pub(crate) fn feed(&mut self, piece: &str) -> String {
        self.output.push_str(piece);
        let visible = match self.syntax {
            Syntax::Hermes => text_before(&self.output, HERMES_OPEN).to_owned(),
            Syntax::Mistral => text_before(&self.output, MISTRAL_OPEN).to_owned(),
            Syntax::Llama3 => llama3_text_so_far(&self.output).to_owned(),
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
            Syntax::Mistral => mistral_calls(output),
            Syntax::Llama3 => llama3_calls(output),
            Syntax::Generic => generic_calls(output),
        };
        if !self.parallel {
            calls.truncate(1);
        }
        let rest = text.get(self.shown..).unwrap_or_default().to_owned();
        (text, calls, rest)
    }
}

/// The text before the first `marker` (where calls start), less any end that may be the start
/// of one. Trimmed as the whole answer's text is, so that what streams is a prefix of it: trailing
/// space waits for the text after it.
fn text_before<'a>(output: &'a str, marker: &str) -> &'a str {
    let before = output.find(marker).map_or(output, |at| &output[..at]);
    // Markers are ASCII: a tail that starts one ends on a character boundary.
    let bytes = before.as_bytes();
    let keep = (1..marker.len())
        .rev()
        .find(|&n| bytes.len() >= n && marker.as_bytes().starts_with(&bytes[bytes.len() - n..]))
        .map_or(before.len(), |n| before.len() - n);
    before.get(..keep).unwrap_or_default().trim()
}

/// A Llama 3.x answer's text so far: nothing while it may be a call (it is one when it opens
/// with `{` or the Python tag), the trimmed output otherwise.
fn llama3_text_so_far(output: &str) -> &str {
    let text = output.trim();
    let may_call = text.is_empty()
        || text.starts_with('{')
        || text.starts_with(LLAMA_PYTHON_TAG)
        || LLAMA_PYTHON_TAG.starts_with(text);
    if may_call {
        ""
    } else {
        text
    }
}

/// A Llama 3.x answer: its calls when it is one or more call objects (after the Python tag, if
/// any; separated by `;` or space), else its text. A call cut short is not text.
fn llama3_calls(output: &str) -> (String, Vec<ToolCall>) {
    let text = output.trim();
    let body = text.strip_prefix(LLAMA_PYTHON_TAG).unwrap_or(text).trim_start();
    if !body.starts_with('{') {
        return (text.to_owned(), Vec::new());
    }
    match json_calls(body) {
        Ok(calls) => (String::new(), calls),
        Err(cut) if cut && looks_like_a_call(body) => (String::new(), Vec::new()),
        Err(_) => (text.to_owned(), Vec::new()),
    }
}

/// Call objects one after another in `s`, separated by space or `;`; `Err(true)` when `s` ends
/// inside one (cut short), `Err(false)` when it is something else.
fn json_calls(s: &str) -> Result<Vec<ToolCall>, bool> {
    let mut calls = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<GenericCall>();
        match values.next() {
            Some(Ok(call)) => calls.push(call_of(call)),
            Some(Err(e)) => return Err(e.is_eof()),
            None => break,
        }
        rest = rest[values.byte_offset()..].trim_start_matches(|c: char| c.is_whitespace() || c == ';');
    }
    if calls.is_empty() {
        Err(false)
    } else {
        Ok(calls)
    }
}

/// Whether JSON cut short began as a call: `{"name"` (or `{"type"`), or a prefix of that.
fn looks_like_a_call(s: &str) -> bool {
    let inside = s.trim_start_matches('{').trim_start();
    ["\"name\"", "\"type\""].iter().any(|key| inside.starts_with(key) || key.starts_with(inside))
}

/// Mistral's calls: the text before `[TOOL_CALLS]`, and after it a JSON array of calls, or calls
/// written `name[ARGS]{...}` (with `[CALL_ID]id` before `[ARGS]` in some versions), each after its
/// own `[TOOL_CALLS]`. What follows that reads as no call stays text, unless cut short.
fn mistral_calls(output: &str) -> (String, Vec<ToolCall>) {
    let Some(at) = output.find(MISTRAL_OPEN) else { return (output.trim().to_owned(), Vec::new()) };
    let mut calls = Vec::new();
    let mut cut = false;
    for part in output[at..].split(MISTRAL_OPEN).skip(1) {
        let part = part.trim();
        if part.starts_with('[') {
            let mut values = serde_json::Deserializer::from_str(part).into_iter::<Vec<GenericCall>>();
            match values.next() {
                Some(Ok(list)) => calls.extend(list.into_iter().map(call_of)),
                Some(Err(e)) => cut |= e.is_eof(),
                None => {}
            }
        } else if let Some((name, arguments)) = part.split_once(MISTRAL_ARGS) {
            let name = name.split(MISTRAL_CALL_ID).next().unwrap_or_default().trim();
            let mut values = serde_json::Deserializer::from_str(arguments.trim()).into_iter::<Value>();
            match values.next() {
                Some(Ok(arguments)) if !name.is_empty() => {
                    calls.push(call_of(GenericCall { name: name.into(), arguments, id: None }));
                }
                Some(Err(e)) => cut |= e.is_eof(),
                _ => {}
            }
        } else if part.chars().all(|c| c.is_alphanumeric() || "_-.:".contains(c)) {
            cut = true; // a name not yet followed by its arguments
        }
    }
    let text = output[..at].trim();
    if calls.is_empty() && !cut {
        return (output.trim().to_owned(), Vec::new());
    }
    (text.to_owned(), calls)
}

/// The text outside call blocks (trimmed) and the calls in them. A block whose JSON does not
/// read as a call stays text.
pub(super) fn hermes_calls(output: &str) -> (String, Vec<ToolCall>) {
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
pub(super) fn generic_calls(output: &str) -> (String, Vec<ToolCall>) {
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
pub(super) fn call_of(call: GenericCall<'_>) -> ToolCall {
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
