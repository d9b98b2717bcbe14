//! OpenAI-compatible `/v1/*` and LM Studio REST `/api/v0/*`: one request shape, one completion
//! path; the REST flavour adds `stats`, `model_info` and `runtime` to the same responses.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// A string or a list of strings (`prompt`, `stop`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// Chat content: a string, or parts of which the text ones count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatIn {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    /// Anything else (`name`, `tool_calls`...): refused by name.
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// The fields of `/v1/completions` and `/v1/chat/completions`. Any other field is refused by name
/// ([`CompletionRequest::decode`]), never ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    model: Option<String>,
    prompt: Option<OneOrMany>,
    messages: Option<Vec<ChatIn>>,
    max_tokens: Option<Value>,
    max_completion_tokens: Option<Value>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    stop: Option<OneOrMany>,
    seed: Option<i64>,
    /// llama.cpp's extension: never end at an end-of-generation token.
    ignore_eos: Option<bool>,
    /// Ours: `"ngram"` drafts tokens from the context (speculative decoding), `"off"`.
    speculation: Option<lmstudio::Speculation>,
    /// LM Studio's extension: the key of a draft model (speculative decoding).
    draft_model: Option<String>,
    /// Completions: how many alternatives per token (0 to 20); chat: `true` to have them.
    logprobs: Option<Value>,
    /// Chat: how many alternatives per token, with `logprobs: true`.
    top_logprobs: Option<u32>,
    /// `{"type": "text" | "json_object" | "json_schema", "json_schema": {"schema": ...}}`.
    response_format: Option<Value>,
    /// llama.cpp's extension: a GBNF grammar the output follows.
    grammar: Option<String>,
    #[serde(default)]
    stream: bool,
    /// Everything else: checked by [`refuse_unsupported`].
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// A field we take only with the value that asks for nothing (`n: 1`, `echo: false`, no tools):
/// any other value, or any field not named here, is a 400 naming it. `user`
/// (an end user's id, for the provider's abuse monitoring) changes no output and is taken;
/// `stream_options.include_usage` is always honoured (the last chunk carries `usage`).
fn refuse_unsupported(other: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    let empty = |v: &Value| {
        v.is_null() || v.as_object().is_some_and(serde_json::Map::is_empty) || v.as_array().is_some_and(Vec::is_empty)
    };
    for (name, value) in other {
        let harmless = match name.as_str() {
            "user" => true,
            "stream_options" => {
                value.is_null() || value.as_object().is_some_and(|o| o.keys().all(|k| k == "include_usage"))
            }
            "n" | "best_of" => value.is_null() || value == 1,
            "echo" => value.is_null() || value == false,
            "logit_bias" | "tools" | "functions" => empty(value),
            "tool_choice" | "function_call" => value.is_null() || value == "none",
            "parallel_tool_calls" | "store" => value.is_null() || value.is_boolean(),
            "suffix" => value.is_null() || value == "",
            _ => false,
        };
        if !harmless {
            return Err(ApiError::bad_request(format!("unsupported field `{name}`: {value}")));
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Text,
    Chat,
}

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    OpenAi,
    RestV0,
}

/// What a request asks to complete.
pub(crate) enum Input {
    Text(String),
    Chat(Vec<lmstudio::ChatMessage>),
}

impl CompletionRequest {
    /// Everything the request says, checked, before any model is looked up.
    pub(crate) fn decode(&mut self, kind: Kind) -> Result<(lmstudio::Config, Input), ApiError> {
        refuse_unsupported(&self.other)?;
        let mut config = self.config()?;
        config.logprobs = self.logprobs(kind)?;
        config.structured = self.structured()?;
        config.validate()?;
        let input = match kind {
            Kind::Text => {
                let mut prompts =
                    self.prompt.take().ok_or_else(|| ApiError::bad_request("`prompt` is required"))?.into_vec();
                if prompts.len() != 1 {
                    return Err(ApiError::bad_request("`prompt` must be one string"));
                }
                Input::Text(prompts.remove(0))
            }
            Kind::Chat => {
                let messages = self.messages.take().ok_or_else(|| ApiError::bad_request("`messages` is required"))?;
                if messages.is_empty() {
                    return Err(ApiError::bad_request("`messages` is empty"));
                }
                Input::Chat(messages.into_iter().map(chat_message).collect::<Result<_, _>>()?)
            }
        };
        Ok((config, input))
    }

    /// The language `response_format` (or llama.cpp's `grammar`) constrains the output to.
    fn structured(&self) -> Result<Option<lmstudio::Structured>, ApiError> {
        let bad = |what: String| Err(ApiError::bad_request(what));
        let format = self.response_format.as_ref().filter(|v| !v.is_null());
        match (format, &self.grammar) {
            (Some(_), Some(_)) => bad("`response_format` and `grammar` exclude each other".into()),
            (None, Some(g)) => Ok(Some(lmstudio::Structured::Gbnf(g.clone()))),
            (None, None) => Ok(None),
            (Some(f), None) => match f.get("type").and_then(Value::as_str) {
                Some("text") => Ok(None),
                Some("json_object") => Ok(Some(lmstudio::Structured::Json(json!({"type": "object"})))),
                Some("json_schema") => match f.get("json_schema").and_then(|j| j.get("schema")) {
                    Some(schema) => Ok(Some(lmstudio::Structured::Json(schema.clone()))),
                    None => bad("`response_format.json_schema.schema` is required".into()),
                },
                _ => bad(format!(
                    "unsupported `response_format.type`: {} (text, json_object or json_schema)",
                    f.get("type").unwrap_or(&Value::Null)
                )),
            },
        }
    }

    /// The alternatives per token asked for, in each endpoint's own form.
    fn logprobs(&self, kind: Kind) -> Result<Option<u32>, ApiError> {
        let bad = |what: &str| Err(ApiError::bad_request(what.to_owned()));
        match (kind, self.logprobs.as_ref().filter(|v| !v.is_null()), self.top_logprobs) {
            (Kind::Text, None, None) | (Kind::Chat, None, None) => Ok(None),
            (Kind::Text, Some(n), None) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => Ok(Some(n)),
                None => bad("`logprobs` of /v1/completions is how many alternatives per token: 0 to 20"),
            },
            (Kind::Text, _, Some(_)) => bad("`top_logprobs` is for chat completions; here `logprobs` is the count"),
            (Kind::Chat, Some(Value::Bool(false)), None) => Ok(None),
            (Kind::Chat, Some(Value::Bool(true)), n) => Ok(Some(n.unwrap_or(0))),
            (Kind::Chat, Some(Value::Bool(false)) | None, Some(_)) => bad("`top_logprobs` needs `logprobs: true`"),
            (Kind::Chat, Some(_), _) => bad("`logprobs` of chat completions is true or false"),
        }
    }

    fn config(&self) -> Result<lmstudio::Config, ApiError> {
        let max_tokens =
            lmstudio::Config::token_limit(self.max_completion_tokens.as_ref().or(self.max_tokens.as_ref()))?;
        let seed = match self.seed {
            None => None,
            Some(s) => Some(u32::try_from(s).map_err(|_| ApiError::bad_request(format!("seed out of range: {s}")))?),
        };
        Ok(lmstudio::Config {
            max_tokens,
            temperature: self.temperature,
            stop_strings: self.stop.clone().map(OneOrMany::into_vec).unwrap_or_default(),
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed,
            ignore_eos: self.ignore_eos,
            speculation: self.speculation,
            draft_model: self.draft_model.clone(),
            ..Default::default()
        })
    }
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
    state.metrics().requests.fetch_add(1, Ordering::Relaxed);
    match start(&state, req, kind, flavor).await {
        Ok(response) => response,
        Err(e) => {
            state.metrics().errors.fetch_add(1, Ordering::Relaxed);
            e.into_response()
        }
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
    let client = state.client();
    let llm = match &req.model {
        Some(name) => client.llm_async(name).await?,
        None => client.default_llm_async().await?,
    };
    let prompt = match input {
        Input::Text(prompt) => prompt,
        Input::Chat(chat) => llm.apply_prompt_template_async(&chat).await?,
    };
    let stream = llm.complete_stream_async(&prompt, config).await?;
    let id =
        format!("{}-{}", if kind == Kind::Chat { "chatcmpl" } else { "cmpl" }, NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let shape = Shape { id, created, model: llm.identifier().to_owned(), kind, flavor, logprobs };
    if req.stream {
        return Ok(sse(state.clone(), shape, stream).into_response());
    }
    let result = stream.wait_for_result().await?;
    state.metrics().record(&result);
    if let Some(e) = cut_short(&result) {
        return Err(e.into());
    }
    Ok(Json(shape.finished(&result, false)).into_response())
}

fn chat_message(m: ChatIn) -> Result<lmstudio::ChatMessage, ApiError> {
    if let Some(name) = m.other.keys().next() {
        return Err(ApiError::bad_request(format!("unsupported message field `{name}`")));
    }
    let content = match m.content {
        None => String::new(),
        Some(Content::Text(t)) => t,
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    (kind, _) => {
                        return Err(ApiError::bad_request(format!("unsupported content part `{kind}`: only text")))
                    }
                }
            }
            text
        }
    };
    Ok(lmstudio::ChatMessage::new(m.role, content))
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
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Text, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    /// The body that ends a request: the whole response, or the last chunk of a stream.
    fn finished(&self, r: &lmstudio::PredictionResult, chunk: bool) -> Value {
        let reason = finish_reason(r);
        let text = if chunk { "" } else { r.content.as_str() };
        // Streamed, the tokens' log probabilities went out with their chunks.
        let logprobs = if chunk { Value::Null } else { self.logprobs(&r.logprobs) };
        let choice = match (self.kind, chunk) {
            (Kind::Text, _) => json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": reason}),
            (Kind::Chat, false) => {
                json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs, "finish_reason": reason})
            }
            (Kind::Chat, true) => json!({"index": 0, "delta": {}, "logprobs": logprobs, "finish_reason": reason}),
        };
        let mut body = json!({
            "id": self.id, "object": self.object(chunk), "created": self.created, "model": self.model,
            "choices": [choice], "usage": usage(r),
        });
        self.add_rest_blocks(&mut body, r);
        body
    }

    /// The `logprobs` of a choice: OpenAI's shape for each endpoint, `null` when not asked for.
    fn logprobs(&self, tokens: &[lmstudio::TokenLogprob]) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        match self.kind {
            Kind::Text => {
                let mut offset = 0;
                let text_offset: Vec<usize> = tokens
                    .iter()
                    .map(|t| {
                        offset += t.token.len();
                        offset - t.token.len()
                    })
                    .collect();
                let top: Vec<Value> = tokens
                    .iter()
                    .map(|t| Value::Object(t.top.iter().map(|a| (a.token.clone(), json!(a.logprob))).collect()))
                    .collect();
                json!({
                    "tokens": tokens.iter().map(|t| &t.token).collect::<Vec<_>>(),
                    "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                    "top_logprobs": top,
                    "text_offset": text_offset,
                })
            }
            Kind::Chat => {
                let content: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let top: Vec<Value> = t
                            .top
                            .iter()
                            .map(|a| json!({"token": a.token, "logprob": a.logprob, "bytes": a.bytes}))
                            .collect();
                        json!({"token": t.token, "logprob": t.logprob, "bytes": t.bytes, "top_logprobs": top})
                    })
                    .collect();
                json!({"content": content, "refusal": null})
            }
        }
    }

    fn chunk(&self, fragment: &lmstudio::Fragment, first: bool) -> Value {
        let (text, logprobs) = (fragment.content.as_str(), self.logprobs(&fragment.logprobs));
        let choice = match self.kind {
            Kind::Text => json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": null}),
            Kind::Chat => {
                let delta =
                    if first { json!({"role": "assistant", "content": text}) } else { json!({"content": text}) };
                json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": null})
            }
        };
        json!({"id": self.id, "object": self.object(true), "created": self.created, "model": self.model, "choices": [choice]})
    }

    fn add_rest_blocks(&self, body: &mut Value, r: &lmstudio::PredictionResult) {
        if self.flavor != Flavor::RestV0 {
            return;
        }
        let s = &r.stats;
        let generation_time = match (s.tokens_per_second, s.predicted_tokens_count) {
            (Some(tps), Some(n)) if tps > 0.0 => n as f64 / tps,
            _ => 0.0,
        };
        body["stats"] = json!({
            "tokens_per_second": s.tokens_per_second,
            "time_to_first_token": s.time_to_first_token_sec,
            "generation_time": generation_time,
            "stop_reason": s.stop_reason,
        });
        if let Some(d) = &s.drafts {
            // LM Studio's names, as REST v0 writes its stats: snake case.
            body["stats"]["used_draft_model_key"] = json!(d.used_draft_model_key);
            body["stats"]["total_draft_tokens_count"] = json!(d.total_draft_tokens_count);
            body["stats"]["accepted_draft_tokens_count"] = json!(d.accepted_draft_tokens_count);
            body["stats"]["rejected_draft_tokens_count"] = json!(d.rejected_draft_tokens_count);
            body["stats"]["ignored_draft_tokens_count"] = json!(d.ignored_draft_tokens_count);
        }
        let i = &r.model_info;
        body["model_info"] = json!({
            "arch": i.architecture, "quant": i.quantization.as_ref().map(|q| &q.name), "format": i.format, "context_length": i.context_length,
        });
        body["runtime"] = runtime();
    }
}

