//! The request body of `/v1/completions` and `/v1/chat/completions` (and REST v0's, the same), and
//! how it becomes a prediction: every field is read or refused by name, before any model is looked up.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;

/// A string or a list of strings (`prompt`, `stop`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// Chat content: a string, or parts of which the text ones count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatIn {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    /// An assistant's calls (`null`: none, as the `openai` package writes a message it read).
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallIn>>,
    /// A tool message: the call it answers.
    #[serde(default)]
    tool_call_id: Option<String>,
    /// Anything else (`name`...): refused by name, unless `null` (the `openai` package writes
    /// `refusal`, `audio`... as `null` in a message it read).
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// A call in an assistant message: `{"id", "type": "function", "function": {"name", "arguments"}}`.
#[derive(Debug, Deserialize)]
struct ToolCallIn {
    id: String,
    #[serde(rename = "type", default = "function")]
    kind: String,
    function: FunctionCallIn,
}

#[derive(Debug, Deserialize)]
struct FunctionCallIn {
    name: String,
    /// JSON text.
    #[serde(default)]
    arguments: String,
}

fn function() -> String {
    "function".into()
}

/// A tool offered: `{"type": "function", "function": {"name", "description", "parameters", "strict"}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToolIn {
    #[serde(rename = "type")]
    kind: String,
    function: FunctionIn,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionIn {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    /// Arguments always follow the schema where a call is required (a grammar); with `auto`,
    /// as well for models without a tool syntax of their own. Taken, either way.
    #[serde(default)]
    #[allow(dead_code)]
    strict: Option<bool>,
}

/// `"auto"`, `"none"`, `"required"` or `{"type": "function", "function": {"name"}}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ToolChoiceIn {
    Mode(String),
    Named { function: NamedFunction },
}

#[derive(Debug, Deserialize)]
pub(crate) struct NamedFunction {
    name: String,
}

