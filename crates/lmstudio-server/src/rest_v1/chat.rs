//! LM Studio's native chat, `POST /api/v1/chat`: an `input` and a `system_prompt`, sampling
//! fields, a model loaded on demand (with `context_length`), answers kept for
//! `previous_response_id` (the same store as `/v1/responses`), and, streamed, LM Studio's events:
//! `chat.start`, `model_load.*` when the model had to be loaded, `prompt_processing.*`,
//! `reasoning.*`, `message.*`, `chat.end` with the whole result (an `error` event ends a stream that
//! fails). Errors are in LM Studio's v1 shape. `reasoning` `"on"` / `"off"` is the chat template's
//! `enable_thinking`; what we cannot honour (`integrations`, which are MCP servers and plugins;
//! reasoning effort levels) is refused by name.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::error::ApiError;
use crate::openai::{counted, cut_short, parse, whole};
use crate::sse;
use crate::state::AppState;

/// The request. Any field not named here is refused by name ([`ChatRequest::config`]).
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    model: Option<String>,
    /// A string, or items: `{"type": "message" | "text", "content"}`.
    input: Option<Value>,
    system_prompt: Option<String>,
    #[serde(default)]
    stream: bool,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    max_output_tokens: Option<u32>,
    /// The context a model loaded for this request gets (a loaded one keeps its own).
    context_length: Option<u32>,
    /// Whether the answer is kept for `previous_response_id` (default: yes).
    store: Option<bool>,
    previous_response_id: Option<String>,
    /// `"on"` or `"off"`: whether a model that can think does.
    reasoning: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

impl ChatRequest {
    fn config(&self) -> Result<lmstudio::Config, ApiError> {
        for (name, value) in &self.other {
            let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
            let why = match name.as_str() {
                "integrations" if empty => continue,
                "integrations" => "MCP servers and plugins are not served here",
                _ => "unknown field",
            };
            return Err(ApiError::bad_request(format!("unsupported field `{name}` ({why}): {value}")));
        }
        let enable_thinking = match self.reasoning.as_deref() {
            None => None,
            Some("on") => Some(true),
            Some("off") => Some(false),
            Some(other) => {
                let why = "only `on` and `off`: a model's reasoning effort cannot be set here";
                return Err(ApiError::bad_request(format!("unsupported `reasoning` ({why}): {other}")));
            }
        };
        let config = lmstudio::Config {
            enable_thinking,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            max_tokens: self.max_output_tokens,
            ..Default::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// The user's message this request sends.
    fn user_message(&self) -> Result<lmstudio::ChatMessage, ApiError> {
        let text = match &self.input {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(items)) => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    match (item["type"].as_str(), item["content"].as_str().or(item["text"].as_str())) {
                        (Some("message" | "text"), Some(text)) => parts.push(text),
                        (Some("image"), _) => return Err(ApiError::bad_request("images need a vision model")),
                        _ => return Err(ApiError::bad_request(format!("unsupported input item: {item}"))),
                    }
                }
                parts.join("\n")
            }
            None | Some(Value::Null) => return Err(ApiError::bad_request("\"input\" is required")),
            Some(other) => return Err(ApiError::bad_request(format!("`input` is a string or items: {other}"))),
        };
        Ok(lmstudio::ChatMessage::new("user", text))
    }
}

