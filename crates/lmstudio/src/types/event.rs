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