/// The fields of `/v1/completions` and `/v1/chat/completions`. Any other field is refused by name
/// ([`CompletionRequest::decode`]), never ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    pub model: Option<String>,
    prompt: Option<OneOrMany>,
    messages: Option<Vec<ChatIn>>,
    max_tokens: Option<Value>,
    max_completion_tokens: Option<Value>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    stop: Option<OneOrMany>,
    seed: Option<i64>,
    /// llama.cpp's extension: never end at an end-of-generation token.
    ignore_eos: Option<bool>,
    /// Ours: `"ngram"` drafts tokens from the context (speculative decoding), `"off"`.
    speculation: Option<lmstudio::Speculation>,
    /// LM Studio's extension: the key of a draft model (speculative decoding).
    draft_model: Option<String>,
    /// Completions: how many alternatives per token (0 to 20); chat: `true` to have them.
    logprobs: Option<Value>,
    /// Chat: how many alternatives per token, with `logprobs: true`.
    top_logprobs: Option<u32>,
    /// `{"type": "text" | "json_object" | "json_schema", "json_schema": {"schema": ...}}`.
    response_format: Option<Value>,
    /// llama.cpp's extension: a GBNF grammar the output follows.
    grammar: Option<String>,
    /// Chat: functions the model may call.
    tools: Option<Vec<ToolIn>>,
    /// Chat: whether it must call one.
    tool_choice: Option<ToolChoiceIn>,
    /// Chat: `true` (the default) lets the model make several calls at once.
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub stream: bool,
    /// Ours: with `stream`, `prompt_progress` events (`{"progress": 0.0..1.0}`, strictly rising,
    /// 1.0 last) while the prompt is evaluated, before the first token (the web app's progress bar).
    #[serde(default)]
    pub prompt_progress: bool,
    /// Ours: with `stream` and a `model` that is not loaded, the stream opens at once and reports
    /// the load as `load_progress` events (`{"progress": 0.0..1.0}`, strictly rising, the last
    /// `1.0` with `load_time_seconds`) before the prediction (the web app's chat).
    #[serde(default)]
    pub load_progress: bool,
    /// Everything else: checked by [`refuse_unsupported`].
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// A field we take only with the value that asks for nothing (`n: 1`, `echo: false`, no tools):
/// any other value, or any field not named here, is a 400 naming it. `user`
/// (an end user's id, for the provider's abuse monitoring) changes no output and is taken;
/// `stream_options.include_usage` is always honoured (the last chunk carries `usage`).
fn refuse_unsupported(other: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    let empty = |v: &Value| {
        v.is_null() || v.as_object().is_some_and(serde_json::Map::is_empty) || v.as_array().is_some_and(Vec::is_empty)
    };
    for (name, value) in other {
        let harmless = match name.as_str() {
            "user" => true,
            "stream_options" => {
                value.is_null() || value.as_object().is_some_and(|o| o.keys().all(|k| k == "include_usage"))
            }
            "n" | "best_of" => value.is_null() || value == 1,
            "echo" => value.is_null() || value == false,
            "logit_bias" | "functions" => empty(value),
            "function_call" => value.is_null() || value == "none",
            "store" => value.is_null() || value.is_boolean(),
            "suffix" => value.is_null() || value == "",
            _ => false,
        };
        if !harmless {
            return Err(ApiError::bad_request(format!("unsupported field `{name}`: {value}")));
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Text,
    Chat,
}

/// What a request asks to complete.
pub(crate) enum Input {
    Text(String),
    Chat(Vec<lmstudio::ChatMessage>),
}

impl CompletionRequest {
    /// Everything the request says, checked, before any model is looked up.
    pub(crate) fn decode(&mut self, kind: Kind) -> Result<(lmstudio::Config, Input), ApiError> {
        refuse_unsupported(&self.other)?;
        let mut config = self.config()?;
        config.logprobs = self.logprobs(kind)?;
        config.structured = self.structured()?;
        (config.tools, config.tool_choice) = self.tools(kind)?;
        config.parallel_tool_calls = self.parallel_tool_calls;
        config.validate()?;
        let input = match kind {
            Kind::Text => {
                let mut prompts =
                    self.prompt.take().ok_or_else(|| ApiError::bad_request("`prompt` is required"))?.into_vec();
                if prompts.len() != 1 {
                    return Err(ApiError::bad_request("`prompt` must be one string"));
                }
                Input::Text(prompts.remove(0))
            }
            Kind::Chat => {
                let messages = self.messages.take().ok_or_else(|| ApiError::bad_request("`messages` is required"))?;
                if messages.is_empty() {
                    return Err(ApiError::bad_request("`messages` is empty"));
                }
                Input::Chat(messages.into_iter().map(chat_message).collect::<Result<_, _>>()?)
            }
        };
        Ok((config, input))
    }

    /// The language `response_format` (or llama.cpp's `grammar`) constrains the output to.
    fn structured(&self) -> Result<Option<lmstudio::Structured>, ApiError> {
        let bad = |what: String| Err(ApiError::bad_request(what));
        let format = self.response_format.as_ref().filter(|v| !v.is_null());
        match (format, &self.grammar) {
            (Some(_), Some(_)) => bad("`response_format` and `grammar` exclude each other".into()),
            (None, Some(g)) => Ok(Some(lmstudio::Structured::Gbnf(g.clone()))),
            (None, None) => Ok(None),
            (Some(f), None) => match f.get("type").and_then(Value::as_str) {
                Some("text") => Ok(None),
                Some("json_object") => Ok(Some(lmstudio::Structured::Json(json!({"type": "object"})))),
                Some("json_schema") => match f.get("json_schema").and_then(|j| j.get("schema")) {
                    Some(schema) => Ok(Some(lmstudio::Structured::Json(schema.clone()))),
                    None => bad("`response_format.json_schema.schema` is required".into()),
                },
                _ => bad(format!(
                    "unsupported `response_format.type`: {} (text, json_object or json_schema)",
                    f.get("type").unwrap_or(&Value::Null)
                )),
            },
        }
    }

    /// The tools offered and the choice asked for (chat completions only).
    fn tools(&self, kind: Kind) -> Result<(Vec<lmstudio::Tool>, Option<lmstudio::ToolChoice>), ApiError> {
        let offered = self.tools.as_deref().unwrap_or_default();
        if kind == Kind::Text && (!offered.is_empty() || self.tool_choice.is_some()) {
            return Err(ApiError::bad_request("`tools` are for chat completions"));
        }
        let mut tools = Vec::with_capacity(offered.len());
        for t in offered {
            if t.kind != "function" {
                return Err(ApiError::bad_request(format!("unsupported tool type `{}`: only function", t.kind)));
            }
            let f = &t.function;
            let parameters = f.parameters.clone().unwrap_or_else(|| Value::Object(Default::default()));
            tools.push(lmstudio::Tool::new(f.name.clone(), f.description.clone().unwrap_or_default(), parameters));
        }
        let choice = match &self.tool_choice {
            None => None,
            Some(ToolChoiceIn::Mode(m)) => Some(match m.as_str() {
                "auto" => lmstudio::ToolChoice::Auto,
                "none" => lmstudio::ToolChoice::None,
                "required" => lmstudio::ToolChoice::Required,
                other => return Err(ApiError::bad_request(format!("unsupported `tool_choice`: {other:?}"))),
            }),
            Some(ToolChoiceIn::Named { function }) => Some(lmstudio::ToolChoice::Function(function.name.clone())),
        };
        Ok((tools, choice))
    }

    /// The alternatives per token asked for, in each endpoint's own form.
    fn logprobs(&self, kind: Kind) -> Result<Option<u32>, ApiError> {
        let bad = |what: &str| Err(ApiError::bad_request(what.to_owned()));
        match (kind, self.logprobs.as_ref().filter(|v| !v.is_null()), self.top_logprobs) {
            (Kind::Text, None, None) | (Kind::Chat, None, None) => Ok(None),
            (Kind::Text, Some(n), None) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => Ok(Some(n)),
                None => bad("`logprobs` of /v1/completions is how many alternatives per token: 0 to 20"),
            },
            (Kind::Text, _, Some(_)) => bad("`top_logprobs` is for chat completions; here `logprobs` is the count"),
            (Kind::Chat, Some(Value::Bool(false)), None) => Ok(None),
            (Kind::Chat, Some(Value::Bool(true)), n) => Ok(Some(n.unwrap_or(0))),
            (Kind::Chat, Some(Value::Bool(false)) | None, Some(_)) => bad("`top_logprobs` needs `logprobs: true`"),
            (Kind::Chat, Some(_), _) => bad("`logprobs` of chat completions is true or false"),
        }
    }

    fn config(&self) -> Result<lmstudio::Config, ApiError> {
        let max_tokens =
            lmstudio::Config::token_limit(self.max_completion_tokens.as_ref().or(self.max_tokens.as_ref()))?;
        let seed = match self.seed {
            None => None,
            Some(s) => Some(u32::try_from(s).map_err(|_| ApiError::bad_request(format!("seed out of range: {s}")))?),
        };
        Ok(lmstudio::Config {
            max_tokens,
            temperature: self.temperature,
            stop_strings: self.stop.clone().map(OneOrMany::into_vec).unwrap_or_default(),
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed,
            ignore_eos: self.ignore_eos,
            speculation: self.speculation,
            draft_model: self.draft_model.clone(),
            ..Default::default()
        })
    }
}

fn chat_message(m: ChatIn) -> Result<lmstudio::ChatMessage, ApiError> {
    if let Some((name, _)) = m.other.iter().find(|(_, v)| !v.is_null()) {
        return Err(ApiError::bad_request(format!("unsupported message field `{name}`")));
    }
    let content = match m.content {
        None => String::new(),
        Some(Content::Text(t)) => t,
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    (kind, _) => {
                        return Err(ApiError::bad_request(format!("unsupported content part `{kind}`: only text")))
                    }
                }
            }
            text
        }
    };
    let mut calls = Vec::new();
    for c in m.tool_calls.unwrap_or_default() {
        if c.kind != "function" {
            return Err(ApiError::bad_request(format!("unsupported tool call type `{}`", c.kind)));
        }
        calls.push(lmstudio::ToolCall { id: c.id, name: c.function.name, arguments: c.function.arguments });
    }
    let message = lmstudio::ChatMessage {
        tool_calls: calls,
        tool_call_id: m.tool_call_id,
        ..lmstudio::ChatMessage::new(m.role, content)
    };
    if message.role == "tool" && message.tool_call_id.is_none() {
        return Err(ApiError::bad_request("a `tool` message needs `tool_call_id`"));
    }
    Ok(message)
}
