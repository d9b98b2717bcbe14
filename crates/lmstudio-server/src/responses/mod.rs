//! OpenAI's Responses API: `POST /v1/responses` (whole, or streamed as its events),
//! `GET /v1/responses/{id}` and `DELETE /v1/responses/{id}`, over the same `respond` as chat
//! completions. Responses are kept (unless `store: false`) in a bounded store, so that
//! `previous_response_id` can go on from one.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use crate::error::ApiError;
use crate::kept::STORE_COUNT;
use crate::openai::{counted, cut_short, parse, whole};
use crate::sse;
use crate::state::AppState;

mod request;
mod response;

use request::ResponsesRequest;
use response::{
    Incomplete, Numbered, OutputItem, OutputText, Part, ReasoningText, ResponseOut, StreamEvent, ToolOut, Usage,
};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn not_stored(id: &str) -> ApiError {
    ApiError::not_found(format!("no stored response {id:?} (kept: the last {STORE_COUNT}, unless `store: false`)"))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    body: Result<Json<ResponsesRequest>, JsonRejection>,
) -> Response {
    counted(&state, start(&state, body)).await.unwrap_or_else(ApiError::into_response)
}

pub(crate) async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    state.responses().get(&id).and_then(|s| s.body.clone()).map(Json).ok_or_else(|| not_stored(&id))
}

#[derive(serde::Serialize)]
pub(crate) struct Deleted {
    id: String,
    object: &'static str,
    deleted: bool,
}

pub(crate) async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Deleted>, ApiError> {
    if !state.responses().remove(&id) {
        return Err(not_stored(&id));
    }
    Ok(Json(Deleted { id, object: "response", deleted: true }))
}

async fn start(state: &AppState, body: Result<Json<ResponsesRequest>, JsonRejection>) -> Result<Response, ApiError> {
    let req = parse(body)?;
    let config = req.config()?;
    let mut history = match &req.previous_response_id {
        Some(id) => state.responses().get(id).ok_or_else(|| not_stored(id))?.messages.clone(),
        None => Vec::new(),
    };
    history.extend(req.messages()?);
    let mut chat = Vec::with_capacity(history.len() + 1);
    if let Some(instructions) = req.instructions.as_deref().filter(|i| !i.is_empty()) {
        chat.push(lmstudio::ChatMessage::new("system", instructions));
    }
    chat.extend(history.iter().cloned());
    let llm = state.llm(req.model.as_deref()).await?;
    let stream = llm.respond_stream_async(&chat.into(), config.clone()).await?;
    let shape = Shape::new(&req, &config, llm.identifier());
    let keep = req.store != Some(false);
    if req.stream {
        return Ok(sse(state.clone(), shape, stream, keep.then_some(history)).into_response());
    }
    let result = whole(state, stream).await?;
    let response = shape.finished(&result);
    if keep {
        keep_response(state, &response, answered(history, &result));
    }
    Ok(Json(response).into_response())
}

/// Keeps `response` and its chat.
fn keep_response(state: &AppState, response: &ResponseOut, chat: Vec<lmstudio::ChatMessage>) {
    let body = serde_json::to_value(response).ok();
    state.responses().put(response.id.clone(), body, chat);
}

/// The chat with the answer appended.
fn answered(mut history: Vec<lmstudio::ChatMessage>, r: &lmstudio::PredictionResult) -> Vec<lmstudio::ChatMessage> {
    history.push(lmstudio::ChatMessage::tool_calls(r.content.clone(), r.tool_calls.clone()));
    history
}

/// A response as it starts, and how its items are named.
struct Shape {
    /// The response with no output yet (`in_progress`).
    start: ResponseOut,
    /// Its message item's id.
    message_id: String,
    /// Its reasoning item's id.
    reasoning_id: String,
}

impl Shape {
    fn new(req: &ResponsesRequest, config: &lmstudio::Config, model: &str) -> Self {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let created_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let start = ResponseOut {
            id: format!("resp_{n:08}"),
            object: "response",
            created_at,
            status: "in_progress",
            model: model.to_owned(),
            output: Vec::new(),
            incomplete_details: None,
            error: None,
            usage: None,
            instructions: req.instructions.clone(),
            max_output_tokens: req.max_output_tokens,
            parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
            previous_response_id: req.previous_response_id.clone(),
            store: req.store != Some(false),
            temperature: req.temperature,
            top_p: req.top_p,
            tool_choice: req.tool_choice.clone().unwrap_or_else(|| "auto".into()),
            tools: config.tools.iter().map(ToolOut::of).collect(),
            text: req.text.clone().unwrap_or_else(|| serde_json::json!({"format": {"type": "text"}})),
            truncation: "disabled",
            metadata: req.metadata.clone().unwrap_or_else(|| Value::Object(Default::default())),
        };
        Self { start, message_id: format!("msg_{n:08}"), reasoning_id: format!("rs_{n:08}") }
    }

