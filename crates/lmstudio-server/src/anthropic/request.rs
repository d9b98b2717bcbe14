//! The request body of `/v1/messages` (and `/v1/messages/count_tokens`, the same less the output
//! settings), and how it becomes a chat and a config: every field is read or refused by name.

use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// Anthropic's Messages request. Any field not named here is refused ([`refuse_unsupported`]).
#[derive(Debug, Deserialize)]
pub(crate) struct MessagesRequest {
    pub model: String,
    /// Required by Anthropic for `/v1/messages`; not read by `count_tokens`.
    max_tokens: Option<Value>,
    messages: Vec<MessageIn>,
    /// A string, or text blocks.
    system: Option<Value>,
    stop_sequences: Option<Vec<String>>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    tools: Option<Vec<ToolIn>>,
    tool_choice: Option<ToolChoiceIn>,
    /// `{"effort", "format": {"type": "json_schema", "schema"}}`: the format is structured output.
    output_config: Option<OutputConfig>,
    /// llama.cpp's extension: a GBNF grammar the output follows.
    grammar: Option<String>,
    #[serde(default)]
    pub stream: bool,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct MessageIn {
    role: String,
    /// A string, or content blocks.
    content: Value,
}

/// A content block of a request. Fields beside those read (`cache_control`, `citations`, a
/// thinking block's `signature`) change nothing here and are taken.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockIn {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        /// A string, or text blocks.
        #[serde(default)]
        content: Value,
        #[serde(default)]
        is_error: bool,
    },
    /// An earlier answer's reasoning: not shown to the model again (as chat templates drop it).
    Thinking {},
    RedactedThinking {},
}

/// A text block where only text may be (`system`, a tool result's content).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum TextBlock {
    Text { text: String },
}

