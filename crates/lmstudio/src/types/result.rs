//! What a prediction produces: fragments while it runs, then a [`PredictionResult`] with the text,
//! the model's info and the stats, all with LM Studio's names.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A piece of generated text, as streamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fragment {
    /// The text (never part of a stop string; may be empty only when tokens produced no text yet).
    pub content: String,
    /// How many predicted tokens this fragment covers.
    pub tokens_count: u32,
    /// With [`crate::Config::logprobs`]: each of those tokens, how likely it was and the most
    /// likely alternatives (embedded backend; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<TokenLogprob>,
    /// Whether it is reasoning, a reasoning marker or answer ([`crate::Config::reasoning_parsing`]).
    #[serde(default, rename = "reasoningType")]
    pub reasoning: ReasoningType,
}

/// What a fragment of a chat's answer is, as LM Studio labels it: a model that thinks writes its
/// reasoning between two markers (`<think>`, `</think>`) before its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReasoningType {
    /// The answer.
    #[default]
    None,
    /// Reasoning.
    Reasoning,
    /// The marker that opens the reasoning.
    #[serde(rename = "reasoningStartTag")]
    StartTag,
    /// The marker that closes it.
    #[serde(rename = "reasoningEndTag")]
    EndTag,
}

impl ReasoningType {
    /// LM Studio's name of it (`none`, `reasoning`, `reasoningStartTag`, `reasoningEndTag`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Reasoning => "reasoning",
            Self::StartTag => "reasoningStartTag",
            Self::EndTag => "reasoningEndTag",
        }
    }

    /// The type LM Studio's name `name` is, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::None, Self::Reasoning, Self::StartTag, Self::EndTag].into_iter().find(|t| t.as_str() == name)
    }
}

/// One predicted token and its log probability (natural log), from the distribution it was
/// sampled from: the model's logits after the repeat, presence and frequency penalties and with
/// banned tokens removed, at temperature 1 and before top-k, top-p and min-p cut it (as OpenAI
/// and llama-server report them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's text (invalid UTF-8 replaced; see `bytes`).
    pub token: String,
    /// Its log probability.
    pub logprob: f32,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The most likely tokens at this step, most likely first (the predicted one among them
    /// when it is likely enough), as many as asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<TopLogprob>,
}

/// An alternative of a [`TokenLogprob`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// Its log probability.
    pub logprob: f32,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Why a prediction stopped (LM Studio's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StopReason {
    /// The model produced its end-of-text token.
    EosFound,
    /// A stop string was produced (see [`Stats::stop_string`]).
    StopStringFound,
    /// `maxTokens` tokens were predicted.
    MaxPredictedTokensReached,
    /// The context filled up.
    ContextLengthReached,
    /// The caller cancelled it.
    UserStopped,
    /// The model was unloaded while it ran.
    ModelUnloaded,
    /// The engine failed.
    Failed,
    /// The model called a tool.
    ToolCalls,
}

impl StopReason {
    /// LM Studio's name, e.g. `eosFound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EosFound => "eosFound",
            Self::StopStringFound => "stopStringFound",
            Self::MaxPredictedTokensReached => "maxPredictedTokensReached",
            Self::ContextLengthReached => "contextLengthReached",
            Self::UserStopped => "userStopped",
            Self::ModelUnloaded => "modelUnloaded",
            Self::Failed => "failed",
            Self::ToolCalls => "toolCalls",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened during a prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Predicted tokens per second, from the first token to the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// Layers on the GPU (0 on a CPU-only build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_gpu_layers: Option<f64>,
    /// Seconds from the request to the first predicted token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_token_sec: Option<f64>,
    /// Tokens in the prompt (after any truncation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_count: Option<u64>,
    /// Tokens predicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_tokens_count: Option<u64>,
    /// Prompt plus predicted tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tokens_count: Option<u64>,
    /// Prompt tokens that were already in the KV cache and not evaluated again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_prompt_tokens_count: Option<u64>,
    /// Of the predicted tokens, those of a chat's reasoning (its markers included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens_count: Option<u64>,
    /// The stop string that ended the prediction, when `stop_reason` is `stopStringFound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_string: Option<String>,
    /// With speculation ([`crate::Config::speculation`]): what drafted tokens, and what became of
    /// them, by LM Studio's names; accepted + rejected + ignored = total.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub drafts: Option<DraftStats>,
}

