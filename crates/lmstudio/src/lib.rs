//! lmstudio: run local language models with LM Studio's SDK API, in-process on llama.cpp.
//!
//! ```no_run
//! use lmstudio as lms;
//!
//! # fn main() -> lms::Result<()> {
//! let model = lms::llm("gemma-3-270m")?; // or lms::default_llm()
//! let config = lms::Config { max_tokens: Some(20), seed: Some(42), ..Default::default() };
//! let result = model.complete("My name is", config.clone())?;
//! println!("{result}");
//! println!("{} {:?}", result.model_info.display_name, result.stats.stop_reason);
//!
//! let mut stream = model.complete_stream("The capital of France is", config)?;
//! for fragment in &mut stream {
//!     print!("{}", fragment?.content);
//! }
//! println!("\n{:?}", stream.result()?.stats.predicted_tokens_count);
//! # Ok(())
//! # }
//! ```
//!
//! Models live in `$LMSTUDIO_MODELS_DIR` (else the platform data dir, `.../lmstudio-rs/models`), laid
//! out as `publisher/model/file.gguf`. `lms get gemma-3-270m` fetches the default model.

// Layers, each importing only from those below it:
//   client                the facade: Client, Llm, prediction streams (blocking and async)
//   engine | remote       the two backends, side by side; engine (feature `embedded`) is the only
//                         code that touches llama.cpp, remote speaks LM Studio's websocket protocol
//   store | wire | text | template | tools
//                         the models directory and GGUF headers | the protocol's codec |
//                         incremental UTF-8 decoding and stop strings | chat templates (pure) |
//                         tool calls: their syntax, constraint and reading (pure)
//   types                 plain data: configs, results, stats, model info, events, errors
mod client;
#[cfg(feature = "embedded")]
mod engine;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "embedded")]
mod reasoning;
mod remote;
pub mod store;
#[cfg(feature = "embedded")]
mod template;
#[cfg_attr(not(feature = "embedded"), allow(dead_code))]
mod text;
#[cfg(feature = "embedded")]
mod tools;
mod types;
pub mod wire;

use std::sync::OnceLock;

pub use client::act::{Act, ActResult, FunctionTool, ToolOutcome};
pub use client::embedding::{EmbeddingModel, Embeddings, Ranking};
pub use client::presets::{Preset, PresetStore};
pub use client::stream::{AsyncPredictionStream, CancelHandle, PredictionStream};
pub use client::{Client, Llm};
#[cfg(feature = "benching")]
#[doc(hidden)]
pub use engine::benching;
/// The devices llama.cpp's backends in this build find: the CPU, and GPUs where a GPU backend
/// (the `cuda` feature) is built in and sees one (`lms runtime ls`).
#[cfg(feature = "embedded")]
pub use engine::devices;
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub use engine::FAULT_PANIC;
/// llama.cpp's RPC worker (`lms rpc-worker`), and the workers a process reaches.
#[cfg(feature = "embedded")]
pub use engine::{attach_rpc_workers, RpcWorker};
pub use remote::RemoteOptions;
pub use store::{default_prompt_cache_dir, ImportMode, ModelStore, StoredModel, DEFAULT_MODEL_KEY};
pub use types::config::{
    Config, ContextOverflowPolicy, DraftSettings, GpuOffload, Guardrail, LoadConfig, Pooling, ReasoningParsing,
    Speculation, Structured, ValidConfig, DEFAULT_PARALLEL, MAX_DRAFT_TOKENS,
};
pub use types::error::{Error, Result};
pub use types::event::{LoadEvent, OnLoad, OnPrompt, PromptEvent};
pub use types::result::{
    Activity, AssistantMessage, Chat, ChatMessage, Device, DraftStats, Fragment, InstanceState, MemoryEstimate,
    ModelEntry, ModelInfo, PredictionResult, Quantization, ReasoningType, Stats, StopReason, TokenLogprob, TopLogprob,
};
pub use types::result::{EMBEDDING, LLM};
pub use types::tools::{Tool, ToolCall, ToolChoice};

/// The process-wide default client ([`Client::from_env`]: remote when `$LMSTUDIO_HOST` is set,
/// else embedded on `$LMSTUDIO_MODELS_DIR`), as LM Studio's top-level convenience API uses.
pub fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(Client::from_env)
}

/// LM Studio's `lms.llm(name)`: the model `query` names, loading it if needed.
pub fn llm(query: &str) -> Result<Llm> {
    client().llm(query)
}

/// LM Studio's `lms.llm()`: any loaded model, else the default one.
pub fn default_llm() -> Result<Llm> {
    client().default_llm()
}
