//! What a running prediction reports, whichever backend runs it: the one streaming primitive.

use crate::types::error::Result;
use crate::types::result::{Fragment, PredictionResult};

/// What a running prediction reports, in order: progress (0.0 first, 1.0 last), the first token,
/// fragments, then exactly one `Done` (unless the receiver went away first). The embedded engine
/// and the remote backend both send these on a per-request channel.
#[derive(Debug)]
pub enum Event {
    /// Prompt processing progress in `0.0..=1.0`, strictly increasing.
    PromptProgress(f32),
    /// The first token was predicted.
    FirstToken,
    /// A piece of text.
    Fragment(Fragment),
    /// The prediction ended.
    Done(Box<Result<PredictionResult>>),
}

/// What a load reports while it runs, to [`crate::Client::load_with`] and
/// [`crate::Client::get_or_load_with`] (LM Studio's load progress and JIT messages).
#[derive(Debug, Clone, PartialEq)]
pub enum LoadEvent {
    /// A load on demand (JIT) first unloads this instance, which an earlier one made (auto-evict).
    UnloadingOther(Box<crate::types::result::ModelInfo>),
    /// Reading the weights, in `0.0..=1.0`: 0.0 first, 1.0 once they are in.
    Progress(f32),
}

/// Where a load's [`LoadEvent`]s go.
pub type OnLoad = std::sync::Arc<dyn Fn(LoadEvent) + Send + Sync>;
