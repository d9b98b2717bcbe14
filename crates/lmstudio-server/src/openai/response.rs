//! OpenAI's response bodies, and LM Studio REST v0's (the same with `stats`, `model_info` and
//! `runtime`): a whole completion, a stream's chunks, model lists. Written through serde; the
//! field order is the order on the wire.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// `/v1/completions` and `/v1/chat/completions`: a whole response, or one chunk of a stream.
#[derive(Debug, Serialize)]
pub(crate) struct Completion {
    pub id: String,
    /// `text_completion`, `chat.completion` or `chat.completion.chunk`.
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    /// On a whole response and on a stream's last chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// REST v0 only.
    #[serde(flatten)]
    pub rest: Option<RestBlocks>,
}

/// The one choice of a completion.
#[derive(Debug, Serialize)]
pub(crate) struct Choice {
    pub index: u32,
    #[serde(flatten)]
    pub output: Output,
    /// `null` unless asked for, and on a stream's last chunk.
    pub logprobs: Option<Logprobs>,
    /// `null` until the last chunk: `stop`, `length` or `tool_calls`.
    pub finish_reason: Option<&'static str>,
}

/// What a choice carries, by endpoint: `text`, a chat `message`, or a chunk's `delta`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Output {
    Text(String),
    Message(Message),
    Delta(Delta),
}

/// An assistant message: its text (`null` when it only calls tools) and its calls.
#[derive(Debug, Serialize)]
pub(crate) struct Message {
    pub role: &'static str,
    pub content: Option<String>,
    /// The reasoning of a model that thought before answering (DeepSeek's and llama-server's
    /// field, which LM Studio writes too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallOut>,
}

/// A chunk of a chat message: the role on the first chunk only; the calls in the chunk before the
/// last; the last chunk's delta is empty.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallOut>,
}

/// A call: `{"id", "type": "function", "function": {"name", "arguments"}}`; in a stream's delta
/// with its `index` as well (each call whole, in one delta).
#[derive(Debug, Serialize)]
pub(crate) struct ToolCallOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCallOut,
}

#[derive(Debug, Serialize)]
pub(crate) struct FunctionCallOut {
    pub name: String,
    /// JSON text.
    pub arguments: String,
}

impl ToolCallOut {
    /// The calls of a result; `streamed` numbers them for a delta.
    pub(crate) fn of(calls: &[lmstudio::ToolCall], streamed: bool) -> Vec<Self> {
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| Self {
                index: streamed.then_some(i),
                id: c.id.clone(),
                kind: "function",
                function: FunctionCallOut { name: c.name.clone(), arguments: c.arguments.clone() },
            })
            .collect()
    }
}

/// Log probabilities in each endpoint's own shape.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Logprobs {
    Text(TextLogprobs),
    Chat(ChatLogprobs),
}

/// `/v1/completions`: parallel arrays, the alternatives as `{token: logprob}` maps.
#[derive(Debug, Serialize)]
pub(crate) struct TextLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    pub top_logprobs: Vec<TopMap>,
    /// Where each token starts in the text, in bytes.
    pub text_offset: Vec<usize>,
}

impl TextLogprobs {
    pub(crate) fn of(tokens: &[lmstudio::TokenLogprob]) -> Self {
        let mut offset = 0;
        let text_offset = tokens
            .iter()
            .map(|t| {
                offset += t.token.len();
                offset - t.token.len()
            })
            .collect();
        Self {
            tokens: tokens.iter().map(|t| t.token.clone()).collect(),
            token_logprobs: tokens.iter().map(|t| t.logprob).collect(),
            top_logprobs: tokens.iter().map(|t| TopMap(t.top.clone())).collect(),
            text_offset,
        }
    }
}

/// A token's alternatives as one JSON object, most likely first; of two alternatives with the same
/// text, the first is kept.
#[derive(Debug)]
pub(crate) struct TopMap(Vec<lmstudio::TopLogprob>);

impl Serialize for TopMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seen = std::collections::HashSet::new();
        let mut map = s.serialize_map(None)?;
        for a in self.0.iter().filter(|a| seen.insert(a.token.as_str())) {
            map.serialize_entry(&a.token, &a.logprob)?;
        }
        map.end()
    }
}

/// `/v1/chat/completions`: one entry per token.
#[derive(Debug, Serialize)]
pub(crate) struct ChatLogprobs {
    pub content: Vec<ChatTokenLogprob>,
    pub refusal: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ChatTokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    /// `{token, logprob, bytes}` each.
    pub top_logprobs: Vec<lmstudio::TopLogprob>,
}

