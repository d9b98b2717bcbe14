//! The request body of `/v1/responses` (OpenAI's Responses API), and how it becomes a chat and a
//! config: every field is read or refused by name.

use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// A Responses request. Any field not named here is refused ([`refuse_unsupported`]).
#[derive(Debug, Deserialize)]
pub(crate) struct ResponsesRequest {
    pub model: Option<String>,
    /// A string (one user message), or items.
    input: Value,
    /// A system message for this response only (not carried by `previous_response_id`).
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Function tools in the flat shape: `{"type": "function", "name", "description", "parameters"}`.
    #[serde(default)]
    tools: Vec<ToolIn>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub previous_response_id: Option<String>,
    /// Whether the response is kept for `previous_response_id` and `GET` (default: yes).
    pub store: Option<bool>,
    #[serde(default)]
    pub stream: bool,
    /// `{"format": {"type": "text" | "json_object" | "json_schema", "schema"}}`.
    pub text: Option<Value>,
    pub metadata: Option<Value>,
    /// llama.cpp's extension: a GBNF grammar the output follows.
    grammar: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// A function tool, flat. `strict` is taken: forced calls always follow the schema.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolIn {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    description: Option<String>,
    parameters: Option<Value>,
    #[allow(dead_code)]
    strict: Option<bool>,
}

/// An input item.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ItemIn {
    Message {
        role: String,
        content: Value,
    },
    FunctionCall {
        call_id: String,
        name: String,
        #[serde(default)]
        arguments: String,
    },
    FunctionCallOutput {
        /// The call it answers. Codex (0.171) sometimes leaves it out and names the function
        /// instead: then it answers the latest call of that name not yet answered.
        call_id: Option<String>,
        name: Option<String>,
        output: Value,
    },
    /// An earlier answer's reasoning: not shown to the model again.
    Reasoning {},
}

/// A message part: text in or out (`input_text`, `output_text`, `text`).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PartIn {
    InputText { text: String },
    OutputText { text: String },
    Text { text: String },
}

/// Fields the official clients send that change no output here: `user`, `safety_identifier`,
/// `prompt_cache_key` (the prompt cache is always on), `service_tier`, `client_metadata`,
/// `reasoning` (a model reasons as its template says; what it reasons comes back as a reasoning
/// item), `include` (of what we do not make),
/// `truncation: "disabled"`, `background: false`, `max_tool_calls`, `top_logprobs: 0`.
fn refuse_unsupported(other: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    for (name, value) in other {
        let harmless = match name.as_str() {
            "user" | "safety_identifier" | "prompt_cache_key" | "service_tier" | "client_metadata" | "reasoning"
            | "include" | "max_tool_calls" => true,
            "truncation" => value.is_null() || value == "disabled",
            "background" => value.is_null() || value == false,
            "top_logprobs" => value.is_null() || value == 0,
            _ => false,
        };
        if !harmless {
            return Err(ApiError::bad_request(format!("unsupported field `{name}`: {value}")));
        }
    }
    Ok(())
}

impl ResponsesRequest {
    /// The config, checked, before any model is looked up.
    pub(crate) fn config(&self) -> Result<lmstudio::Config, ApiError> {
        refuse_unsupported(&self.other)?;
        let mut tools = Vec::with_capacity(self.tools.len());
        for t in &self.tools {
            if t.kind != "function" {
                return Err(ApiError::bad_request(format!("unsupported tool type `{}`: only function", t.kind)));
            }
            let name = t.name.clone().ok_or_else(|| ApiError::bad_request("a function tool needs `name`"))?;
            let parameters = t.parameters.clone().unwrap_or_else(|| Value::Object(Default::default()));
            tools.push(lmstudio::Tool::new(name, t.description.clone().unwrap_or_default(), parameters));
        }
        let config = lmstudio::Config {
            max_tokens: self.max_output_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            structured: self.structured()?,
            tools,
            tool_choice: self.tool_choice()?,
            parallel_tool_calls: self.parallel_tool_calls,
            ..Default::default()
        };
        config.validate()?;
        Ok(config)
    }

