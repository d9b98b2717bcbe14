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
    tokio::select! {
        f = prediction.next() => match f {
            Some(Ok(f)) => Next::Fragment(f),
            Some(Err(e)) => Next::Failed(e),
            None => Next::End,
        },
        () = tx.closed() => Next::Gone,
        () = tokio::time::sleep(IDLE) => Next::Idle,
    }
}