fn runtime() -> Value {
    json!({"name": "llama.cpp-cpu (lmstudio-rs)", "version": env!("CARGO_PKG_VERSION"), "supported_formats": ["gguf"]})
}

/// A prediction that ended without an answer a client should take as complete (the model was
/// unloaded under it, or the engine failed): OpenAI has no finish reason for that, so it is an error.
fn cut_short(r: &lmstudio::PredictionResult) -> Option<lmstudio::Error> {
    match r.stats.stop_reason {
        lmstudio::StopReason::ModelUnloaded => Some(lmstudio::Error::ModelUnloaded),
        lmstudio::StopReason::Failed => Some(lmstudio::Error::Engine("the prediction failed".into())),
        _ => None,
    }
}

/// The error object of a stream that ends in an error.
fn error_event(e: &lmstudio::Error) -> Value {
    json!({"error": {"message": e.to_string(), "type": "server_error"}})
}

fn finish_reason(r: &lmstudio::PredictionResult) -> &'static str {
    match r.stats.stop_reason {
        lmstudio::StopReason::MaxPredictedTokensReached | lmstudio::StopReason::ContextLengthReached => "length",
        lmstudio::StopReason::ToolCalls => "tool_calls",
        _ => "stop",
    }
}

fn usage(r: &lmstudio::PredictionResult) -> Value {
    let s = &r.stats;
    json!({
        "prompt_tokens": s.prompt_tokens_count.unwrap_or(0),
        "completion_tokens": s.predicted_tokens_count.unwrap_or(0),
        "total_tokens": s.total_tokens_count.unwrap_or(0),
    })
}