    /// The reasoning item; its one content part holds `text` (none before the part is added).
    fn reasoning(&self, text: Option<String>, status: &'static str) -> OutputItem {
        let content = text.map(ReasoningText::of).into_iter().collect();
        OutputItem::Reasoning { id: self.reasoning_id.clone(), status, summary: Vec::new(), content }
    }

    /// The message item; its one content part holds `text` (none before the part is added).
    fn message(&self, text: Option<String>, status: &'static str) -> OutputItem {
        let content = text.map(OutputText::of).into_iter().collect();
        OutputItem::Message { id: self.message_id.clone(), status, role: "assistant", content }
    }

    /// A call's item id (`fc_...`; its `call_id` is the call's own).
    fn call_id(call: &lmstudio::ToolCall) -> String {
        format!("fc_{}", call.id.trim_start_matches("call_"))
    }

    fn call(call: &lmstudio::ToolCall, arguments: String, status: &'static str) -> OutputItem {
        OutputItem::FunctionCall {
            id: Self::call_id(call),
            call_id: call.id.clone(),
            name: call.name.clone(),
            arguments,
            status,
        }
    }

    /// Whether the answer has a message item: it has text, or nothing else.
    fn has_message(r: &lmstudio::PredictionResult) -> bool {
        !r.content.is_empty() || r.tool_calls.is_empty()
    }

    fn finished(&self, r: &lmstudio::PredictionResult) -> ResponseOut {
        let mut output = Vec::with_capacity(2 + r.tool_calls.len());
        if !r.reasoning_content.is_empty() {
            output.push(self.reasoning(Some(r.reasoning_content.clone()), "completed"));
        }
        if Self::has_message(r) {
            output.push(self.message(Some(r.content.clone()), "completed"));
        }
        output.extend(r.tool_calls.iter().map(|c| Self::call(c, c.arguments.clone(), "completed")));
        let cut = matches!(
            r.stats.stop_reason,
            lmstudio::StopReason::MaxPredictedTokensReached | lmstudio::StopReason::ContextLengthReached
        );
        ResponseOut {
            status: if cut { "incomplete" } else { "completed" },
            incomplete_details: cut.then_some(Incomplete { reason: "max_output_tokens" }),
            output,
            usage: Some(Usage::of(&r.stats)),
            ..self.start.clone()
        }
    }
}

/// An item of the answer streamed as it is written (its number indexes its texts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Reasoning = 0,
    Message = 1,
}

impl Shape {
    fn item_id(&self, item: Open) -> String {
        match item {
            Open::Reasoning => self.reasoning_id.clone(),
            Open::Message => self.message_id.clone(),
        }
    }

    fn part(item: Open, text: String) -> Part {
        match item {
            Open::Reasoning => Part::Reasoning(ReasoningText::of(text)),
            Open::Message => Part::Text(OutputText::of(text)),
        }
    }

    fn item(&self, item: Open, text: Option<String>, status: &'static str) -> OutputItem {
        match item {
            Open::Reasoning => self.reasoning(text, status),
            Open::Message => self.message(text, status),
        }
    }

    /// The events that open `item` at `index`: the item, then its one content part.
    fn open(&self, item: Open, index: usize) -> [StreamEvent; 2] {
        [
            StreamEvent::ItemAdded { output_index: index, item: self.item(item, None, "in_progress") },
            StreamEvent::PartAdded {
                item_id: self.item_id(item),
                output_index: index,
                content_index: 0,
                part: Self::part(item, String::new()),
            },
        ]
    }

    /// The events that close `item` at `index`, whose text is `text`.
    fn close(&self, item: Open, index: usize, text: &str) -> [StreamEvent; 3] {
        let (item_id, text) = (self.item_id(item), text.to_owned());
        let done = match item {
            Open::Reasoning => StreamEvent::ReasoningDone {
                item_id: item_id.clone(),
                output_index: index,
                content_index: 0,
                text: text.clone(),
            },
            Open::Message => StreamEvent::TextDone {
                item_id: item_id.clone(),
                output_index: index,
                content_index: 0,
                text: text.clone(),
                logprobs: Vec::new(),
            },
        };
        [
            done,
            StreamEvent::PartDone {
                item_id,
                output_index: index,
                content_index: 0,
                part: Self::part(item, text.clone()),
            },
            StreamEvent::ItemDone { output_index: index, item: self.item(item, Some(text), "completed") },
        ]
    }

