//! The library's one error type. Each variant says what the caller can do about it.

use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in lmstudio, by what the caller can do about it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No model matches the query; `candidates` lists the model keys that exist.
    #[error("no model matches {query:?}{}", list_hint(candidates))]
    ModelNotFound {
        /// What was asked for.
        query: String,
        /// The keys of the models that are available.
        candidates: Vec<String>,
    },
    /// More than one model matches the query; name one of `candidates`.
    #[error("{query:?} matches more than one model: {}", candidates.join(", "))]
    AmbiguousModel {
        /// What was asked for.
        query: String,
        /// The keys of the matching models.
        candidates: Vec<String>,
    },
    /// A model file is not a valid GGUF model.
    #[error("{} is not a valid model file: {reason}", path.display())]
    InvalidModelFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A prediction or load setting is out of range.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A request or message is not what its protocol says (a missing field, a wrong type): the
    /// message says which and where.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The prompt cannot be used (for example, it is empty).
    #[error("invalid prompt: {0}")]
    InvalidPrompt(String),
    /// The prompt does not fit in the model's context and the overflow policy says not to cut it.
    #[error("the prompt has {prompt_tokens} tokens but the context holds {context_length}; shorten it, load the model with a longer context, or use contextOverflowPolicy \"truncateMiddle\"")]
    ContextOverflow {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// The loaded context length.
        context_length: usize,
    },
    /// llama.cpp failed to load the model or create its context.
    #[error("failed to load {}: {reason}", path.display())]
    Load {
        /// The model file.
        path: PathBuf,
        /// What llama.cpp reported.
        reason: String,
    },
    /// An RPC worker the load names ([`crate::LoadConfig::rpc`]) cannot be used: it does not
    /// answer, speaks another protocol version, or serves another client. Nothing was loaded.
    #[error("RPC worker {endpoint}: {reason}; start it there with `lms rpc-worker` (the same build as this one)")]
    RpcWorker {
        /// The worker's `host:port`.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The draft model asked for cannot draft for this model: its tokens are not the same.
    #[error("{draft:?} ({}) cannot be the draft model of this model: {reason}; pick a model of the same family (the same tokenizer)", path.display())]
    IncompatibleDraftModel {
        /// The draft model's key.
        draft: String,
        /// Its file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// No preset answers to the name asked for.
    #[error("no preset {query:?}{}", if available.is_empty() { "; there are none (put *.preset.json files in $LMSTUDIO_PRESETS_DIR)".to_owned() } else { format!("; available: {}", available.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", ")) })]
    PresetNotFound {
        /// The name asked for.
        query: String,
        /// The presets there are: identifier and name.
        available: Vec<(String, String)>,
    },
    /// A load named an identifier that a loaded instance already answers to.
    #[error("an instance with identifier {identifier:?} already exists; unload it, or load under another identifier (or none: the next free one, `key:2`, is taken)")]
    IdentifierInUse {
        /// The identifier asked for.
        identifier: String,
    },
    /// Loading would take more memory than the machine has free.
    #[error("loading needs about {estimate} (KV cache for the context times the parallel slots) but {available_mib} MiB are available; unload a model, load with a shorter context, fewer parallel slots or a smaller prompt cache, or relax the guardrail")]
    InsufficientMemory {
        /// The estimate, by part.
        estimate: crate::types::result::MemoryEstimate,
        /// What the system reported available (`MemAvailable`, or the cgroup's limit when lower).
        available_mib: u64,
    },
    /// Loading would put more on the GPU than its memory has free.
    #[error("loading needs about {estimate}, but the GPU has {free_mib} MiB free; unload a model, offload fewer layers (gpu ratio), load with a shorter context or fewer parallel slots, keep the KV cache on the CPU, or relax the guardrail")]
    InsufficientGpuMemory {
        /// The estimate, by part.
        estimate: crate::types::result::MemoryEstimate,
        /// What the GPU devices the layers go to report free.
        free_mib: u64,
    },
    /// Too many predictions are queued on this model; retry later.
    #[error("the model is overloaded: {queued} predictions are already queued")]
    Overloaded {
        /// How many predictions are waiting.
        queued: usize,
    },
    /// The prediction has not finished yet (from `result()` on a running stream).
    #[error("the prediction is still running; iterate the stream or call wait_for_result()")]
    NotFinished,
    /// The model was unloaded, or its engine stopped, while the request was in flight.
    #[error("the model was unloaded")]
    ModelUnloaded,
    /// The engine failed while evaluating (llama.cpp decode error).
    #[error("the engine failed: {0}")]
    Engine(String),
    /// Getting the default model failed.
    #[error("download failed: {0}")]
    Download(String),
    /// The server answered with an error (remote mode).
    #[error("the server reported: {0}")]
    Server(String),
    /// The connection to the server failed or was lost (remote mode).
    #[error("connection to the server failed: {0}")]
    Connection(String),
    /// The server did not answer a call in time (remote mode); the connection stays open.
    #[error("the server did not answer {call} within {seconds} s")]
    Timeout {
        /// The call (its RPC endpoint).
        call: String,
        /// How long it waited.
        seconds: u64,
    },
    /// The operation is not available in this mode.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A file-system error.
    #[error(transparent)]
    Io(Arc<std::io::Error>),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Io(Arc::new(e))
    }
}

fn list_hint(candidates: &[String]) -> String {
    if candidates.is_empty() {
        "; no models are downloaded (hint: `lms get gemma-3-270m` fetches the default model)".to_owned()
    } else {
        format!("; available: {}", candidates.join(", "))
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
