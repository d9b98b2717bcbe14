//! What the engine's handle and its thread pass between them: a prediction as the thread receives
//! it, what both share, and the settings fixed at load time.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use llama_cpp_2::token::LlamaToken;

use super::{disk_cache, draft, grammar};
use crate::types::config::ValidConfig;
use crate::types::event::Event;

/// A prediction as the engine thread receives it: already validated and tokenized.
pub(crate) struct Job {
    pub tokens: Vec<LlamaToken>,
    pub config: ValidConfig,
    /// The compiled language of `config.structured`.
    pub grammar: Option<grammar::Grammar>,
    /// The draft model of `config.draft`, loaded, and how to draft with it.
    pub draft: Option<(Arc<draft::DraftModel>, draft::DraftRule)>,
    pub events: flume::Sender<Event>,
    pub cancel: Arc<AtomicBool>,
    pub submitted: Instant,
    #[cfg(feature = "fault-injection")]
    pub fault: bool,
}

/// What the engine thread and its handle share: the queue's sending end, the gauges and the
/// failure.
///
/// Gauges: how many predictions wait in the queue and how many hold a slot. The worker moves a job
/// from one count to the other before it takes it off the queue's count, and drops a finished one
/// before its result is sent, so a caller that has its result never still sees it counted.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Taken away to stop the engine (unload, or the worker after a panic); the worker drains the
    /// queue until the last clone is gone, so no job is ever left unanswered.
    pub jobs: Mutex<Option<flume::Sender<Job>>>,
    pub queued: AtomicUsize,
    pub running: AtomicUsize,
    /// Bytes the prompt cache holds, set by the worker after each save.
    pub prompt_cache_bytes: AtomicUsize,
    /// Context tokens the running predictions hold in the KV cache, set by the worker each step.
    pub kv_tokens: AtomicUsize,
    /// Set when the engine thread panicked and stopped: why (the error predictions got).
    pub failure: Mutex<Option<String>>,
    /// Layers on the GPU (LM Studio's `numGpuLayers`).
    pub gpu_layers: u32,
}

/// Engine settings fixed at load time.
#[derive(Debug, Clone)]
pub(crate) struct EngineParams {
    pub context_length: u32,
    pub parallel: u32,
    pub threads: u32,
    pub sliding_window: u32,
    /// Flash attention, and where the KV cache of offloaded layers lives.
    pub attention: super::backend::Attention,
    /// Whether prompt rows are reused (from a slot, another slot, host memory or disk). Off with
    /// layers on a GPU or flash attention: their kernels give a prompt's rows other bits in other
    /// chunkings (ARCHITECTURE.md, "Deterministic prefix cache").
    pub reuse_prompts: bool,
    /// Bytes of host memory for prompts saved from slots.
    pub prompt_cache_bytes: usize,
    /// Where those prompts are kept across loads, if anywhere.
    pub disk_cache: Option<disk_cache::DiskCache>,
}