    /// The response as a client that adds up the events holds it now: the items `closed` so far,
    /// and the `open` one in progress with its text so far.
    fn so_far(&self, closed: &[OutputItem], open: Option<(Open, &str)>) -> ResponseOut {
        let mut output = closed.to_vec();
        output.extend(open.map(|(item, text)| self.item(item, Some(text.to_owned()), "in_progress")));
        ResponseOut { output, ..self.start.clone() }
    }
}

/// Streams the answer as the Responses events: `response.created`, `response.in_progress`; the
/// text as a message item (`output_item.added`, `content_part.added`, `output_text.delta`s, their
/// `done`s); each call as a `function_call` item whose `function_call_arguments.delta` holds its
/// arguments whole (calls are known once the answer is); `response.completed` (or
/// `response.incomplete`).
fn sse(
    state: AppState,
    shape: Shape,
    mut stream: lmstudio::AsyncPredictionStream,
    keep: Option<Vec<lmstudio::ChatMessage>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    sse::stream(move |tx| async move {
        let metrics = state.metrics();
        let mut sequence = 0;
        let mut next = |e: StreamEvent| {
            sequence += 1;
            let numbered = Numbered { event: &e, sequence_number: sequence - 1 };
            Event::default().event(e.name()).json_data(&numbered).unwrap_or_else(|err| {
                tracing::error!("an event could not be written: {err}");
                Event::default().event("error").data(r#"{"type": "error", "message": "internal error"}"#)
            })
        };
        let failed = |e: lmstudio::Error| {
            let e = ApiError::from(e);
            StreamEvent::Error { code: e.code(), message: e.message().to_owned(), param: None }
        };
        let opening = [
            StreamEvent::Created { response: shape.start.clone() },
            StreamEvent::InProgress { response: shape.start.clone() },
        ];
        for e in opening {
            if tx.send(next(e)).await.is_err() {
                return;
            }
        }
        // The item being streamed: reasoning comes first, then the message; each opens with its
        // first fragment and closes when the next opens or the answer ends.
        let mut open: Option<Open> = None;
        let mut streamed = [String::new(), String::new()];
        let mut closed = Vec::new();
        let mut index = 0;
        let mut paced = sse::Paced::new();
        loop {
            let fragment = match paced.next(&mut stream, &tx).await {
                sse::Next::Fragment(f) => f,
                sse::Next::Failed(e) => {
                    metrics.errors.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(next(failed(e))).await;
                    return;
                }
                sse::Next::End => break,
                sse::Next::Gone => return, // dropping `stream` cancels the prediction
                sse::Next::Idle => {
                    // A long prompt, or a tool call being written (not streamed): the response is
                    // still in progress, said again as an event (clients' idle watchdogs, Codex's,
                    // read no life in SSE comments). It carries the output so far, as OpenAI's
                    // Node SDK takes a lifecycle event's response as its whole snapshot.
                    let now = shape.so_far(&closed, open.map(|item| (item, streamed[item as usize].as_str())));
                    if tx.send(next(StreamEvent::InProgress { response: now })).await.is_err() {
                        return;
                    }
                    paced.sent();
                    continue;
                }
            };
            let wanted = match fragment.reasoning {
                lmstudio::ReasoningType::Reasoning => Open::Reasoning,
                _ => Open::Message, // the tags never come (`Paced`)
            };
            let mut events = Vec::new();
            if open != Some(wanted) {
                if let Some(item) = open.take() {
                    events.extend(shape.close(item, index, &streamed[item as usize]));
                    closed.push(shape.item(item, Some(streamed[item as usize].clone()), "completed"));
                    index += 1;
                }
                events.extend(shape.open(wanted, index));
                open = Some(wanted);
            }
            streamed[wanted as usize].push_str(&fragment.content);
            let (item_id, delta) = (shape.item_id(wanted), fragment.content);
            events.push(match wanted {
                Open::Reasoning => {
                    StreamEvent::ReasoningDelta { item_id, output_index: index, content_index: 0, delta }
                }
                Open::Message => StreamEvent::TextDelta {
                    item_id,
                    output_index: index,
                    content_index: 0,
                    delta,
                    logprobs: Vec::new(),
                },
            });
            for e in events {
                if tx.send(next(e)).await.is_err() {
                    return; // dropping `stream` cancels the prediction
                }
            }
            paced.sent();
        }
        let result = match stream.result() {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(next(failed(e))).await;
                return;
            }
        };
        metrics.record(&result);
        if let Some(e) = cut_short(&result) {
            let _ = tx.send(next(failed(e))).await;
            return;
        }
        // What is left open closes with the answer's own texts; a message with no text yet
        // opens and closes now.
        let mut events = Vec::new();
        let whole = [result.reasoning_content.clone(), result.content.clone()];
        if open == Some(Open::Reasoning) && Shape::has_message(&result) {
            events.extend(shape.close(Open::Reasoning, index, &whole[0]));
            index += 1;
            open = None;
        }
        if open.is_none() && Shape::has_message(&result) {
            events.extend(shape.open(Open::Message, index));
            open = Some(Open::Message);
        }
        if let Some(item) = open {
            events.extend(shape.close(item, index, &whole[item as usize]));
            index += 1;
        }
        for call in &result.tool_calls {
            let item_id = Shape::call_id(call);
            events.push(StreamEvent::ItemAdded {
                output_index: index,
                item: Shape::call(call, String::new(), "in_progress"),
            });
            events.push(StreamEvent::ArgumentsDelta {
                item_id: item_id.clone(),
                output_index: index,
                delta: call.arguments.clone(),
            });
            events.push(StreamEvent::ArgumentsDone {
                item_id,
                output_index: index,
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
            events.push(StreamEvent::ItemDone {
                output_index: index,
                item: Shape::call(call, call.arguments.clone(), "completed"),
            });
            index += 1;
        }
        let response = shape.finished(&result);
        if let Some(history) = keep {
            keep_response(&state, &response, answered(history, &result));
        }
        events.push(if response.status == "completed" {
            StreamEvent::Completed { response }
        } else {
            StreamEvent::Incomplete { response }
        });
        for e in events {
            if tx.send(next(e)).await.is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client that adds up the events holds of the output (OpenAI's Node SDK's accumulator,
    /// reduced to the events a written answer has), after `event`.
    fn add_up(held: &mut Vec<Value>, event: &StreamEvent) {
        let e = serde_json::to_value(event).expect("serializes");
        let (i, c) =
            (e["output_index"].as_u64().unwrap_or(0) as usize, e["content_index"].as_u64().unwrap_or(0) as usize);
        match event {
            StreamEvent::ItemAdded { .. } => held.push(e["item"].clone()),
            StreamEvent::PartAdded { .. } => held[i]["content"].as_array_mut().expect("a list").push(e["part"].clone()),
            StreamEvent::TextDelta { delta, .. } | StreamEvent::ReasoningDelta { delta, .. } => {
                let text = &mut held[i]["content"][c]["text"];
                *text = Value::from(format!("{}{delta}", text.as_str().expect("a text")));
            }
            StreamEvent::PartDone { .. } => held[i]["content"][c] = e["part"].clone(),
            StreamEvent::ItemDone { .. } => held[i] = e["item"].clone(),
            _ => {}
        }
    }

    /// The output of the response sent as in progress, as JSON.
    fn output_so_far(shape: &Shape, closed: &[OutputItem], open: Option<(Open, &str)>) -> Value {
        serde_json::to_value(shape.so_far(closed, open)).expect("serializes")["output"].clone()
    }

    /// The `response.in_progress` sent while an answer is written (a long prompt, a tool call being
    /// written) carries exactly the output a client holds by then: OpenAI's Node SDK takes it as
    /// its whole snapshot, and the events after it build on it.
    #[test]
    fn the_response_so_far_is_what_the_events_added_up_to() {
        let req: ResponsesRequest =
            serde_json::from_value(serde_json::json!({"model": "m", "input": "Hi"})).expect("a request");
        let shape = Shape::new(&req, &lmstudio::Config::default(), "m");
        let (mut held, mut closed) = (Vec::new(), Vec::new());
        assert_eq!(output_so_far(&shape, &closed, None), serde_json::json!([]));
        let answer = [(Open::Reasoning, ["Let me", " think."]), (Open::Message, ["Hello", ", you."])];
        for (index, (item, pieces)) in answer.into_iter().enumerate() {
            shape.open(item, index).iter().for_each(|e| add_up(&mut held, e));
            assert_eq!(output_so_far(&shape, &closed, Some((item, ""))), Value::Array(held.clone()));
            let mut text = String::new();
            for delta in pieces {
                text.push_str(delta);
                let (item_id, output_index, delta) = (shape.item_id(item), index, delta.to_owned());
                add_up(
                    &mut held,
                    &match item {
                        Open::Reasoning => {
                            StreamEvent::ReasoningDelta { item_id, output_index, content_index: 0, delta }
                        }
                        Open::Message => StreamEvent::TextDelta {
                            item_id,
                            output_index,
                            content_index: 0,
                            delta,
                            logprobs: Vec::new(),
                        },
                    },
                );
                assert_eq!(output_so_far(&shape, &closed, Some((item, &text))), Value::Array(held.clone()));
            }
            shape.close(item, index, &text).iter().for_each(|e| add_up(&mut held, e));
            closed.push(shape.item(item, Some(text), "completed"));
            assert_eq!(output_so_far(&shape, &closed, None), Value::Array(held.clone()));
        }
        assert_eq!(held.len(), 2);
    }
}
