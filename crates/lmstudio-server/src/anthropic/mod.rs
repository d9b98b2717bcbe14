//! Anthropic's Messages API, which coding agents speak: `POST /v1/messages` (whole, or streamed as
//! Anthropic's events) and `POST /v1/messages/count_tokens`, over the same `respond` as chat
//! completions (tools included); errors in Anthropic's shape.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use crate::error::ApiError;
use crate::openai::{counted, cut_short, parse, whole};
use crate::sse;
use crate::state::AppState;

mod request;
mod response;

use request::MessagesRequest;
use response::{BlockOut, Delta, MessageDelta, MessageOut, StreamEvent, TokenCount, Usage};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) async fn messages(
    State(state): State<AppState>,
    body: Result<Json<MessagesRequest>, JsonRejection>,
) -> Response {
    counted(&state, start(&state, body)).await.unwrap_or_else(ApiError::into_anthropic_response)
}

async fn start(state: &AppState, body: Result<Json<MessagesRequest>, JsonRejection>) -> Result<Response, ApiError> {
    let req = parse(body)?;
    let (config, chat) = req.decode()?;
    let llm = state.client().llm_async(&req.model).await?;
    let stream = llm.respond_stream_async(&chat, config).await?;
    let shape = Shape { id: format!("msg_{:08}", NEXT_ID.fetch_add(1, Ordering::Relaxed)), model: req.model };
    if req.stream {
        return Ok(sse(state.clone(), shape, stream).into_response());
    }
    let result = whole(state, stream).await?;
    Ok(Json(shape.message(&result)).into_response())
}

pub(crate) async fn count_tokens(
    State(state): State<AppState>,
    body: Result<Json<MessagesRequest>, JsonRejection>,
) -> Response {
    let count = async {
        let req = parse(body)?;
        let (config, chat) = req.decode()?;
        let llm = state.client().llm_async(&req.model).await?;
        Ok::<_, ApiError>(llm.count_chat_tokens_async(&chat, &config).await?)
    };
    match count.await {
        Ok(input_tokens) => Json(TokenCount { input_tokens }).into_response(),
        Err(e) => e.into_anthropic_response(),
    }
}

/// What every body of one request shares.
struct Shape {
    id: String,
    /// As the request named it (Anthropic echoes the model asked for).
    model: String,
}

impl Shape {
    fn message(&self, r: &lmstudio::PredictionResult) -> MessageOut {
        let mut content = Vec::with_capacity(2 + r.tool_calls.len());
        if !r.reasoning_content.is_empty() {
            content.push(BlockOut::Thinking { thinking: r.reasoning_content.clone(), signature: String::new() });
        }
        if !r.content.is_empty() || r.tool_calls.is_empty() {
            content.push(BlockOut::Text { text: r.content.clone() });
        }
        content.extend(r.tool_calls.iter().map(|c| BlockOut::tool_use(c, input(c))));
        let (stop_reason, stop_sequence) = response::stop_reason(&r.stats);
        MessageOut {
            stop_reason: Some(stop_reason),
            stop_sequence,
            content,
            usage: Usage::of(&r.stats),
            ..self.empty()
        }
    }

    /// The message as a stream starts it: no content yet.
    fn empty(&self) -> MessageOut {
        MessageOut {
            id: self.id.clone(),
            kind: "message",
            role: "assistant",
            model: self.model.clone(),
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: Usage::default(),
        }
    }
}

/// A thinking block or a text block as its stream opens it.
fn empty_block(thinking: bool) -> BlockOut {
    match thinking {
        true => BlockOut::Thinking { thinking: String::new(), signature: String::new() },
        false => BlockOut::Text { text: String::new() },
    }
}

/// A call's arguments as the object they are.
fn input(call: &lmstudio::ToolCall) -> Value {
    serde_json::from_str(&call.arguments).unwrap_or_else(|_| Value::Object(Default::default()))
}