/// A tool: `{"name", "description", "input_schema"}` (`type` `custom` or absent). Anthropic's
/// server tools (web search, code execution...) have another `type` and are refused.
#[derive(Debug, Deserialize)]
struct ToolIn {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: String,
    description: Option<String>,
    input_schema: Option<Value>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputConfig {
    /// How hard a reasoning model thinks: nothing here reasons apart yet, so it changes nothing.
    #[allow(dead_code)]
    effort: Option<String>,
    format: Option<OutputFormat>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutputFormat {
    JsonSchema { schema: Value },
}

/// `{"type": "auto" | "any" | "tool" | "none", "name", "disable_parallel_tool_use"}`.
#[derive(Debug, Deserialize)]
struct ToolChoiceIn {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: bool,
}

/// Fields the official clients send that change no output here: `metadata` (a user id),
/// `service_tier`, `speed`, `inference_geo`, `user_profile_id`, `workspace_id`, `cache_control`
/// (the prompt cache is always on), `diagnostics` (none are reported), `thinking` (a model thinks
/// as its template says, or not; what it thinks comes back as `thinking` blocks),
/// `context_management`;
/// `container` and `mcp_servers` only when empty.
fn refuse_unsupported(other: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    for (name, value) in other {
        let harmless = match name.as_str() {
            "metadata" | "service_tier" | "speed" | "inference_geo" | "user_profile_id" | "workspace_id"
            | "cache_control" | "diagnostics" | "thinking" | "context_management" => true,
            "container" | "mcp_servers" => {
                value.is_null() || value.as_array().is_some_and(Vec::is_empty) || value.as_str() == Some("")
            }
            _ => false,
        };
        if !harmless {
            return Err(ApiError::bad_request(format!("unsupported field `{name}`: {value}")));
        }
    }
    Ok(())
}

impl MessagesRequest {
    /// The chat and the config the request asks for, checked, before any model is looked up.
    pub(crate) fn decode(&self) -> Result<(lmstudio::Config, lmstudio::Chat), ApiError> {
        refuse_unsupported(&self.other)?;
        let (tools, tool_choice, parallel_tool_calls) = self.tools()?;
        let config = lmstudio::Config {
            max_tokens: lmstudio::Config::token_limit(self.max_tokens.as_ref())?,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            stop_strings: self.stop_sequences.clone().unwrap_or_default(),
            tools,
            tool_choice,
            parallel_tool_calls,
            structured: self.structured()?,
            ..Default::default()
        };
        config.validate()?;
        Ok((config, self.chat()?))
    }

    /// `output_config.format`'s schema, or the grammar.
    fn structured(&self) -> Result<Option<lmstudio::Structured>, ApiError> {
        let format = self.output_config.as_ref().and_then(|c| c.format.as_ref());
        match (format, &self.grammar) {
            (Some(_), Some(_)) => Err(ApiError::bad_request("`grammar` and `output_config.format` exclude each other")),
            (Some(OutputFormat::JsonSchema { schema }), None) => Ok(Some(lmstudio::Structured::Json(schema.clone()))),
            (None, grammar) => Ok(grammar.clone().map(lmstudio::Structured::Gbnf)),
        }
    }

    /// The tools, the choice and whether calls may be parallel.
    fn tools(&self) -> Result<ToolSettings, ApiError> {
        let mut tools = Vec::new();
        for t in self.tools.as_deref().unwrap_or_default() {
            if let Some(kind) = t.kind.as_deref().filter(|k| *k != "custom") {
                return Err(ApiError::bad_request(format!("unsupported tool type `{kind}` (tool {:?})", t.name)));
            }
            let known = |k: &str| matches!(k, "cache_control" | "strict" | "defer_loading");
            if let Some((field, _)) = t.other.iter().find(|(k, _)| !known(k)) {
                return Err(ApiError::bad_request(format!("unsupported tool field `{field}` (tool {:?})", t.name)));
            }
            // A deferred tool is not in the model's context until a tool search finds it, and
            // there is no tool search here (a server tool): the model never sees it.
            if t.other.get("defer_loading").is_some_and(|v| v == true) {
                continue;
            }
            let schema = t
                .input_schema
                .clone()
                .ok_or_else(|| ApiError::bad_request(format!("tool {:?} needs `input_schema`", t.name)))?;
            tools.push(lmstudio::Tool::new(t.name.clone(), t.description.clone().unwrap_or_default(), schema));
        }
        let Some(choice) = &self.tool_choice else {
            return Ok((tools, None, None));
        };
        let named = || choice.name.clone().ok_or_else(|| ApiError::bad_request("`tool_choice` `tool` needs `name`"));
        let mode = match choice.kind.as_str() {
            "auto" => lmstudio::ToolChoice::Auto,
            "any" => lmstudio::ToolChoice::Required,
            "tool" => lmstudio::ToolChoice::Function(named()?),
            "none" => lmstudio::ToolChoice::None,
            other => return Err(ApiError::bad_request(format!("unsupported `tool_choice` type {other:?}"))),
        };
        Ok((tools, Some(mode), choice.disable_parallel_tool_use.then_some(false)))
    }

    /// The system prompt, then each message: text as the message, `tool_use` blocks as the
    /// assistant's calls, `tool_result` blocks as tool messages (before the user's text, as
    /// Anthropic orders them).
    fn chat(&self) -> Result<lmstudio::Chat, ApiError> {
        let mut messages = Vec::with_capacity(self.messages.len() + 1);
        if let Some(system) = &self.system {
            let text = text_of(system, "system")?;
            if !text.is_empty() {
                messages.push(lmstudio::ChatMessage::new("system", text));
            }
        }
        if self.messages.is_empty() {
            return Err(ApiError::bad_request("`messages` is empty"));
        }
        for (i, m) in self.messages.iter().enumerate() {
            // `system` in `messages`: Anthropic's mid-conversation system message (Claude Code
            // ends a request with one), given to the template where it stands.
            if !matches!(m.role.as_str(), "user" | "assistant" | "system") {
                return Err(ApiError::bad_request(format!("messages[{i}]: unsupported role {:?}", m.role)));
            }
            let blocks: Vec<BlockIn> = match &m.content {
                Value::String(text) => vec![BlockIn::Text { text: text.clone() }],
                other => serde_json::from_value(other.clone())
                    .map_err(|e| ApiError::bad_request(format!("messages[{i}].content: {e}")))?,
            };
            let mut message = lmstudio::ChatMessage::new(&m.role, String::new());
            for block in blocks {
                match block {
                    BlockIn::Text { text } => message.content.push_str(&text),
                    BlockIn::ToolUse { .. } | BlockIn::ToolResult { .. } if !tool_block_fits(&m.role, &block) => {
                        return Err(ApiError::bad_request(format!(
                            "messages[{i}]: `tool_use` is the assistant's, `tool_result` the user's"
                        )));
                    }
                    BlockIn::ToolUse { id, name, input } => {
                        let arguments = if input.is_null() { "{}".to_owned() } else { input.to_string() };
                        message.tool_calls.push(lmstudio::ToolCall { id, name, arguments });
                    }
                    BlockIn::ToolResult { tool_use_id, content, is_error } => {
                        let text = text_of(&content, &format!("messages[{i}] tool_result content"))?;
                        let text = if is_error { format!("Error: {text}") } else { text };
                        messages.push(lmstudio::ChatMessage::tool_result(tool_use_id, text));
                    }
                    BlockIn::Thinking {} | BlockIn::RedactedThinking {} => {}
                }
            }
            if !message.content.is_empty() || !message.tool_calls.is_empty() || m.role == "assistant" {
                messages.push(message);
            }
        }
        Ok(messages.into())
    }
}

fn tool_block_fits(role: &str, block: &BlockIn) -> bool {
    match block {
        BlockIn::ToolUse { .. } => role == "assistant",
        BlockIn::ToolResult { .. } => role == "user",
        _ => true,
    }
}

type ToolSettings = (Vec<lmstudio::Tool>, Option<lmstudio::ToolChoice>, Option<bool>);

/// A string, or text blocks joined; `null` is nothing.
fn text_of(value: &Value, what: &str) -> Result<String, ApiError> {
    match value {
        Value::Null => Ok(String::new()),
        Value::String(text) => Ok(text.clone()),
        blocks => {
            let blocks: Vec<TextBlock> =
                serde_json::from_value(blocks.clone()).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))?;
            Ok(blocks.into_iter().map(|TextBlock::Text { text }| text).collect::<Vec<_>>().join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> MessagesRequest {
        serde_json::from_str(body).expect("a request")
    }

    #[test]
    fn blocks_become_calls_and_results_in_order() {
        let r = request(
            r#"{"model": "m", "max_tokens": 9, "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
              "messages": [
                {"role": "user", "content": "Weather in Oslo?"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                  {"type": "text", "text": "Let me look."},
                  {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "21"}]},
                  {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no", "is_error": true},
                  {"type": "text", "text": "And?"}]}],
              "tools": [{"name": "get_weather", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
                {"name": "later", "input_schema": {"type": "object"}, "defer_loading": true}],
              "tool_choice": {"type": "any", "disable_parallel_tool_use": true}, "metadata": {"user_id": "u"}}"#,
        );
        let (config, chat) = r.decode().expect("decodes");
        assert_eq!(config.max_tokens, Some(9));
        assert_eq!(config.tool_choice, Some(lmstudio::ToolChoice::Required));
        assert_eq!(config.parallel_tool_calls, Some(false));
        assert_eq!(config.tools.len(), 1, "a deferred tool is not shown");
        let m = chat.messages();
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "tool", "user"]);
        assert_eq!(m[2].content, "Let me look.");
        assert_eq!(m[2].tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
        assert_eq!((m[3].content.as_str(), m[3].tool_call_id.as_deref()), ("21", Some("toolu_1")));
        assert_eq!(m[4].content, "Error: no");
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let refused = [
            (r#""messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]"#, "image"),
            (r#""messages": [{"role": "user", "content": "x"}], "mcp_servers": [{"url": "u"}]"#, "mcp_servers"),
            (r#""messages": [{"role": "user", "content": "x"}], "top_logprobs": 2"#, "top_logprobs"),
            (
                r#""messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search_20250305", "name": "web_search"}]"#,
                "web_search_20250305",
            ),
            (
                r#""messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]"#,
                "tool_use",
            ),
            (r#""messages": [{"role": "tool", "content": "x"}]"#, "tool"),
        ];
        for (body, name) in refused {
            let e = request(&format!(r#"{{"model": "m", "max_tokens": 4, {body}}}"#)).decode().expect_err(name);
            let message = format!("{e:?}");
            assert!(message.contains(name), "{name}: {message}");
        }
    }
}