/// What became of a prediction's drafted tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DraftStats {
    /// The draft model's key (LM Studio's `usedDraftModelKey`); `ngram` for drafts from the context.
    pub used_draft_model_key: String,
    /// Tokens drafted.
    pub total_draft_tokens_count: u64,
    /// Drafted tokens that were what the model predicted, and kept.
    pub accepted_draft_tokens_count: u64,
    /// Drafted tokens the model predicted otherwise (the first wrong one of each draft).
    pub rejected_draft_tokens_count: u64,
    /// Drafted tokens never checked: after a rejected one, or after the prediction ended.
    pub ignored_draft_tokens_count: u64,
}

/// A model as stored (and, for a loaded instance, how it is loaded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    /// [`LLM`] for language models, [`EMBEDDING`] for models that only make vectors.
    #[serde(rename = "type")]
    pub kind: String,
    /// The key that names the model, e.g. `gemma-3-270m`.
    pub model_key: String,
    /// File format, `gguf`.
    pub format: String,
    /// Human-readable name, e.g. `Gemma 3 270m`.
    pub display_name: String,
    /// Path relative to the models directory, `publisher/model/file.gguf`.
    pub path: String,
    /// Size of the file in bytes.
    pub size_bytes: u64,
    /// Parameter count as LM Studio writes it, e.g. `270M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params_string: Option<String>,
    /// Architecture, e.g. `gemma3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Quantization, e.g. `Q4_K_M` of 4 bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
    /// Whether the model takes images.
    pub vision: bool,
    /// Whether the model was trained for tool use.
    pub trained_for_tool_use: bool,
    /// The context length the model was trained with.
    pub max_context_length: u64,
    /// For a loaded instance: the name it answers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// For a loaded instance: a unique reference to this load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_reference: Option<String>,
    /// For a loaded instance: the context length it was loaded with (per prediction slot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
    /// For a loaded instance: the layers on the GPU (LM Studio's `numGpuLayers`; the output
    /// layer counts as one; 0 on the CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_gpu_layers: Option<u32>,
    /// For a loaded instance in a [`crate::Client::list_loaded`] answer: how it is loaded and what
    /// it is doing at that moment (our addition; LM Studio's SDKs ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<InstanceState>,
}

/// [`ModelInfo::kind`] of a language model.
pub const LLM: &str = "llm";
/// [`ModelInfo::kind`] of an embedding model (an encoder such as BERT: vectors, never text).
pub const EMBEDDING: &str = "embedding";

impl ModelInfo {
    /// Whether the model only makes vectors (it cannot predict text).
    pub fn is_embedding(&self) -> bool {
        self.kind == EMBEDDING
    }
}

/// A loaded instance at one moment, as `lms ps` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceState {
    /// Loaded on demand, by a request that named a model that was not loaded (JIT).
    pub jit: bool,
    /// The idle time after which it unloads itself, in milliseconds (none: it stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// What is left of that time now (the whole of it while a prediction runs or waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_left_ms: Option<u64>,
    /// The memory it takes, in MiB: its load estimate of weights, KV cache and compute buffers,
    /// plus what its prompt cache holds now.
    pub memory_mib: u64,
    /// Its predictions and slots now.
    #[serde(flatten)]
    pub activity: Activity,
}

/// A model file's quantization as LM Studio describes it: `{"name": "Q4_K_M", "bits": 4}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantization {
    /// llama.cpp's name for it.
    pub name: String,
    /// Bits per weight it is named for (the first number in the name: `Q4_K_M` 4, `BF16` 16).
    pub bits: u32,
}