/// The whole result (the body without streaming, and `chat.end`'s `result`).
#[derive(Debug, Clone, Serialize)]
struct ChatResult {
    model_instance_id: String,
    output: Vec<OutputItem>,
    stats: StatsOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutputItem {
    Reasoning { content: String },
    Message { content: String },
}

#[derive(Debug, Clone, Default, Serialize)]
struct StatsOut {
    input_tokens: u64,
    total_output_tokens: u64,
    reasoning_output_tokens: u64,
    tokens_per_second: f64,
    time_to_first_token_seconds: f64,
    /// Only when this request loaded the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    model_load_time_seconds: Option<f64>,
}

/// A streamed event; its `type` is the SSE event's name too.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
enum StreamEvent {
    #[serde(rename = "chat.start")]
    ChatStart { model_instance_id: String },
    #[serde(rename = "model_load.start")]
    LoadStart { model_instance_id: String },
    #[serde(rename = "model_load.progress")]
    LoadProgress { model_instance_id: String, progress: f32 },
    #[serde(rename = "model_load.end")]
    LoadEnd { model_instance_id: String, load_time_seconds: f64 },
    #[serde(rename = "prompt_processing.start")]
    PromptStart,
    #[serde(rename = "prompt_processing.progress")]
    PromptProgress { progress: f32 },
    #[serde(rename = "prompt_processing.end")]
    PromptEnd,
    #[serde(rename = "reasoning.start")]
    ReasoningStart,
    #[serde(rename = "reasoning.delta")]
    ReasoningDelta { content: String },
    #[serde(rename = "reasoning.end")]
    ReasoningEnd,
    #[serde(rename = "message.start")]
    MessageStart,
    #[serde(rename = "message.delta")]
    MessageDelta { content: String },
    #[serde(rename = "message.end")]
    MessageEnd,
    #[serde(rename = "error")]
    Error {
        #[serde(flatten)]
        body: crate::error::LmStudioErrorBody,
    },
    #[serde(rename = "chat.end")]
    ChatEnd { result: ChatResult },
}

fn event(e: &StreamEvent) -> Event {
    let data = serde_json::to_value(e).unwrap_or(Value::Null);
    let name = data["type"].as_str().unwrap_or("error").to_owned();
    Event::default().event(name).json_data(&data).unwrap_or_else(|_| Event::default().event("error"))
}

/// `POST /api/v1/chat`.
pub(crate) async fn chat(State(state): State<AppState>, body: Result<Json<ChatRequest>, JsonRejection>) -> Response {
    counted(&state, start(&state, parse(body))).await.unwrap_or_else(ApiError::into_lmstudio_response)
}

/// What one request asks, checked before any model is touched.
struct Ask {
    model: String,
    load: lmstudio::LoadConfig,
    chat: Vec<lmstudio::ChatMessage>,
    config: lmstudio::Config,
    keep: bool,
}

async fn start(state: &AppState, req: Result<ChatRequest, ApiError>) -> Result<Response, ApiError> {
    let req = req?;
    let config = req.config()?;
    let model =
        req.model.clone().filter(|m| !m.is_empty()).ok_or_else(|| ApiError::bad_request("\"model\" is required"))?;
    let mut chat = match &req.previous_response_id {
        Some(id) => state
            .responses()
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("no response `{id}` is kept")))?
            .messages
            .clone(),
        None => Vec::new(),
    };
    // This request's system prompt replaces a kept one.
    if let Some(system) = req.system_prompt.as_deref().filter(|s| !s.is_empty()) {
        chat.retain(|m| m.role != "system");
        chat.insert(0, lmstudio::ChatMessage::new("system", system));
    }
    chat.push(req.user_message()?);
    let load = lmstudio::LoadConfig {
        context_length: req.context_length.or(state.client().default_load_config().context_length),
        ..state.client().default_load_config()
    };
    load.validate()?;
    let ask = Ask { model, load, chat, config, keep: req.store != Some(false) };
    if req.stream {
        return Ok(stream(state.clone(), ask).into_response());
    }
    let began = Instant::now();
    let (llm, loaded) = state.client().get_or_load_with_async(&ask.model, &ask.load, &quiet()).await?;
    let load_time = loaded.then(|| began.elapsed().as_secs_f64());
    let prediction = llm.respond_stream_async(&ask.chat.clone().into(), ask.config.clone()).await?;
    let result = whole(state, prediction).await?;
    Ok(Json(finished(state, &ask, llm.identifier(), &result, load_time)).into_response())
}

fn quiet() -> lmstudio::OnLoad {
    Arc::new(|_| {})
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The result of a finished answer, kept when asked.
fn finished(
    state: &AppState,
    ask: &Ask,
    instance: &str,
    r: &lmstudio::PredictionResult,
    load_time: Option<f64>,
) -> ChatResult {
    let mut output = Vec::with_capacity(2);
    if !r.reasoning_content.is_empty() {
        output.push(OutputItem::Reasoning { content: r.reasoning_content.clone() });
    }
    output.push(OutputItem::Message { content: r.content.clone() });
    let response_id = ask.keep.then(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let id = format!("resp_{nanos:016x}{:08x}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let mut history = ask.chat.clone();
        history.push(lmstudio::ChatMessage::new("assistant", r.content.clone()));
        // Kept for `previous_response_id`; `GET /v1/responses` serves only its own.
        state.responses().put(id.clone(), None, history);
        id
    });
    let s = &r.stats;
    let stats = StatsOut {
        input_tokens: s.prompt_tokens_count.unwrap_or(0),
        total_output_tokens: s.predicted_tokens_count.unwrap_or(0),
        reasoning_output_tokens: s.reasoning_tokens_count.unwrap_or(0),
        tokens_per_second: s.tokens_per_second.unwrap_or(0.0),
        time_to_first_token_seconds: s.time_to_first_token_sec.unwrap_or(0.0),
        model_load_time_seconds: load_time,
    };
    ChatResult { model_instance_id: instance.to_owned(), output, stats, response_id }
}

/// Where the prompt's processing stands in a stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prompt {
    Waiting,
    Processing,
    Done,
}