fn event(e: &StreamEvent) -> Event {
    Event::default().event(e.name()).json_data(e).unwrap_or_else(|err| {
        tracing::error!("an event could not be written: {err}");
        Event::default()
            .event("error")
            .data(r#"{"type": "error", "error": {"type": "api_error", "message": "internal error"}}"#)
    })
}

fn error_event(e: ApiError) -> Event {
    Event::default()
        .event("error")
        .json_data(e.anthropic_body())
        .unwrap_or_else(|_| Event::default().event("error").data(r#"{"type": "error"}"#))
}

/// Streams the answer as Anthropic's events: `message_start`; the reasoning as a `thinking` block
/// (`thinking_delta`s), then the text as a `text` block (`content_block_start`, `text_delta`s,
/// `content_block_stop`), each opened by its first fragment; each call as a `tool_use` block
/// whose `input_json_delta` holds its arguments whole (calls are known once the answer is);
/// `message_delta` with the stop reason and usage; `message_stop`.
fn sse(
    state: AppState,
    shape: Shape,
    mut stream: lmstudio::AsyncPredictionStream,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    sse::stream(move |tx| async move {
        let metrics = state.metrics();
        let send = |e: StreamEvent| {
            let tx = tx.clone();
            async move { tx.send(event(&e)).await.is_ok() }
        };
        if !send(StreamEvent::MessageStart { message: shape.empty() }).await {
            return;
        }
        // The block being streamed (thinking, then text) and its index.
        let mut open: Option<bool> = None; // Some(true): thinking
        let mut index = 0;
        let mut paced = sse::Paced::new();
        loop {
            let fragment = match paced.next(&mut stream, &tx).await {
                sse::Next::Fragment(f) => f,
                sse::Next::Failed(e) => {
                    metrics.errors.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(error_event(e.into())).await;
                    return;
                }
                sse::Next::End => break,
                sse::Next::Gone => return, // dropping `stream` cancels the prediction
                sse::Next::Idle => {
                    if !send(StreamEvent::Ping).await {
                        return;
                    }
                    paced.sent();
                    continue;
                }
            };
            // The tags never come (`Paced`).
            let thinking = fragment.reasoning == lmstudio::ReasoningType::Reasoning;
            let mut events = Vec::new();
            if open != Some(thinking) {
                if open.take().is_some() {
                    events.push(StreamEvent::ContentBlockStop { index });
                    index += 1;
                }
                events.push(StreamEvent::ContentBlockStart { index, content_block: empty_block(thinking) });
                open = Some(thinking);
            }
            let delta = match thinking {
                true => Delta::Thinking { thinking: fragment.content },
                false => Delta::Text { text: fragment.content },
            };
            events.push(StreamEvent::ContentBlockDelta { index, delta });
            for e in events {
                if !send(e).await {
                    return;
                }
            }
            paced.sent();
        }
        let result = match stream.result() {
            Ok(result) => result,
            Err(e) => {
                let _ = tx.send(error_event(e.into())).await;
                return;
            }
        };
        metrics.record(&result);
        if let Some(e) = cut_short(&result) {
            let _ = tx.send(error_event(e.into())).await;
            return;
        }
        // An answer with no text and no calls still has its (empty) text block.
        let mut events = Vec::new();
        if open != Some(false) && result.tool_calls.is_empty() {
            if open.take().is_some() {
                events.push(StreamEvent::ContentBlockStop { index });
                index += 1;
            }
            events.push(StreamEvent::ContentBlockStart { index, content_block: empty_block(false) });
            open = Some(false);
        }
        if open.is_some() {
            events.push(StreamEvent::ContentBlockStop { index });
            index += 1;
        }
        for call in &result.tool_calls {
            let start = BlockOut::tool_use(call, Value::Object(Default::default()));
            events.push(StreamEvent::ContentBlockStart { index, content_block: start });
            let arguments = input(call).to_string();
            events.push(StreamEvent::ContentBlockDelta { index, delta: Delta::InputJson { partial_json: arguments } });
            events.push(StreamEvent::ContentBlockStop { index });
            index += 1;
        }
        let (stop_reason, stop_sequence) = response::stop_reason(&result.stats);
        let usage = Usage::of(&result.stats);
        events.push(StreamEvent::MessageDelta { delta: MessageDelta { stop_reason, stop_sequence }, usage });
        events.push(StreamEvent::MessageStop);
        for e in events {
            if !send(e).await {
                return;
            }
        }
    })
}
