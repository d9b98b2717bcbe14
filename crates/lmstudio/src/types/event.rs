//! What a running prediction reports, whichever backend runs it: the one streaming primitive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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

/// The text a prediction gives the model ([`crate::Client::on_prompt`]): a raw prompt as it is, a
/// chat through the model's template (LM Studio's `llm.prediction.input` log event).
/// Borrowed: an observer that keeps nothing copies nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromptEvent<'a> {
    /// The instance's identifier.
    pub model_identifier: &'a str,
    /// Its model file.
    pub model_path: &'a str,
    /// The prompt, as the model reads it.
    pub prompt: &'a str,
}

/// Where [`PromptEvent`]s go.
pub type OnPrompt = std::sync::Arc<dyn Fn(&PromptEvent<'_>) + Send + Sync>;

/// The stop signal of one prediction: the consumer raises it ([`Cancel::cancel`], or by dropping
/// its stream); the backend that runs the prediction reads the flag. A backend that sleeps until
/// told (the remote client's IO thread) gives a wake-up to run after the flag is set.
#[derive(Clone, Default)]
pub(crate) struct Cancel {
    flag: Arc<AtomicBool>,
    wake: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Cancel {
    /// A signal whose raising also runs `wake`.
    pub(crate) fn waking(wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        Self { flag: Arc::default(), wake: Some(wake) }
    }

    /// Raises it.
    pub(crate) fn cancel(&self) {
        if !self.flag.swap(true, Ordering::Relaxed) {
            if let Some(wake) = &self.wake {
                wake();
            }
        }
    }

    /// The flag the backend reads.
    pub(crate) fn flag(&self) -> &Arc<AtomicBool> {
        &self.flag
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Cancel").field(&self.flag.load(Ordering::Relaxed)).finish()
    }
}

/// What a prediction starts from: a raw prompt, or a chat for the model's template.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    /// The prompt as it is.
    Raw(&'a str),
    /// Messages, rendered by the model's chat template.
    Chat(&'a [crate::types::result::ChatMessage]),
}