    fn tool_choice(&self) -> Result<Option<lmstudio::ToolChoice>, ApiError> {
        let bad = |v: &Value| Err(ApiError::bad_request(format!("unsupported `tool_choice`: {v}")));
        Ok(match &self.tool_choice {
            None | Some(Value::Null) => None,
            Some(Value::String(mode)) => Some(match mode.as_str() {
                "auto" => lmstudio::ToolChoice::Auto,
                "none" => lmstudio::ToolChoice::None,
                "required" => lmstudio::ToolChoice::Required,
                _ => return bad(&self.tool_choice.clone().unwrap_or_default()),
            }),
            Some(v) if v["type"] == "function" => match v["name"].as_str() {
                Some(name) => Some(lmstudio::ToolChoice::Function(name.to_owned())),
                None => return bad(v),
            },
            Some(v) => return bad(v),
        })
    }

    fn structured(&self) -> Result<Option<lmstudio::Structured>, ApiError> {
        let format = self.text.as_ref().and_then(|t| t.get("format")).filter(|f| !f.is_null() && f["type"] != "text");
        let Some(format) = format else {
            return Ok(self.grammar.clone().map(lmstudio::Structured::Gbnf));
        };
        if self.grammar.is_some() {
            return Err(ApiError::bad_request("`grammar` and `text.format` exclude each other"));
        }
        match format["type"].as_str() {
            Some("text") => Ok(None),
            Some("json_object") => Ok(Some(lmstudio::Structured::Json(serde_json::json!({"type": "object"})))),
            Some("json_schema") => match format.get("schema") {
                Some(schema) => Ok(Some(lmstudio::Structured::Json(schema.clone()))),
                None => Err(ApiError::bad_request("`text.format.schema` is required")),
            },
            _ => Err(ApiError::bad_request(format!("unsupported `text.format`: {format}"))),
        }
    }

    /// The new messages of this request: the input's items (the instructions, which are this
    /// response's only, are not among them).
    pub(crate) fn messages(&self) -> Result<Vec<lmstudio::ChatMessage>, ApiError> {
        let mut messages = Vec::new();
        let items: Vec<ItemIn> = match &self.input {
            Value::String(text) => vec![ItemIn::Message { role: "user".into(), content: Value::String(text.clone()) }],
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    // An item without `type` is a message (the shorthand `{"role", "content"}`).
                    let mut item = item.clone();
                    if let Value::Object(o) = &mut item {
                        o.entry("type").or_insert_with(|| "message".into());
                        o.retain(|k, _| !matches!(k.as_str(), "id" | "status"));
                    }
                    // The error names the item's type and fields: a client's item we do not read
                    // is then plain from the message alone.
                    let shape = match &item {
                        Value::Object(o) => {
                            let kind = o.get("type").and_then(Value::as_str).unwrap_or_default();
                            format!(" ({kind}; fields: {})", o.keys().cloned().collect::<Vec<_>>().join(", "))
                        }
                        _ => String::new(),
                    };
                    serde_json::from_value(item).map_err(|e| ApiError::bad_request(format!("input[{i}]{shape}: {e}")))
                })
                .collect::<Result<_, _>>()?,
            other => return Err(ApiError::bad_request(format!("`input` is a string or items, got {other}"))),
        };
        for (i, item) in items.into_iter().enumerate() {
            match item {
                ItemIn::Message { role, content } => {
                    let role = match role.as_str() {
                        "developer" | "system" => "system",
                        "user" | "assistant" => role.as_str(),
                        _ => return Err(ApiError::bad_request(format!("input[{i}]: unsupported role {role:?}"))),
                    };
                    messages.push(lmstudio::ChatMessage::new(role, text_of(&content, i)?));
                }
                ItemIn::FunctionCall { call_id, name, arguments } => {
                    let call = lmstudio::ToolCall { id: call_id, name, arguments };
                    // Calls of one answer are one assistant message.
                    match messages.last_mut() {
                        Some(last) if last.role == "assistant" && !last.tool_calls.is_empty() => {
                            last.tool_calls.push(call);
                        }
                        _ => messages.push(lmstudio::ChatMessage::tool_calls("", vec![call])),
                    }
                }
                ItemIn::FunctionCallOutput { call_id, name, output } => {
                    let call_id = match call_id {
                        Some(id) => id,
                        None => unanswered_call(&messages, name.as_deref()).ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "input[{i}] (function_call_output): no `call_id`, and no earlier unanswered function_call{} for it to answer",
                                name.map(|n| format!(" named {n:?}")).unwrap_or_default()
                            ))
                        })?,
                    };
                    messages.push(lmstudio::ChatMessage::tool_result(call_id, text_of(&output, i)?));
                }
                ItemIn::Reasoning {} => {}
            }
        }
        Ok(messages)
    }
}