/// Streams fragments as server-sent events. A client that goes away drops the receiver; the task's
/// next send fails, it drops the prediction stream, and the engine stops that sequence.
fn sse(
    state: AppState,
    shape: Shape,
    mut stream: lmstudio::AsyncPredictionStream,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let metrics = state.metrics();
        let mut first = true;
        let mut alive = true;
        while let Some(fragment) = stream.next().await {
            let event = match fragment {
                Ok(f) => Event::default().data(shape.chunk(&f, std::mem::take(&mut first)).to_string()),
                Err(e) => {
                    metrics.errors.fetch_add(1, Ordering::Relaxed);
                    Event::default().data(error_event(&e).to_string())
                }
            };
            if tx.send(event).await.is_err() {
                alive = false;
                break;
            }
        }
        if !alive {
            return; // dropping `stream` cancels the prediction
        }
        if let Ok(result) = stream.result() {
            metrics.record(&result);
            let last = match cut_short(&result) {
                Some(e) => error_event(&e),
                None => shape.finished(&result, true),
            };
            let _ = tx.send(Event::default().data(last.to_string())).await;
        }
        let _ = tx.send(Event::default().data("[DONE]")).await;
    });
    let events = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Ok);
    Sse::new(events).keep_alive(KeepAlive::default())
}