/// The streamed answer: LM Studio's events, in order.
fn stream(state: AppState, ask: Ask) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    sse::stream(move |tx| async move {
        let send = |e: StreamEvent| {
            let tx = tx.clone();
            async move { tx.send(event(&e)).await.is_ok() }
        };
        let client = state.client().clone();
        // The instance: loaded, or loaded now (its load streamed).
        let (llm, load_time) = match client.get_loaded_async(&ask.model).await {
            Ok(Some(llm)) => {
                if !send(StreamEvent::ChatStart { model_instance_id: llm.identifier().to_owned() }).await {
                    return;
                }
                (llm, None)
            }
            Ok(None) => match load(&client, &ask, &send).await {
                Some(loaded) => loaded,
                None => return,
            },
            Err(e) => {
                for e in failed(e.into(), &ask.model, &Default::default()) {
                    let _ = send(e).await;
                }
                return;
            }
        };
        let (progress_tx, mut progress) = unbounded_channel();
        let prediction = match llm.respond_stream_async(&ask.chat.clone().into(), ask.config.clone()).await {
            Ok(p) => p,
            Err(e) => {
                state.metrics().errors.fetch_add(1, Ordering::Relaxed);
                for e in failed(e.into(), llm.identifier(), &Default::default()) {
                    let _ = send(e).await;
                }
                return;
            }
        };
        let mut prediction = prediction.on_prompt_processing_progress(move |p| {
            let _ = progress_tx.send(p);
        });
        let mut prompt = Prompt::Waiting;
        let mut open: Option<bool> = None; // Some(true): reasoning; Some(false): the message
        let mut texts = Texts::default();
        loop {
            let next = tokio::select! {
                f = prediction.next() => f,
                () = tx.closed() => return, // dropping `prediction` cancels it
            };
            // Progress reported while the fragment came goes out before it.
            let mut events = prompt_events(&mut progress, &mut prompt);
            let fragment = match next {
                Some(Ok(f)) => f,
                Some(Err(e)) => {
                    state.metrics().errors.fetch_add(1, Ordering::Relaxed);
                    events.extend(failed(e.into(), llm.identifier(), &texts));
                    for e in events {
                        let _ = send(e).await;
                    }
                    return;
                }
                None => break,
            };
            let reasoning = match fragment.reasoning {
                lmstudio::ReasoningType::Reasoning => true,
                lmstudio::ReasoningType::None => false,
                lmstudio::ReasoningType::StartTag | lmstudio::ReasoningType::EndTag => {
                    for e in events {
                        if !send(e).await {
                            return;
                        }
                    }
                    continue;
                }
            };
            if prompt != Prompt::Done {
                events.extend(end_prompt(&mut prompt));
            }
            if open != Some(reasoning) {
                events.extend(open.take().map(close));
                events.push(if reasoning { StreamEvent::ReasoningStart } else { StreamEvent::MessageStart });
                open = Some(reasoning);
            }
            let content = fragment.content;
            (if reasoning { &mut texts.reasoning } else { &mut texts.message }).push_str(&content);
            events.push(match reasoning {
                true => StreamEvent::ReasoningDelta { content },
                false => StreamEvent::MessageDelta { content },
            });
            for e in events {
                if !send(e).await {
                    return;
                }
            }
        }
        let mut events = prompt_events(&mut progress, &mut prompt);
        events.extend(end_prompt(&mut prompt));
        let result = match prediction.result() {
            Ok(r) => r,
            Err(e) => {
                events.extend(failed(e.into(), llm.identifier(), &texts));
                for e in events {
                    let _ = send(e).await;
                }
                return;
            }
        };
        state.metrics().record(&result);
        if let Some(e) = cut_short(&result) {
            events.extend(failed(e.into(), llm.identifier(), &texts));
        } else {
            if open == Some(true) {
                events.push(close(true));
                open = None;
            }
            if open.is_none() {
                events.push(StreamEvent::MessageStart);
            }
            events.push(close(false));
            let result = finished(&state, &ask, llm.identifier(), &result, load_time);
            events.push(StreamEvent::ChatEnd { result });
        }
        for e in events {
            if !send(e).await {
                return;
            }
        }
    })
}