impl ChatLogprobs {
    pub(crate) fn of(tokens: &[lmstudio::TokenLogprob]) -> Self {
        let content = tokens
            .iter()
            .map(|t| ChatTokenLogprob {
                token: t.token.clone(),
                logprob: t.logprob,
                bytes: t.bytes.clone(),
                top_logprobs: t.top.clone(),
            })
            .collect();
        Self { content, refusal: None }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptTokensDetails,
}

/// OpenAI's `usage.prompt_tokens_details`: of the prompt's tokens, those taken from the prompt
/// cache rather than evaluated.
#[derive(Debug, Serialize)]
pub(crate) struct PromptTokensDetails {
    pub cached_tokens: u64,
}

impl Usage {
    pub(crate) fn of(s: &lmstudio::Stats) -> Self {
        Self {
            prompt_tokens: s.prompt_tokens_count.unwrap_or(0),
            completion_tokens: s.predicted_tokens_count.unwrap_or(0),
            total_tokens: s.total_tokens_count.unwrap_or(0),
            prompt_tokens_details: PromptTokensDetails { cached_tokens: s.cached_prompt_tokens_count.unwrap_or(0) },
        }
    }
}

/// What LM Studio's REST v0 adds to a completion.
#[derive(Debug, Serialize)]
pub(crate) struct RestBlocks {
    pub stats: RestStats,
    pub model_info: RestModelInfo,
    pub runtime: Runtime,
}

/// A prediction's stats, as REST v0 names them (snake case).
#[derive(Debug, Serialize)]
pub(crate) struct RestStats {
    pub tokens_per_second: Option<f64>,
    pub time_to_first_token: Option<f64>,
    pub generation_time: f64,
    pub stop_reason: lmstudio::StopReason,
    #[serde(flatten)]
    pub drafts: Option<RestDrafts>,
}

/// Speculative decoding's counts, with LM Studio's names.
#[derive(Debug, Serialize)]
pub(crate) struct RestDrafts {
    pub used_draft_model_key: String,
    pub total_draft_tokens_count: u64,
    pub accepted_draft_tokens_count: u64,
    pub rejected_draft_tokens_count: u64,
    pub ignored_draft_tokens_count: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct RestModelInfo {
    pub arch: Option<String>,
    pub quant: Option<String>,
    pub format: String,
    pub context_length: Option<u64>,
}

impl RestBlocks {
    pub(crate) fn of(r: &lmstudio::PredictionResult) -> Self {
        let s = &r.stats;
        let generation_time = match (s.tokens_per_second, s.predicted_tokens_count) {
            (Some(tps), Some(n)) if tps > 0.0 => n as f64 / tps,
            _ => 0.0,
        };
        let drafts = s.drafts.as_ref().map(|d| RestDrafts {
            used_draft_model_key: d.used_draft_model_key.clone(),
            total_draft_tokens_count: d.total_draft_tokens_count,
            accepted_draft_tokens_count: d.accepted_draft_tokens_count,
            rejected_draft_tokens_count: d.rejected_draft_tokens_count,
            ignored_draft_tokens_count: d.ignored_draft_tokens_count,
        });
        let i = &r.model_info;
        Self {
            stats: RestStats {
                tokens_per_second: s.tokens_per_second,
                time_to_first_token: s.time_to_first_token_sec,
                generation_time,
                stop_reason: s.stop_reason,
                drafts,
            },
            model_info: RestModelInfo {
                arch: i.architecture.clone(),
                quant: i.quantization.as_ref().map(|q| q.name.clone()),
                format: i.format.clone(),
                context_length: i.context_length,
            },
            runtime: Runtime::OURS,
        }
    }
}

/// The engine that answered.
#[derive(Debug, Serialize)]
pub(crate) struct Runtime {
    pub name: &'static str,
    pub version: &'static str,
    pub supported_formats: &'static [&'static str],
}

impl Runtime {
    const OURS: Self =
        Self { name: "llama.cpp-cpu (lmstudio-rs)", version: env!("CARGO_PKG_VERSION"), supported_formats: &["gguf"] };
}

/// `{"object": "list", "data": [...]}`.
#[derive(Debug, Serialize)]
pub(crate) struct List<T> {
    pub object: &'static str,
    pub data: Vec<T>,
}

impl<T> List<T> {
    pub(crate) fn of(data: Vec<T>) -> Self {
        Self { object: "list", data }
    }
}

/// A model of `/v1/models`.
#[derive(Debug, Serialize)]
pub(crate) struct Model {
    pub id: String,
    pub object: &'static str,
    pub owned_by: String,
}

/// A model of `/api/v0/models`.
#[derive(Debug, Serialize)]
pub(crate) struct RestModel {
    pub id: String,
    pub object: &'static str,
    #[serde(rename = "type")]
    pub kind: String,
    pub publisher: String,
    pub arch: Option<String>,
    pub compatibility_type: String,
    pub quantization: Option<String>,
    /// `loaded` or `not-loaded`.
    pub state: &'static str,
    pub max_context_length: u64,
    /// The first loaded instance's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_context_length: Option<u64>,
}

/// The publisher part of a model's path (`lmstudio-community/...`).
pub(crate) fn publisher(info: &lmstudio::ModelInfo) -> String {
    info.path.split('/').next().unwrap_or("local").to_owned()
}

impl Model {
    pub(crate) fn of(entry: &lmstudio::ModelEntry) -> Self {
        Self { id: entry.info.model_key.clone(), object: "model", owned_by: publisher(&entry.info) }
    }
}

impl RestModel {
    pub(crate) fn of(entry: &lmstudio::ModelEntry) -> Self {
        let info = &entry.info;
        Self {
            id: info.model_key.clone(),
            object: "model",
            // LM Studio's v0 listing says `embeddings` where the SDKs say `embedding`.
            kind: if info.is_embedding() { "embeddings".into() } else { info.kind.clone() },
            publisher: publisher(info),
            arch: info.architecture.clone(),
            compatibility_type: info.format.clone(),
            quantization: info.quantization.as_ref().map(|q| q.name.clone()),
            state: if entry.instances.is_empty() { "not-loaded" } else { "loaded" },
            max_context_length: info.max_context_length,
            loaded_context_length: entry.instances.first().and_then(|i| i.context_length),
        }
    }
}
