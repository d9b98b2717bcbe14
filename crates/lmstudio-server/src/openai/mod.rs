//! OpenAI-compatible `/v1/*` and LM Studio REST `/api/v0/*`: one request shape, one completion
//! path; the REST flavour adds `stats`, `model_info` and `runtime` to the same responses.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::ApiError;
use crate::sse;
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::mpsc::Sender;

mod request;
mod response;

use request::Input;
pub(crate) use request::{CompletionRequest, Kind};
use response::{
    ChatLogprobs, Choice, Completion, Delta, List, Logprobs, Message, Model, Output, RestBlocks, RestModel,
    TextLogprobs, ToolCallOut, Usage,
};

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    OpenAi,
    RestV0,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A JSON body, or the error for it: 413 and 415 as such, anything else a 400 that says why.
pub(crate) fn parse<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(r)| r).map_err(|e| match e.status() {
        s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => ApiError::new(s, e.body_text()),
        _ => ApiError::bad_request(e.body_text()),
    })
}

pub(crate) async fn completions(
    State(s): State<AppState>,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Response {
    complete(s, parse(body), Kind::Text, Flavor::OpenAi).await
}

pub(crate) async fn chat_completions(
    State(s): State<AppState>,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Response {
    complete(s, parse(body), Kind::Chat, Flavor::OpenAi).await
}

pub(crate) async fn rest_completions(
    State(s): State<AppState>,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Response {
    complete(s, parse(body), Kind::Text, Flavor::RestV0).await
}

pub(crate) async fn rest_chat_completions(
    State(s): State<AppState>,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Response {
    complete(s, parse(body), Kind::Chat, Flavor::RestV0).await
}

async fn complete(state: AppState, req: Result<CompletionRequest, ApiError>, kind: Kind, flavor: Flavor) -> Response {
    counted(&state, start(&state, req, kind, flavor)).await.unwrap_or_else(ApiError::into_response)
}

/// A prediction request's reply, counted on `/metrics` (a request, and an error when it fails).
pub(crate) async fn counted(
    state: &AppState,
    reply: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Result<Response, ApiError> {
    state.metrics().requests.fetch_add(1, Ordering::Relaxed);
    let reply = reply.await;
    if reply.is_err() {
        state.metrics().errors.fetch_add(1, Ordering::Relaxed);
    }
    reply
}

/// The whole answer of a request that does not stream, recorded; one cut short is an error.
pub(crate) async fn whole(
    state: &AppState,
    stream: lmstudio::AsyncPredictionStream,
) -> Result<lmstudio::PredictionResult, ApiError> {
    let result = stream.wait_for_result().await?;
    state.metrics().record(&result);
    match cut_short(&result) {
        Some(e) => Err(e.into()),
        None => Ok(result),
    }
}

async fn start(
    state: &AppState,
    req: Result<CompletionRequest, ApiError>,
    kind: Kind,
    flavor: Flavor,
) -> Result<Response, ApiError> {
    let mut req = req?;
    let (config, input) = req.decode(kind)?;
    let logprobs = config.logprobs.is_some();
    let progress = req.prompt_progress;
    if let Some(model) = req.model.clone().filter(|_| req.stream && req.load_progress) {
        let client = state.client();
        if client.get_loaded_async(&model).await?.is_none() {
            client.resolve_async(&model).await?; // a model that does not exist is still a 404
            let ask = Ask { model, input, config, kind, flavor, logprobs, prompt_progress: progress };
            return Ok(loading_sse(state.clone(), ask).into_response());
        }
    }
    let llm = state.llm(req.model.as_deref()).await?;
    let stream = predict(&llm, input, config).await?;
    let shape = Shape::new(&llm, kind, flavor, logprobs);
    if req.stream {
        let state = state.clone();
        return Ok(sse::stream(move |tx| write_stream(state, shape, stream, progress, tx)).into_response());
    }
    let result = whole(state, stream).await?;
    Ok(Json(shape.finished(&result, false)).into_response())
}

async fn predict(
    llm: &lmstudio::Llm,
    input: Input,
    config: lmstudio::Config,
) -> lmstudio::Result<lmstudio::AsyncPredictionStream> {
    match input {
        Input::Text(prompt) => llm.complete_stream_async(&prompt, config).await,
        Input::Chat(chat) => llm.respond_stream_async(&chat.into(), config).await,
    }
}

/// A streamed request whose model is loaded by it, with `load_progress`.
struct Ask {
    model: String,
    input: Input,
    config: lmstudio::Config,
    kind: Kind,
    flavor: Flavor,
    logprobs: bool,
    prompt_progress: bool,
}

/// The stream of a request that loads its model first: it opens at once, reports the load as
/// `load_progress` events (`{"progress": p}`, strictly rising; the last `1.0` with
/// `load_time_seconds`), then carries the prediction as any stream. A load that fails ends it
/// with the error event.
fn loading_sse(state: AppState, ask: Ask) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    sse::stream(move |tx| async move {
        let Some(llm) = load_streamed(&state, &ask.model, &tx).await else { return };
        let stream = match predict(&llm, ask.input, ask.config).await {
            Ok(stream) => stream,
            Err(e) => {
                state.metrics().errors.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(error_event(e)).await;
                let _ = tx.send(Event::default().data("[DONE]")).await;
                return;
            }
        };
        let shape = Shape::new(&llm, ask.kind, ask.flavor, ask.logprobs);
        write_stream(state, shape, stream, ask.prompt_progress, tx).await;
    })
}

/// Loads `model` (as a request loads on demand), sending its progress to `tx`; `None` when the
/// load failed (the error sent) or the client went away (the load goes on: the next request finds
/// the model loaded).
async fn load_streamed(state: &AppState, model: &str, tx: &Sender<Event>) -> Option<lmstudio::Llm> {
    let client = state.client();
    let mut last = -1.0_f32;
    // Each whole percent at most once, below 1.0: the last event, with the load's time, says 1.0
    // (llama.cpp reports every tensor: hundreds of steps).
    let report = |p: f32| {
        let event = (p >= last + 0.01 && p < 1.0).then(|| {
            last = p;
            load_event(serde_json::json!({ "progress": p }))
        });
        let tx = tx.clone();
        async move {
            match event {
                Some(event) => tx.send(event).await.is_ok(),
                None => true,
            }
        }
    };
    let config = client.default_load_config();
    let end = match sse::load_reporting(client, model, &config, report, tx.closed()).await? {
        Ok((llm, seconds)) => {
            let done = serde_json::json!({ "progress": 1.0, "load_time_seconds": seconds });
            return tx.send(load_event(done)).await.is_ok().then_some(llm);
        }
        Err(e) => e,
    };
    state.metrics().errors.fetch_add(1, Ordering::Relaxed);
    let _ = tx.send(error_event(end)).await;
    let _ = tx.send(Event::default().data("[DONE]")).await;
    None
}

fn load_event(data: serde_json::Value) -> Event {
    json_event(&data).event("load_progress")
}

/// Everything needed to write responses for one request.
struct Shape {
    id: String,
    created: u64,
    model: String,
    kind: Kind,
    flavor: Flavor,
    /// Whether the request asked for log probabilities.
    logprobs: bool,
}

impl Shape {
    fn new(llm: &lmstudio::Llm, kind: Kind, flavor: Flavor, logprobs: bool) -> Self {
        let prefix = if kind == Kind::Chat { "chatcmpl" } else { "cmpl" };
        let id = format!("{prefix}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { id, created, model: llm.identifier().to_owned(), kind, flavor, logprobs }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Text, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    fn body(&self, chunk: bool, choice: Choice) -> Completion {
        Completion {
            id: self.id.clone(),
            object: self.object(chunk),
            created: self.created,
            model: self.model.clone(),
            choices: vec![choice],
            usage: None,
            rest: None,
        }
    }

    /// The body that ends a request: the whole response, or the last chunk of a stream.
    fn finished(&self, r: &lmstudio::PredictionResult, chunk: bool) -> Completion {
        let output = match (self.kind, chunk) {
            (Kind::Text, true) => Output::Text(String::new()),
            (Kind::Text, false) => Output::Text(r.content.clone()),
            (Kind::Chat, false) => Output::Message(Message {
                role: "assistant",
                content: (r.tool_calls.is_empty() || !r.content.is_empty()).then(|| r.content.clone()),
                reasoning_content: (!r.reasoning_content.is_empty()).then(|| r.reasoning_content.clone()),
                tool_calls: ToolCallOut::of(&r.tool_calls, false),
            }),
            (Kind::Chat, true) => Output::Delta(Delta::default()),
        };
        // Streamed, the tokens' log probabilities went out with their chunks.
        let logprobs = if chunk { None } else { self.logprobs(&r.logprobs) };
        let choice = Choice { index: 0, output, logprobs, finish_reason: Some(finish_reason(r)) };
        Completion {
            usage: Some(Usage::of(&r.stats)),
            rest: (self.flavor == Flavor::RestV0).then(|| RestBlocks::of(r)),
            ..self.body(chunk, choice)
        }
    }

    /// The `logprobs` of a choice in each endpoint's shape; `None` when not asked for.
    fn logprobs(&self, tokens: &[lmstudio::TokenLogprob]) -> Option<Logprobs> {
        self.logprobs.then(|| match self.kind {
            Kind::Text => Logprobs::Text(TextLogprobs::of(tokens)),
            Kind::Chat => Logprobs::Chat(ChatLogprobs::of(tokens)),
        })
    }

    /// The chunk of a stream that carries the calls, each whole, when there are any.
    fn calls_chunk(&self, r: &lmstudio::PredictionResult, first: bool) -> Option<Completion> {
        if self.kind != Kind::Chat || r.tool_calls.is_empty() {
            return None;
        }
        let role = first.then_some("assistant");
        let delta = Delta { role, tool_calls: ToolCallOut::of(&r.tool_calls, true), ..Delta::default() };
        Some(self.body(true, Choice { index: 0, output: Output::Delta(delta), logprobs: None, finish_reason: None }))
    }

    /// The chunk of a fragment: its text, or its reasoning; none for a reasoning marker.
    fn chunk(&self, fragment: &lmstudio::Fragment, first: bool) -> Option<Completion> {
        let text = fragment.content.clone();
        let role = first.then_some("assistant");
        let output = match (self.kind, fragment.reasoning) {
            (_, lmstudio::ReasoningType::StartTag | lmstudio::ReasoningType::EndTag) => return None,
            (Kind::Text, _) => Output::Text(text),
            (Kind::Chat, lmstudio::ReasoningType::Reasoning) => {
                Output::Delta(Delta { role, reasoning_content: Some(text), ..Delta::default() })
            }
            (Kind::Chat, lmstudio::ReasoningType::None) => {
                Output::Delta(Delta { role, content: Some(text), ..Delta::default() })
            }
        };
        let choice = Choice { index: 0, output, logprobs: self.logprobs(&fragment.logprobs), finish_reason: None };
        Some(self.body(true, choice))
    }
}

/// A prediction that ended without an answer a client should take as complete (the model was
/// unloaded under it, or the engine failed): OpenAI has no finish reason for that, so it is an error.
pub(crate) fn cut_short(r: &lmstudio::PredictionResult) -> Option<lmstudio::Error> {
    match r.stats.stop_reason {
        lmstudio::StopReason::ModelUnloaded => Some(lmstudio::Error::ModelUnloaded),
        lmstudio::StopReason::Failed => Some(lmstudio::Error::Engine("the prediction failed".into())),
        _ => None,
    }
}

/// A stream's last event when it ends in an error: the body an error reply would have.
fn error_event(e: lmstudio::Error) -> Event {
    json_event(&ApiError::from(e).body())
}

fn json_event(body: &impl serde::Serialize) -> Event {
    Event::default().json_data(body).unwrap_or_else(|e| {
        tracing::error!("an event could not be written: {e}");
        Event::default().data(r#"{"error": {"message": "internal error", "type": "server_error", "code": null}}"#)
    })
}

fn finish_reason(r: &lmstudio::PredictionResult) -> &'static str {
    match r.stats.stop_reason {
        lmstudio::StopReason::MaxPredictedTokensReached | lmstudio::StopReason::ContextLengthReached => "length",
        lmstudio::StopReason::ToolCalls => "tool_calls",
        _ => "stop",
    }
}

/// Writes a prediction's fragments to `tx` as server-sent events (OpenAI's chunks, then `[DONE]`).
async fn write_stream(
    state: AppState,
    shape: Shape,
    stream: lmstudio::AsyncPredictionStream,
    prompt_progress: bool,
    tx: Sender<Event>,
) {
    // Progress is reported as the stream is read, from the same task: each event queued
    // without waiting (one dropped when the queue is full is made up for by the next).
    let mut stream = if prompt_progress {
        let progress = tx.clone();
        stream.on_prompt_processing_progress(move |p| {
            let _ = progress.try_send(json_event(&serde_json::json!({ "progress": p })).event("prompt_progress"));
        })
    } else {
        stream
    };
    let metrics = state.metrics();
    let mut first = true;
    loop {
        let event = match sse::next(&mut stream, &tx).await {
            sse::Next::Fragment(f) => match shape.chunk(&f, first) {
                Some(chunk) => {
                    first = false;
                    json_event(&chunk)
                }
                None => continue,
            },
            sse::Next::Failed(e) => {
                metrics.errors.fetch_add(1, Ordering::Relaxed);
                error_event(e)
            }
            sse::Next::End => break,
            sse::Next::Gone => return,   // dropping `stream` cancels the prediction
            sse::Next::Idle => continue, // the keep-alive comments go out meanwhile
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
    if let Ok(result) = stream.result() {
        metrics.record(&result);
        if let Some(calls) = shape.calls_chunk(&result, first) {
            let _ = tx.send(json_event(&calls)).await;
        }
        let last = match cut_short(&result) {
            Some(e) => error_event(e),
            None => json_event(&shape.finished(&result, true)),
        };
        let _ = tx.send(last).await;
    }
    let _ = tx.send(Event::default().data("[DONE]")).await;
}

pub(crate) async fn list_models(State(state): State<AppState>) -> Result<Json<List<Model>>, ApiError> {
    let models = state.client().list_models_async().await?;
    Ok(Json(List::of(models.iter().map(Model::of).collect())))
}

pub(crate) async fn rest_list_models(State(state): State<AppState>) -> Result<Json<List<RestModel>>, ApiError> {
    let models = state.client().list_models_async().await?;
    Ok(Json(List::of(models.iter().map(RestModel::of).collect())))
}

pub(crate) async fn rest_get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RestModel>, ApiError> {
    let models = state.client().list_models_async().await?;
    models.iter().find(|m| m.info.model_key == id).map(|m| Json(RestModel::of(m))).ok_or_else(|| {
        ApiError::from(lmstudio::Error::ModelNotFound {
            query: id,
            candidates: models.iter().map(|m| m.info.model_key.clone()).collect(),
        })
    })
}