/// The id of the latest call in `messages` (of the function `name`, when given) that no tool
/// result answers yet.
fn unanswered_call(messages: &[lmstudio::ChatMessage], name: Option<&str>) -> Option<String> {
    let answered: Vec<&str> = messages.iter().filter_map(|m| m.tool_call_id.as_deref()).collect();
    messages
        .iter()
        .rev()
        .flat_map(|m| m.tool_calls.iter().rev())
        .find(|c| name.is_none_or(|n| c.name == n) && !answered.contains(&c.id.as_str()))
        .map(|c| c.id.clone())
}

/// A string, or text parts joined.
fn text_of(content: &Value, i: usize) -> Result<String, ApiError> {
    match content {
        Value::String(text) => Ok(text.clone()),
        parts => {
            let parts: Vec<PartIn> = serde_json::from_value(parts.clone())
                .map_err(|e| ApiError::bad_request(format!("input[{i}].content: {e}")))?;
            Ok(parts
                .into_iter()
                .map(|p| match p {
                    PartIn::InputText { text } | PartIn::OutputText { text } | PartIn::Text { text } => text,
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> ResponsesRequest {
        serde_json::from_str(body).expect("a request")
    }

    #[test]
    fn items_become_the_chat() {
        let r = request(
            r#"{"model": "m", "instructions": "Be brief.", "input": [
                {"role": "user", "content": "Weather?"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "{}", "status": "completed"},
                {"type": "function_call", "call_id": "call_2", "name": "f", "arguments": "{\"a\":1}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "21"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is 21.", "annotations": []}]},
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Say more."}]}],
              "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": true}],
              "tool_choice": {"type": "function", "name": "f"}, "store": false, "user": "u", "truncation": "disabled"}"#,
        );
        let config = r.config().expect("valid");
        assert_eq!(config.tool_choice, Some(lmstudio::ToolChoice::Function("f".into())));
        let m = r.messages().expect("valid");
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "tool", "assistant", "system"], "instructions apart");
        assert_eq!(m[1].tool_calls.len(), 2, "one answer's calls, one message");
        assert_eq!((m[2].tool_call_id.as_deref(), m[2].content.as_str()), (Some("call_1"), "21"));
    }

    /// Codex (0.171) sometimes answers a call by the function's name, without `call_id`: the
    /// answer goes to the latest unanswered call of that name; with none, the item is refused.
    #[test]
    fn an_output_without_call_id_answers_the_latest_open_call_of_its_name() {
        let r = request(
            r#"{"model": "m", "input": [
                {"role": "user", "content": "List files."},
                {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{}"},
                {"type": "function_call", "call_id": "call_2", "name": "shell", "arguments": "{}"},
                {"type": "function_call", "call_id": "call_3", "name": "read", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_2", "output": "b"},
                {"type": "function_call_output", "name": "shell", "namespace": "x", "output": "a"}]}"#,
        );
        let m = r.messages().expect("valid");
        let results: Vec<(Option<&str>, &str)> =
            m.iter().filter(|m| m.role == "tool").map(|m| (m.tool_call_id.as_deref(), m.content.as_str())).collect();
        assert_eq!(results, [(Some("call_2"), "b"), (Some("call_1"), "a")]);
        let orphan = request(
            r#"{"model": "m", "input": [{"role": "user", "content": "Hi"},
                {"type": "function_call_output", "name": "shell", "output": "a"}]}"#,
        );
        let e = orphan.messages().expect_err("nothing to answer");
        let said = format!("{e:?}");
        assert!(said.contains("no earlier unanswered function_call named") && said.contains("shell"), "{said}");
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let refused = [
            (r#""input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]"#, "input_image"),
            (r#""input": "x", "tools": [{"type": "web_search"}]"#, "web_search"),
            (r#""input": "x", "conversation": "conv_1""#, "conversation"),
            (r#""input": "x", "background": true"#, "background"),
            (r#""input": "x", "tools": [{"type": "function", "function": {"name": "f"}}]"#, "function"),
        ];
        for (body, name) in refused {
            let r: Result<ResponsesRequest, _> = serde_json::from_str(&format!(r#"{{"model": "m", {body}}}"#));
            let e = match r {
                Ok(r) => format!("{:?}", r.config().and_then(|_| r.messages()).expect_err(name)),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(name), "{name}: {e}");
        }
    }
}
