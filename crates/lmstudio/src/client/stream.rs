//! Prediction streams: the blocking iterator and the async `Stream`, both thin adapters over the
//! engine's per-request event channel, and the callbacks they run as events arrive.

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::types::error::{Error, Result};
use crate::types::event::{Cancel, Event};
use crate::types::result::{AssistantMessage, Fragment, PredictionResult};

type Progress = Box<dyn FnMut(f32) + Send>;
type FirstToken = Box<dyn FnMut() + Send>;
type OnFragment = Box<dyn FnMut(&Fragment) + Send>;
type OnMessage = Box<dyn FnMut(&AssistantMessage) + Send>;

/// Cancels a running prediction from anywhere; see `cancel_handle()` on the streams.
#[derive(Debug, Clone)]
pub struct CancelHandle(Cancel);

impl CancelHandle {
    /// Asks the engine to stop the prediction (stop reason `userStopped`).
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

/// The callbacks of LM Studio's SDK; each runs on the thread that consumes the stream.
#[derive(Default)]
struct Callbacks {
    progress: Option<Progress>,
    first_token: Option<FirstToken>,
    fragment: Option<OnFragment>,
    message: Option<OnMessage>,
}

/// What one event means to the consumer.
enum Step {
    Yield(Result<Fragment>),
    Skip,
    End,
}

/// The state both stream flavours share: callbacks, and the outcome once it is known.
struct Consumer {
    callbacks: Callbacks,
    outcome: Option<Result<PredictionResult>>,
    error_yielded: bool,
    cancel: Cancel,
}

impl Consumer {
    fn new(cancel: Cancel) -> Self {
        Self { callbacks: Callbacks::default(), outcome: None, error_yielded: false, cancel }
    }

    /// Handles the next event; `None` means the engine dropped the channel without a result.
    fn handle(&mut self, event: Option<Event>) -> Step {
        let event = match event {
            Some(e) => e,
            None if self.outcome.is_none() => Event::Done(Box::new(Err(Error::ModelUnloaded))),
            None => return self.end(),
        };
        match event {
            Event::PromptProgress(p) => {
                if let Some(f) = &mut self.callbacks.progress {
                    f(p);
                }
                Step::Skip
            }
            Event::FirstToken => {
                if let Some(f) = &mut self.callbacks.first_token {
                    f();
                }
                Step::Skip
            }
            Event::Fragment(fragment) => {
                if let Some(f) = &mut self.callbacks.fragment {
                    f(&fragment);
                }
                Step::Yield(Ok(fragment))
            }
            Event::Done(outcome) => {
                let outcome = *outcome;
                if let (Ok(result), Some(f)) = (&outcome, &mut self.callbacks.message) {
                    f(&result.message());
                }
                self.outcome = Some(outcome);
                self.end()
            }
        }
    }

    /// After the last event: a failure is yielded once, then the stream ends.
    fn end(&mut self) -> Step {
        match &self.outcome {
            Some(Err(e)) if !self.error_yielded => {
                self.error_yielded = true;
                Step::Yield(Err(e.clone()))
            }
            _ => Step::End,
        }
    }

    fn result(&self) -> Result<PredictionResult> {
        self.outcome.clone().unwrap_or(Err(Error::NotFinished))
    }
}

macro_rules! callback_setters {
    () => {
        /// Called with prompt-processing progress: 0.0 first, strictly increasing, 1.0 last.
        pub fn on_prompt_processing_progress(mut self, f: impl FnMut(f32) + Send + 'static) -> Self {
            self.consumer.callbacks.progress = Some(Box::new(f));
            self
        }

        /// Called once, when the first token has been predicted.
        pub fn on_first_token(mut self, f: impl FnMut() + Send + 'static) -> Self {
            self.consumer.callbacks.first_token = Some(Box::new(f));
            self
        }

        /// Called with each fragment, just before the stream yields it.
        pub fn on_prediction_fragment(mut self, f: impl FnMut(&Fragment) + Send + 'static) -> Self {
            self.consumer.callbacks.fragment = Some(Box::new(f));
            self
        }

        /// Called with the assistant message when the prediction completes.
        pub fn on_message(mut self, f: impl FnMut(&AssistantMessage) + Send + 'static) -> Self {
            self.consumer.callbacks.message = Some(Box::new(f));
            self
        }

        /// The result: never blocks; [`Error::NotFinished`] while the prediction runs.
        pub fn result(&self) -> Result<PredictionResult> {
            self.consumer.result()
        }

        /// Asks the engine to stop; the result then has stop reason `userStopped`.
        pub fn cancel(&self) {
            self.consumer.cancel.cancel();
        }

        /// A handle that cancels this prediction from elsewhere (another task or thread).
        pub fn cancel_handle(&self) -> CancelHandle {
            CancelHandle(self.consumer.cancel.clone())
        }
    };
}

/// A running prediction, read as a blocking iterator of fragments.
///
/// Dropping it cancels the prediction.
pub struct PredictionStream {
    events: flume::Receiver<Event>,
    consumer: Consumer,
}

impl PredictionStream {
    pub(crate) fn new(events: flume::Receiver<Event>, cancel: Cancel) -> Self {
        Self { events, consumer: Consumer::new(cancel) }
    }

    callback_setters!();

    /// Blocks until the prediction is done (running the callbacks) and returns its result.
    pub fn wait_for_result(mut self) -> Result<PredictionResult> {
        for _ in &mut self {}
        self.consumer.result()
    }
}

impl Iterator for PredictionStream {
    type Item = Result<Fragment>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let event = if self.consumer.outcome.is_some() { None } else { self.events.recv().ok() };
            match self.consumer.handle(event) {
                Step::Yield(item) => return Some(item),
                Step::Skip => {}
                Step::End => return None,
            }
        }
    }
}

impl Drop for PredictionStream {
    fn drop(&mut self) {
        self.consumer.cancel.cancel();
    }
}

/// A running prediction, read as an async [`futures_core::Stream`] of fragments.
///
/// Dropping it cancels the prediction.
pub struct AsyncPredictionStream {
    events: flume::r#async::RecvStream<'static, Event>,
    consumer: Consumer,
}

impl AsyncPredictionStream {
    pub(crate) fn new(events: flume::Receiver<Event>, cancel: Cancel) -> Self {
        Self { events: events.into_stream(), consumer: Consumer::new(cancel) }
    }

    callback_setters!();

    /// Awaits the end of the prediction (running the callbacks) and returns its result.
    pub async fn wait_for_result(mut self) -> Result<PredictionResult> {
        std::future::poll_fn(|cx| loop {
            match Pin::new(&mut self).poll_next_item(cx) {
                Poll::Ready(Some(_)) => {}
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await;
        self.consumer.result()
    }

    fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Fragment>>> {
        loop {
            let event = if self.consumer.outcome.is_some() {
                None
            } else {
                match futures_core::Stream::poll_next(Pin::new(&mut self.events), cx) {
                    Poll::Ready(e) => e,
                    Poll::Pending => return Poll::Pending,
                }
            };
            match self.consumer.handle(event) {
                Step::Yield(item) => return Poll::Ready(Some(item)),
                Step::Skip => {}
                Step::End => return Poll::Ready(None),
            }
        }
    }
}

impl futures_core::Stream for AsyncPredictionStream {
    type Item = Result<Fragment>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_item(cx)
    }
}

impl Drop for AsyncPredictionStream {
    fn drop(&mut self) {
        self.consumer.cancel.cancel();
    }
}
