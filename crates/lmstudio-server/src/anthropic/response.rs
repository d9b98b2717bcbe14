//! What `/v1/messages` answers: a message whole, or the events of its stream.

use serde::Serialize;
use serde_json::Value;

/// A message: `{"id", "type": "message", "role", "model", "content", "stop_reason", ...}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MessageOut {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: String,
    pub content: Vec<BlockOut>,
    pub stop_reason: Option<&'static str>,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

/// A content block of an answer.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum BlockOut {
    /// The model's reasoning, before its answer. Its signature is empty: nothing here signs it,
    /// and a thinking block sent back is not shown to the model again.
    Thinking {
        thinking: String,
        signature: String,
    },
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

impl BlockOut {
    /// A call as a `tool_use` block (its arguments, always a JSON object from the engine).
    pub(crate) fn tool_use(call: &lmstudio::ToolCall, input: Value) -> Self {
        Self::ToolUse { id: call.id.clone(), name: call.name.clone(), input }
    }
}

/// Tokens: `input_tokens` are those processed for this request, `cache_read_input_tokens` those
/// the prompt cache held (Anthropic counts them apart; the prompt is their sum).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl Usage {
    pub(crate) fn of(stats: &lmstudio::Stats) -> Self {
        let cached = stats.cached_prompt_tokens_count.unwrap_or(0);
        Self {
            input_tokens: stats.prompt_tokens_count.unwrap_or(0).saturating_sub(cached),
            output_tokens: stats.predicted_tokens_count.unwrap_or(0),
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: cached,
        }
    }
}

/// Anthropic's stop reason and, when a stop sequence ended the answer, which.
pub(crate) fn stop_reason(stats: &lmstudio::Stats) -> (&'static str, Option<String>) {
    use lmstudio::StopReason as S;
    match stats.stop_reason {
        S::StopStringFound => ("stop_sequence", stats.stop_string.clone()),
        S::MaxPredictedTokensReached | S::ContextLengthReached => ("max_tokens", None),
        S::ToolCalls => ("tool_use", None),
        _ => ("end_turn", None),
    }
}

/// One event of a stream; its `type` is the SSE event's name too.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum StreamEvent {
    MessageStart {
        message: MessageOut,
    },
    ContentBlockStart {
        index: usize,
        content_block: BlockOut,
    },
    ContentBlockDelta {
        index: usize,
        delta: Delta,
    },
    ContentBlockStop {
        index: usize,
    },
    /// The usage is the whole answer's (the `anthropic` package takes the input counts from here
    /// too: they are known once the prompt is processed).
    MessageDelta {
        delta: MessageDelta,
        usage: Usage,
    },
    MessageStop,
    /// Sent while nothing else is (a long prompt): Anthropic's keep-alive.
    Ping,
}

impl StreamEvent {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
            Self::Ping => "ping",
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Delta {
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: String },
    #[serde(rename = "text_delta")]
    Text { text: String },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: String },
}

#[derive(Debug, Serialize)]
pub(crate) struct MessageDelta {
    pub stop_reason: &'static str,
    pub stop_sequence: Option<String>,
}

/// `/v1/messages/count_tokens`'s answer.
#[derive(Debug, Serialize)]
pub(crate) struct TokenCount {
    pub input_tokens: usize,
}
