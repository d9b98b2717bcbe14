//! What `/v1/responses` answers: a response object, whole or as the events of its stream.

use serde::Serialize;
use serde_json::Value;

/// A response: `{"id", "object": "response", "status", "output", "usage", ...}` with the
/// settings it ran with, as OpenAI echoes them.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ResponseOut {
    pub id: String,
    pub object: &'static str,
    pub created_at: u64,
    /// `in_progress`, `completed`, `incomplete`.
    pub status: &'static str,
    pub model: String,
    pub output: Vec<OutputItem>,
    pub incomplete_details: Option<Incomplete>,
    pub error: Option<Value>,
    pub usage: Option<Usage>,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u32>,
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<String>,
    pub store: bool,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub tool_choice: Value,
    pub tools: Vec<ToolOut>,
    pub text: Value,
    pub truncation: &'static str,
    pub metadata: Value,
}

/// A function tool as the response echoes it (flat).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ToolOut {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub description: Option<String>,
    pub parameters: Value,
    pub strict: bool,
}

impl ToolOut {
    pub(crate) fn of(tool: &lmstudio::Tool) -> Self {
        let description = (!tool.description.is_empty()).then(|| tool.description.clone());
        Self {
            kind: "function",
            name: tool.name.clone(),
            description,
            parameters: tool.parameters.clone(),
            strict: false,
        }
    }
}

/// Why a response is `incomplete`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Incomplete {
    pub reason: &'static str,
}

/// An output item: the model's reasoning, the assistant's message, or a call.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum OutputItem {
    Reasoning { id: String, status: &'static str, summary: Vec<Value>, content: Vec<ReasoningText> },
    Message { id: String, status: &'static str, role: &'static str, content: Vec<OutputText> },
    FunctionCall { id: String, call_id: String, name: String, arguments: String, status: &'static str },
}

/// `{"type": "output_text", "text", "annotations": []}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OutputText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
    pub annotations: Vec<Value>,
}

impl OutputText {
    pub(crate) fn of(text: String) -> Self {
        Self { kind: "output_text", text, annotations: Vec::new() }
    }
}

/// `{"type": "reasoning_text", "text"}`: reasoning as the model wrote it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReasoningText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
}

impl ReasoningText {
    pub(crate) fn of(text: String) -> Self {
        Self { kind: "reasoning_text", text }
    }
}

/// A content part of an item: a message's text or a reasoning item's.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum Part {
    Text(OutputText),
    Reasoning(ReasoningText),
}

/// Tokens, with the prompt's cached part and the answer's reasoning part.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Usage {
    pub input_tokens: u64,
    pub input_tokens_details: Cached,
    pub output_tokens: u64,
    pub output_tokens_details: Reasoning,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Cached {
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Reasoning {
    pub reasoning_tokens: u64,
}

impl Usage {
    pub(crate) fn of(stats: &lmstudio::Stats) -> Self {
        let reasoning = stats.reasoning_tokens_count.unwrap_or(0);
        let input = stats.prompt_tokens_count.unwrap_or(0);
        let output = stats.predicted_tokens_count.unwrap_or(0);
        Self {
            input_tokens: input,
            input_tokens_details: Cached { cached_tokens: stats.cached_prompt_tokens_count.unwrap_or(0) },
            output_tokens: output,
            output_tokens_details: Reasoning { reasoning_tokens: reasoning },
            total_tokens: input + output,
        }
    }
}

/// One event of a stream (its `type` is the SSE event's name too), numbered in order.
#[derive(Debug, Serialize)]
pub(crate) struct Numbered<'a> {
    #[serde(flatten)]
    pub event: &'a StreamEvent,
    pub sequence_number: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub(crate) enum StreamEvent {
    #[serde(rename = "response.created")]
    Created { response: ResponseOut },
    #[serde(rename = "response.in_progress")]
    InProgress { response: ResponseOut },
    #[serde(rename = "response.output_item.added")]
    ItemAdded { output_index: usize, item: OutputItem },
    #[serde(rename = "response.content_part.added")]
    PartAdded { item_id: String, output_index: usize, content_index: usize, part: Part },
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningDelta { item_id: String, output_index: usize, content_index: usize, delta: String },
    #[serde(rename = "response.reasoning_text.done")]
    ReasoningDone { item_id: String, output_index: usize, content_index: usize, text: String },
    #[serde(rename = "response.output_text.delta")]
    TextDelta { item_id: String, output_index: usize, content_index: usize, delta: String, logprobs: Vec<Value> },
    #[serde(rename = "response.output_text.done")]
    TextDone { item_id: String, output_index: usize, content_index: usize, text: String, logprobs: Vec<Value> },
    #[serde(rename = "response.content_part.done")]
    PartDone { item_id: String, output_index: usize, content_index: usize, part: Part },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgumentsDelta { item_id: String, output_index: usize, delta: String },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgumentsDone { item_id: String, output_index: usize, name: String, arguments: String },
    #[serde(rename = "response.output_item.done")]
    ItemDone { output_index: usize, item: OutputItem },
    #[serde(rename = "response.completed")]
    Completed { response: ResponseOut },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: ResponseOut },
    /// A stream that fails: `{"type": "error", "code", "message", "param"}`.
    #[serde(rename = "error")]
    Error { code: Option<&'static str>, message: String, param: Option<String> },
}

impl StreamEvent {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "response.created",
            Self::InProgress { .. } => "response.in_progress",
            Self::ItemAdded { .. } => "response.output_item.added",
            Self::PartAdded { .. } => "response.content_part.added",
            Self::ReasoningDelta { .. } => "response.reasoning_text.delta",
            Self::ReasoningDone { .. } => "response.reasoning_text.done",
            Self::TextDelta { .. } => "response.output_text.delta",
            Self::TextDone { .. } => "response.output_text.done",
            Self::PartDone { .. } => "response.content_part.done",
            Self::ArgumentsDelta { .. } => "response.function_call_arguments.delta",
            Self::ArgumentsDone { .. } => "response.function_call_arguments.done",
            Self::ItemDone { .. } => "response.output_item.done",
            Self::Completed { .. } => "response.completed",
            Self::Incomplete { .. } => "response.incomplete",
            Self::Error { .. } => "error",
        }
    }
}