pub(crate) async fn list_models(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let data: Vec<Value> = state
        .client()
        .list_models_async()
        .await?
        .into_iter()
        .map(|m| json!({"id": m.info.model_key, "object": "model", "owned_by": publisher(&m.info)}))
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

fn publisher(info: &lmstudio::ModelInfo) -> String {
    info.path.split('/').next().unwrap_or("local").to_owned()
}

fn rest_model(entry: &lmstudio::ModelEntry) -> Value {
    let info = &entry.info;
    let mut v = json!({
        "id": info.model_key, "object": "model", "type": "llm", "publisher": publisher(info),
        "arch": info.architecture, "compatibility_type": info.format, "quantization": info.quantization.as_ref().map(|q| &q.name),
        "state": if entry.instances.is_empty() { "not-loaded" } else { "loaded" },
        "max_context_length": info.max_context_length,
    });
    if let Some(i) = entry.instances.first() {
        v["loaded_context_length"] = json!(i.context_length);
    }
    v
}

pub(crate) async fn rest_list_models(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let data: Vec<Value> = state.client().list_models_async().await?.iter().map(rest_model).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

pub(crate) async fn rest_get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let models = state.client().list_models_async().await?;
    models.iter().find(|m| m.info.model_key == id).map(|m| Json(rest_model(m))).ok_or_else(|| {
        ApiError::from(lmstudio::Error::ModelNotFound {
            query: id,
            candidates: models.iter().map(|m| m.info.model_key.clone()).collect(),
        })
    })
}
