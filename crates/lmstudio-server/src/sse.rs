//! Server-sent events for the HTTP APIs' streams: a task writes each API's events while the
//! prediction runs; a client that goes away closes the channel, the task sees it at once (even
//! while nothing is sent: a tool call's output is not text) and drops the prediction stream, and
//! the engine stops that sequence.

use std::convert::Infallible;
use std::future::Future;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::StreamExt;
use tokio::sync::mpsc::Sender;

/// The events `produce` sends, written as they come.
pub(crate) fn stream<F, Fut>(produce: F) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>
where
    F: FnOnce(Sender<Event>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(produce(tx));
    let events = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Ok);
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// What a prediction gives next, as a stream writer sees it.
pub(crate) enum Next {
    Fragment(lmstudio::Fragment),
    Failed(lmstudio::Error),
    /// The prediction ended: its result is ready.
    End,
    /// The client went away.
    Gone,
    /// Nothing for [`IDLE`] (a long prompt is being processed): a writer may show it is alive.
    Idle,
}

/// How long a stream waits for a fragment before [`Next::Idle`]. Clients with an idle watchdog
/// (Claude Code's) read no life in SSE comments, only in events: Anthropic sends `ping`.
pub(crate) const IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// The next fragment of `prediction`, or what ends it.
pub(crate) async fn next(prediction: &mut lmstudio::AsyncPredictionStream, tx: &Sender<Event>) -> Next {
    next_within(prediction, tx, IDLE).await
}

async fn next_within(
    prediction: &mut lmstudio::AsyncPredictionStream,
    tx: &Sender<Event>,
    wait: std::time::Duration,
) -> Next {
    tokio::select! {
        f = prediction.next() => match f {
            Some(Ok(f)) => Next::Fragment(f),
            Some(Err(e)) => Next::Failed(e),
            None => Next::End,
        },
        () = tx.closed() => Next::Gone,
        () = tokio::time::sleep(wait) => Next::Idle,
    }
}

/// A prediction as a writer that shows life by events reads it: fragments with text (reasoning
/// or answer; the reasoning tags, which write nothing, are passed over), and [`Next::Idle`] once
/// nothing has gone out for [`IDLE`], counted from the last event written ([`Paced::sent`]).
pub(crate) struct Paced {
    sent: std::time::Instant,
}

impl Paced {
    pub(crate) fn new() -> Self {
        Self { sent: std::time::Instant::now() }
    }

    /// The next fragment with text, or what ends the prediction, or [`Next::Idle`].
    pub(crate) async fn next(&mut self, prediction: &mut lmstudio::AsyncPredictionStream, tx: &Sender<Event>) -> Next {
        loop {
            match next_within(prediction, tx, IDLE.saturating_sub(self.sent.elapsed())).await {
                Next::Fragment(f)
                    if matches!(f.reasoning, lmstudio::ReasoningType::StartTag | lmstudio::ReasoningType::EndTag) => {}
                other => return other,
            }
        }
    }

    /// An event went out: the interval starts again.
    pub(crate) fn sent(&mut self) {
        self.sent = std::time::Instant::now();
    }
}

/// Loads `model` with `config` as a request loads on demand, handing each progress report to
/// `report` as it comes; `report` answers false once its client has gone, and so does `gone`
/// finishing: the wait ends with `None` (the load goes on, and the next request finds the model
/// loaded). Otherwise the load's result and how long it took, in seconds.
pub(crate) async fn load_reporting<R, Fut>(
    client: &lmstudio::Client,
    model: &str,
    config: &lmstudio::LoadConfig,
    mut report: R,
    gone: impl Future<Output = ()>,
) -> Option<lmstudio::Result<(lmstudio::Llm, f64)>>
where
    R: FnMut(f32) -> Fut,
    Fut: Future<Output = bool>,
{
    let (tx, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let on_load: lmstudio::OnLoad = std::sync::Arc::new(move |e| {
        if let lmstudio::LoadEvent::Progress(p) = e {
            let _ = tx.send(p);
        }
    });
    let began = std::time::Instant::now();
    let loading = client.get_or_load_with_async(model, config, &on_load);
    tokio::pin!(loading, gone);
    let loaded = loop {
        tokio::select! {
            loaded = &mut loading => break loaded,
            Some(p) = progress.recv() => {
                if !report(p).await {
                    return None;
                }
            }
            () = &mut gone => return None,
        }
    };
    Some(loaded.map(|(llm, _)| (llm, began.elapsed().as_secs_f64())))
}