impl Quantization {
    /// The quantization called `name`.
    pub fn from_name(name: &str) -> Self {
        let digits: String =
            name.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect();
        Self { name: name.to_owned(), bits: digits.parse().unwrap_or(0) }
    }
}

impl fmt::Display for Quantization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A downloaded model and its loaded instances, as LM Studio's REST model list shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntry {
    /// The model as stored.
    pub info: ModelInfo,
    /// Its loaded instances (none when it is not loaded).
    pub instances: Vec<ModelInfo>,
}

/// What a loaded instance is doing right now, from [`crate::Llm::activity`]: a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    /// Predictions holding a slot (evaluating their prompt or generating).
    pub running: usize,
    /// Predictions waiting for a free slot.
    pub queued: usize,
    /// Predictions that can run at once (the instance's `parallel`).
    pub slots: usize,
    /// Bytes of host memory the instance's prompt cache holds now (saved prompts; see
    /// [`crate::LoadConfig::prompt_cache_mib`]).
    pub prompt_cache_bytes: usize,
    /// Tokens of context the running predictions hold in the KV cache (prompt and output so
    /// far; what idle slots keep for reuse is not counted).
    #[serde(default)]
    pub kv_tokens: usize,
    /// Tokens of context all slots hold together (`parallel` x context length).
    #[serde(default)]
    pub kv_capacity: usize,
    /// Set when the instance failed (its engine thread panicked) and takes no more predictions:
    /// why. Unload it and load it again.
    pub failure: Option<String>,
}

/// One message of a chat, for [`crate::Llm::apply_prompt_template`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    pub content: String,
    /// An assistant's calls of tools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<crate::types::tools::ToolCall>,
    /// A tool's message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message from `role` with `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }

    /// The assistant's message that made `calls` (with any text it wrote beside them).
    pub fn tool_calls(content: impl Into<String>, calls: Vec<crate::types::tools::ToolCall>) -> Self {
        Self { tool_calls: calls, ..Self::new("assistant", content) }
    }

    /// Whether it is a call of tools or a tool's result.
    #[cfg(feature = "embedded")]
    pub(crate) fn is_tool_traffic(&self) -> bool {
        self.role == "tool" || !self.tool_calls.is_empty()
    }

    /// A tool's result, answering the call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self { tool_call_id: Some(call_id.into()), ..Self::new("tool", content) }
    }
}

/// A conversation for [`crate::Llm::respond`], as LM Studio's `Chat`: an optional system prompt,
/// then user and assistant messages in order.
///
/// ```
/// let mut chat = lmstudio::Chat::with_system_prompt("Answer in one word.");
/// chat.add_user_message("The capital of France?");
/// chat.add_assistant_response("Paris.");
/// assert_eq!(chat.messages().len(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    messages: Vec<ChatMessage>,
}

impl From<Vec<ChatMessage>> for Chat {
    fn from(messages: Vec<ChatMessage>) -> Self {
        Self { messages }
    }
}

impl Chat {
    /// An empty chat.
    pub fn new() -> Self {
        Self::default()
    }

    /// A chat that starts with a system prompt.
    pub fn with_system_prompt(prompt: impl Into<String>) -> Self {
        Self { messages: vec![ChatMessage::new("system", prompt)] }
    }

    /// Sets the system prompt: replaces the one there is, else puts one first.
    pub fn set_system_prompt(&mut self, prompt: impl Into<String>) {
        match self.messages.first_mut().filter(|m| m.role == "system") {
            Some(m) => m.content = prompt.into(),
            None => self.messages.insert(0, ChatMessage::new("system", prompt)),
        }
    }

    /// Adds what the user says.
    pub fn add_user_message(&mut self, text: impl Into<String>) {
        self.messages.push(ChatMessage::new("user", text));
    }

    /// Adds what the assistant said.
    pub fn add_assistant_response(&mut self, text: impl Into<String>) {
        self.messages.push(ChatMessage::new("assistant", text));
    }