/// Loads the model a stream asks for, with its events; `None` when the stream has ended (the
/// load failed, or the client went away).
async fn load<F, Fut>(client: &lmstudio::Client, ask: &Ask, send: &F) -> Option<(lmstudio::Llm, Option<f64>)>
where
    F: Fn(StreamEvent) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    // The identifier a load on demand gives it: the model's key.
    let instance = match client.resolve_async(&ask.model).await {
        Ok(info) => info.model_key,
        Err(e) => {
            for e in failed(e.into(), &ask.model, &Texts::default()) {
                let _ = send(e).await;
            }
            return None;
        }
    };
    let start = [
        StreamEvent::ChatStart { model_instance_id: instance.clone() },
        StreamEvent::LoadStart { model_instance_id: instance.clone() },
    ];
    for e in start {
        if !send(e).await {
            return None;
        }
    }
    let report = |progress| send(StreamEvent::LoadProgress { model_instance_id: instance.clone(), progress });
    let loaded = sse::load_reporting(client, &ask.model, &ask.load, report, std::future::pending()).await?;
    match loaded {
        Ok((llm, load_time_seconds)) => {
            let end = StreamEvent::LoadEnd { model_instance_id: llm.identifier().to_owned(), load_time_seconds };
            send(end).await.then_some((llm, Some(load_time_seconds)))
        }
        Err(e) => {
            for e in failed(e.into(), &instance, &Texts::default()) {
                let _ = send(e).await;
            }
            None
        }
    }
}

/// What a stream has given out so far.
#[derive(Default)]
struct Texts {
    reasoning: String,
    message: String,
}

/// How a stream that failed ends: the error, then `chat.end` with what was generated (LM Studio's
/// streams always end so).
fn failed(e: ApiError, instance: &str, texts: &Texts) -> [StreamEvent; 2] {
    let mut output = Vec::with_capacity(2);
    if !texts.reasoning.is_empty() {
        output.push(OutputItem::Reasoning { content: texts.reasoning.clone() });
    }
    if !texts.message.is_empty() {
        output.push(OutputItem::Message { content: texts.message.clone() });
    }
    let stats = StatsOut::default();
    let result = ChatResult { model_instance_id: instance.to_owned(), output, stats, response_id: None };
    [StreamEvent::Error { body: e.lmstudio_body() }, StreamEvent::ChatEnd { result }]
}

/// The prompt-processing events of the progress reported so far.
fn prompt_events(progress: &mut UnboundedReceiver<f32>, prompt: &mut Prompt) -> Vec<StreamEvent> {
    let mut events = Vec::new();
    while let Ok(p) = progress.try_recv() {
        if *prompt == Prompt::Done {
            continue;
        }
        if *prompt == Prompt::Waiting {
            events.push(StreamEvent::PromptStart);
            *prompt = Prompt::Processing;
        }
        events.push(StreamEvent::PromptProgress { progress: p });
        if p >= 1.0 {
            events.push(StreamEvent::PromptEnd);
            *prompt = Prompt::Done;
        }
    }
    events
}

/// The events that end the prompt's processing, if it has not ended (a prompt all in the cache
/// may report no progress).
fn end_prompt(prompt: &mut Prompt) -> Vec<StreamEvent> {
    let events = match *prompt {
        Prompt::Waiting => vec![StreamEvent::PromptStart, StreamEvent::PromptEnd],
        Prompt::Processing => vec![StreamEvent::PromptEnd],
        Prompt::Done => Vec::new(),
    };
    *prompt = Prompt::Done;
    events
}

fn close(reasoning: bool) -> StreamEvent {
    if reasoning {
        StreamEvent::ReasoningEnd
    } else {
        StreamEvent::MessageEnd
    }
}