    /// Adds a message as it is: a tool's result ([`ChatMessage::tool_result`]), the assistant's
    /// calls ([`ChatMessage::tool_calls`]).
    pub fn push(&mut self, message: ChatMessage) {
        self.messages.push(message);
    }

    /// Adds a message as `on_message` gives it (LM Studio's `chat.append`).
    pub fn append(&mut self, message: &AssistantMessage) {
        let calls = message.tool_calls.clone();
        self.messages
            .push(ChatMessage { tool_calls: calls, ..ChatMessage::new(message.role.clone(), message.content.clone()) });
    }

    /// Forgets every message but the system prompt.
    pub fn reset(&mut self) {
        self.messages.retain(|m| m.role == "system");
    }

    /// The messages, in order.
    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }
}

/// An assistant message: what `on_message` receives when a prediction completes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// The generated text.
    pub content: String,
    /// The calls it made (with [`crate::Config::tools`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<crate::types::tools::ToolCall>,
}

/// The outcome of a completed prediction. `Display` prints the generated text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PredictionResult {
    /// The generated text (without any stop string); for a chat, the answer, without the
    /// reasoning, which is in `reasoning_content`.
    pub content: String,
    /// A chat's reasoning, when the model thought before answering (empty otherwise).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reasoning_content: String,
    /// The model that produced it.
    pub model_info: ModelInfo,
    /// What happened.
    pub stats: Stats,
    /// With [`crate::Config::logprobs`]: every predicted token with its log probability.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<TokenLogprob>,
    /// With [`crate::Config::tools`]: the calls the model made (`content` is then what it wrote
    /// beside them, often nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<crate::types::tools::ToolCall>,
}

impl PredictionResult {
    /// The result as the message `on_message` receives.
    pub fn message(&self) -> AssistantMessage {
        AssistantMessage {
            role: "assistant".into(),
            content: self.content.clone(),
            tool_calls: self.tool_calls.clone(),
        }
    }
}

impl fmt::Display for PredictionResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.content)
    }
}

/// A device llama.cpp's backends in this build found (`lms runtime ls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// The device's name (`CPU`, `CUDA0`, `Vulkan0`).
    pub name: String,
    /// What it is (`NVIDIA H200`, the CPU's model).
    pub description: String,
    /// The backend that runs it (`CPU`, `CUDA`, `Vulkan`).
    pub backend: String,
    /// `cpu`, `gpu`, `igpu` (integrated GPU), `accel` or `unknown`.
    pub kind: String,
    /// Its memory in MiB.
    pub memory_total_mib: u64,
    /// Its free memory in MiB.
    pub memory_free_mib: u64,
}

impl Device {
    /// Whether models can be offloaded to it ([`crate::LoadConfig::gpu`]).
    pub fn is_gpu(&self) -> bool {
        self.kind == "gpu" || self.kind == "igpu"
    }
}

/// What loading a model is expected to take in memory, by part (MiB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryEstimate {
    /// The weights, read into memory.
    pub weights_mib: u64,
    /// Keys and values for the context of every slot.
    pub kv_cache_mib: u64,
    /// llama.cpp's compute buffers and the rest of a context.
    pub compute_mib: u64,
    /// The host prompt cache at its limit.
    pub prompt_cache_mib: u64,
    /// What of it lies in host memory, which the guardrail compares with the memory available (the
    /// prompt cache only when strict).
    pub total_mib: u64,
    /// What of it lies on the GPU (the offloaded layers' weights, their KV cache when it is
    /// offloaded, compute buffers), which the guardrail compares with the GPU's free memory.
    #[serde(default)]
    pub gpu_mib: u64,
}

impl std::fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} MiB", self.total_mib)?;
        if self.gpu_mib > 0 {
            write!(f, " of host memory and {} MiB of GPU memory", self.gpu_mib)?;
        }
        write!(
            f,
            ": weights {}, KV cache {}, compute {}, prompt cache {}",
            self.weights_mib, self.kv_cache_mib, self.compute_mib, self.prompt_cache_mib
        )
    }
}
