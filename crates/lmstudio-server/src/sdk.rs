//! LM Studio's SDK protocol: one websocket per namespace (`/llm`, `/system`, ...), an auth
//! handshake, then multiplexed RPC calls and channels, read and written as the typed vocabulary
//! of `lmstudio::wire::protocol` (the remote client speaks the same types).
//!
//! Every message out goes through one writer task, whose queue is bounded in bytes: a client that
//! stops reading is disconnected once it is full. Each RPC and channel runs in a task of its own,
//! so a long prediction never holds up a `tokenize` on the same socket. When the socket closes,
//! the session's tasks are aborted and dropping their prediction streams stops generation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use lmstudio::wire::protocol::{
    self as p, ApplyPromptTemplate, Auth, AuthReply, ChannelInput, ClientMessage, CountTokens, EmbedString,
    GetLoadConfig, GetModelInfo, GetOrLoadParameter, ListDownloadedModels, ListLoaded, LoadMessage, LoadModelParameter,
    ModelSpecifier, PredictMessage, PredictParameter, Rpc, ServerMessage, Tokenize, UnloadModel, Version,
};
use lmstudio::wire::{self, KvConfig, KvField, KvStack};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use crate::state::AppState;
use crate::sync::lock;

/// The SDK's websocket namespaces.
const NAMESPACES: [&str; 6] = ["llm", "embedding", "system", "files", "repository", "diagnostics"];

/// One websocket route per namespace.
pub(crate) fn routes() -> axum::Router<AppState> {
    NAMESPACES.iter().fold(axum::Router::new(), |r, ns| r.route(&format!("/{ns}"), axum::routing::get(upgrade)))
}

async fn upgrade(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    uri: axum::http::Uri,
    State(state): State<AppState>,
) -> Response {
    let namespace = uri.path().trim_start_matches('/').to_owned();
    match ws {
        Ok(ws) => ws.max_message_size(state.body_limit()).on_upgrade(move |socket| session(socket, namespace, state)),
        Err(e) => {
            crate::error::ApiError::bad_request(format!("/{namespace} is a websocket endpoint: {e}")).into_response()
        }
    }
}

/// Outgoing messages of one socket, and what they take in the writer's queue.
#[derive(Clone)]
struct Out {
    tx: mpsc::UnboundedSender<String>,
    queued: Arc<AtomicUsize>,
    limit: usize,
    /// Raised once the queue is past its limit: the session ends.
    overflow: Arc<Notify>,
}

impl Out {
    /// Queues `message`; `false` when the socket is gone or its client stopped reading.
    fn send(&self, message: &ServerMessage) -> bool {
        self.send_text(p::encode_text(message))
    }

    fn send_text(&self, text: String) -> bool {
        let len = text.len();
        if self.queued.fetch_add(len, Ordering::Relaxed) + len > self.limit {
            self.overflow.notify_one();
            return false;
        }
        self.tx.send(text).is_ok()
    }

    fn channel<T: serde::Serialize>(&self, channel_id: i64, message: &T) -> bool {
        self.send(&ServerMessage::ChannelSend { channel_id, message: p::encode(message) })
    }

    fn close(&self, channel_id: i64) {
        self.send(&ServerMessage::ChannelClose { channel_id });
    }

    fn channel_error(&self, channel_id: i64, e: &lmstudio::Error) {
        self.send(&ServerMessage::ChannelError { channel_id, error: wire::error_object(e) });
    }

    fn warn(&self, warning: String) {
        self.send(&ServerMessage::CommunicationWarning { warning });
    }
}

/// The channels open on one socket, with what stops those the client may stop.
type OpenChannels = Arc<Mutex<HashMap<i64, Option<Stopper>>>>;

/// What ends a channel's work when the client asks: a prediction's cancel handle (`cancel`), a
/// log stream's signal (`stop`).
#[derive(Clone)]
enum Stopper {
    Prediction(lmstudio::CancelHandle),
    Logs(Arc<Notify>),
}

/// Channels one socket may have open at once; past that, a new one is refused.
pub(crate) const MAX_OPEN_CHANNELS: usize = 256;

async fn session(socket: WebSocket, namespace: String, state: AppState) {
    let (mut sink, mut incoming) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let queued = Arc::new(AtomicUsize::new(0));
    let overflow = Arc::new(Notify::new());
    let out =
        Out { tx, queued: Arc::clone(&queued), limit: state.socket_queue_limit(), overflow: Arc::clone(&overflow) };
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            let len = text.len();
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
            queued.fetch_sub(len, Ordering::Relaxed);
        }
    });
    if authenticate(&mut incoming, &out, &state).await {
        let open_channels: OpenChannels = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let frame = tokio::select! {
                frame = incoming.next() => frame,
                () = overflow.notified() => {
                    tracing::warn!("an SDK client stopped reading ({} bytes waiting): disconnected", out.limit);
                    state.metrics().slow_clients.fetch_add(1, Ordering::Relaxed);
                    writer.abort();
                    break;
                }
            };
            let text = match frame {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => continue,
            };
            match p::decode_text::<ClientMessage>("message", &text) {
                Ok(msg) => dispatch(msg, &namespace, &state, &out, &open_channels, &mut tasks),
                Err(e) => out.warn(e.to_string()),
            }
            while tasks.try_join_next().is_some() {}
        }
        // The client is gone: abort its work; dropped prediction streams stop their sequences.
        tasks.abort_all();
    }
    drop(out);
    let _ = writer.await;
}

async fn authenticate(
    incoming: &mut futures_util::stream::SplitStream<WebSocket>,
    out: &Out,
    state: &AppState,
) -> bool {
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), incoming.next()).await;
    let verdict = match first {
        Ok(Some(Ok(Message::Text(t)))) => match p::decode_text::<Auth>("authentication packet", &t) {
            Ok(a) if a.auth_version != 1 => Err(format!("unsupported authVersion {}", a.auth_version)),
            Ok(a) if a.client_identifier.len() > 256 || a.client_passkey.len() > 256 => {
                Err("credentials too long".into())
            }
            Ok(a) if !state.key_matches(Some(&a.client_passkey)) => {
                Err("invalid API key (send it as the client passkey)".into())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        },
        _ => Err("expected an authentication packet".into()),
    };
    let ok = verdict.is_ok();
    out.send_text(p::encode_text(&AuthReply { success: ok, error: verdict.err() }));
    ok
}

fn dispatch(
    msg: ClientMessage,
    namespace: &str,
    state: &AppState,
    out: &Out,
    open_channels: &OpenChannels,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    match msg {
        ClientMessage::RpcCall { endpoint, call_id, parameter } => {
            let (state, out, ns) = (state.clone(), out.clone(), namespace.to_owned());
            let parameter = parameter.unwrap_or(Value::Null);
            tasks.spawn(async move {
                // The library's calls block (header reads, engine joins): never on the runtime.
                let outcome = tokio::task::spawn_blocking(move || rpc(&state, &ns, &endpoint, parameter))
                    .await
                    .unwrap_or_else(|e| Err(lmstudio::Error::Engine(format!("rpc task failed: {e}"))));
                out.send(&match outcome {
                    Ok(result) => ServerMessage::RpcResult { call_id, result: Some(result).filter(|r| !r.is_null()) },
                    Err(e) => ServerMessage::RpcError { call_id, error: wire::error_object(&e) },
                });
            });
        }
        ClientMessage::ChannelCreate { endpoint, channel_id: id, creation_parameter } => {
            {
                let mut open = lock(open_channels);
                if open.contains_key(&id) {
                    // Not a channelError: that would end the open channel of that id at the client.
                    out.warn(format!("channelCreate refused: channel {id} is already open on this connection"));
                    return;
                }
                if open.len() >= MAX_OPEN_CHANNELS {
                    let why = format!("more than {MAX_OPEN_CHANNELS} channels open on this connection");
                    out.channel_error(id, &invalid(why));
                    return;
                }
                open.insert(id, None);
            }
            let request = match channel_request(&endpoint, creation_parameter) {
                Ok(Some(request)) => request,
                Ok(None) => {
                    // As LM Studio: a warning, and the channel is never answered.
                    lock(open_channels).remove(&id);
                    out.warn(format!("channelCreate for unknown endpoint {endpoint:?} (channel {id})"));
                    return;
                }
                Err(e) => {
                    lock(open_channels).remove(&id);
                    out.channel_error(id, &e);
                    return;
                }
            };
            if let ChannelRequest::StreamLogs(stop) = &request {
                // Stoppable from now on: a `stop` sent right after the creation is not lost.
                lock(open_channels).insert(id, Some(Stopper::Logs(Arc::clone(stop))));
            }
            let (state, out, open_channels, ns) =
                (state.clone(), out.clone(), Arc::clone(open_channels), namespace.to_owned());
            tasks.spawn(async move {
                if let Err(e) = channel(&state, &ns, request, id, &out, &open_channels).await {
                    out.channel_error(id, &e);
                }
                lock(&open_channels).remove(&id);
            });
        }
        ClientMessage::ChannelSend { channel_id, message, .. } => {
            // The JS SDK sends its cancel twice; the second finds the prediction cancelled or gone.
            let stopper = lock(open_channels).get(&channel_id).cloned().flatten();
            match (p::decode::<ChannelInput>("channel message", message), stopper) {
                (Ok(ChannelInput::Cancel), Some(Stopper::Prediction(handle))) => handle.cancel(),
                (Ok(ChannelInput::Stop), Some(Stopper::Logs(stop))) => stop.notify_one(),
                _ => {}
            }
        }
        ClientMessage::CommunicationWarning { warning } => {
            // The client found a message of ours it could not take: a bug of ours, so it counts.
            state.metrics().client_warnings.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(warning, "the client warns");
        }
        ClientMessage::KeepAlive => {
            out.send(&ServerMessage::KeepAliveAck);
        }
        ClientMessage::SignalSubscribe { endpoint, subscribe_id } => {
            let error = wire::error_object(&lmstudio::Error::Unsupported(format!("signal {namespace}/{endpoint}")));
            out.send(&ServerMessage::SignalError { subscribe_id, error });
        }
        ClientMessage::WritableSignalSubscribe { endpoint, subscribe_id } => {
            let error = wire::error_object(&lmstudio::Error::Unsupported(format!("signal {namespace}/{endpoint}")));
            out.send(&ServerMessage::WritableSignalError { subscribe_id, error });
        }
        // Acknowledgements and the ends of subscriptions we never opened need no answer.
        ClientMessage::ChannelClose { .. }
        | ClientMessage::ChannelAck { .. }
        | ClientMessage::SignalUnsubscribe { .. }
        | ClientMessage::WritableSignalUnsubscribe { .. }
        | ClientMessage::WritableSignalUpdate { .. } => {}
    }
}

fn invalid(what: impl Into<String>) -> lmstudio::Error {
    lmstudio::Error::InvalidConfig(what.into())
}

/// The instance a specifier names, among loaded models only. An instance reference names one
/// load: once it is unloaded, the model is unloaded for that handle.
fn loaded_by_specifier(state: &AppState, spec: &ModelSpecifier) -> Result<lmstudio::Llm, lmstudio::Error> {
    let client = state.client();
    let Some(query) = spec.name() else {
        // `client.llm.model()` with no key: any loaded model.
        let any = client.list_loaded()?.into_iter().find_map(|i| i.identifier);
        let any = any.ok_or_else(|| lmstudio::Error::ModelNotFound { query: String::new(), candidates: Vec::new() })?;
        return client.get_loaded(&any)?.ok_or(lmstudio::Error::ModelUnloaded);
    };
    let found = client.get_loaded(query)?;
    if let ModelSpecifier::InstanceReference { .. } = spec {
        return found.ok_or(lmstudio::Error::ModelUnloaded);
    }
    found.ok_or_else(|| lmstudio::Error::ModelNotFound {
        query: query.to_owned(),
        candidates: client.list_loaded().unwrap_or_default().into_iter().filter_map(|i| i.identifier).collect(),
    })
}

/// Decodes an RPC's parameter, serves it and encodes its result.
fn serve<R: Rpc>(
    parameter: Value,
    f: impl FnOnce(R::Parameter) -> Result<R::Result, lmstudio::Error>,
) -> Result<Value, lmstudio::Error> {
    let parameter = p::decode(&format!("{} parameter", R::ENDPOINT), parameter)?;
    Ok(p::encode(&f(parameter)?))
}

fn rpc(state: &AppState, namespace: &str, endpoint: &str, parameter: Value) -> Result<Value, lmstudio::Error> {
    let client = state.client();
    let embedding = namespace == "embedding";
    match (namespace, endpoint) {
        ("llm" | "embedding", ListLoaded::ENDPOINT) => serve::<ListLoaded>(parameter, |_| {
            Ok(client.list_loaded()?.into_iter().filter(|i| i.is_embedding() == embedding).collect())
        }),
        ("system", ListDownloadedModels::ENDPOINT) => serve::<ListDownloadedModels>(parameter, |_| {
            Ok(client.list_downloaded()?.into_iter().filter_map(|m| m.info.ok()).collect())
        }),
        ("system", Version::ENDPOINT) => serve::<Version>(parameter, |_| {
            Ok(p::VersionResult { version: env!("CARGO_PKG_VERSION").into(), build: 0 })
        }),
        ("llm" | "embedding", GetModelInfo::ENDPOINT) => serve::<GetModelInfo>(parameter, |q| {
            match loaded_by_specifier(state, &q.specifier) {
                Ok(llm) => Ok(Some(as_namespace(namespace, llm.info().clone()))),
                // Not found, and not asked to throw: no result at all (the JS SDK takes no `null`).
                Err(_) if q.throw_if_not_found == Some(false) => Ok(None),
                Err(e) => Err(e),
            }
        }),
        ("llm" | "embedding", Tokenize::ENDPOINT) => serve::<Tokenize>(parameter, |q| {
            Ok(p::TokenizeResult { tokens: loaded_by_specifier(state, &q.specifier)?.tokenize(&q.input_string)? })
        }),
        ("llm", CountTokens::ENDPOINT) => serve::<CountTokens>(parameter, |q| {
            let token_count = loaded_by_specifier(state, &q.specifier)?.count_tokens(&q.input_string)?;
            Ok(p::CountTokensResult { token_count })
        }),
        // LM Studio counts an embedding model's tokens without the markers tokenizing adds ([CLS],
        // [SEP]): its own suite checks that the two differ by them.
        ("embedding", CountTokens::ENDPOINT) => serve::<CountTokens>(parameter, |q| {
            let token_count =
                loaded_by_specifier(state, &q.specifier)?.tokenize_with(&q.input_string, false, true)?.len();
            Ok(p::CountTokensResult { token_count })
        }),
        ("llm" | "embedding", GetLoadConfig::ENDPOINT) => serve::<GetLoadConfig>(parameter, |q| {
            Ok(load_fields(namespace, &loaded_by_specifier(state, &q.specifier)?))
        }),
        ("llm", ApplyPromptTemplate::ENDPOINT) => serve::<ApplyPromptTemplate>(parameter, |q| {
            let llm = loaded_by_specifier(state, &q.specifier)?;
            Ok(p::ApplyPromptTemplateResult { formatted: llm.apply_prompt_template(&q.history.chat_messages())? })
        }),
        ("llm" | "embedding", UnloadModel::ENDPOINT) => serve::<UnloadModel>(parameter, |q| {
            client.unload(&q.identifier)?;
            Ok(p::Nothing)
        }),
        ("embedding", EmbedString::ENDPOINT) => serve::<EmbedString>(parameter, |q| {
            let model = lmstudio::EmbeddingModel::from(loaded_by_specifier(state, &q.model_specifier)?);
            let mut vectors = model.embed(&[q.input_string])?.vectors;
            Ok(p::EmbedStringResult { embedding: vectors.pop().unwrap_or_default() })
        }),
        _ => Err(invalid(format!("unknown endpoint {namespace}/{endpoint}"))),
    }
}

/// A model's info as a namespace reports it: over `embedding`, any model used there is an
/// embedding model (the SDKs read the type as a tag), a decoder LLM included.
fn as_namespace(namespace: &str, mut info: lmstudio::ModelInfo) -> lmstudio::ModelInfo {
    if namespace == "embedding" {
        info.kind = lmstudio::EMBEDDING.into();
    }
    info
}

fn load_fields(namespace: &str, llm: &lmstudio::Llm) -> KvConfig {
    let context_length = p::encode(&llm.info().context_length);
    KvConfig { fields: vec![KvField { key: format!("{namespace}.load.contextLength"), value: context_length }] }
}

/// A channel's creation, decoded by its endpoint.
#[derive(Debug)]
pub(crate) enum ChannelRequest {
    /// `getOrLoad`.
    GetOrLoad(GetOrLoadParameter),
    /// `loadModel`.
    LoadModel(LoadModelParameter),
    /// `predict`.
    Predict(Box<PredictParameter>),
    /// `diagnostics` / `streamLogs`: the live log, until the client sends `stop` (which notifies
    /// this signal) or is gone.
    StreamLogs(Arc<Notify>),
}

/// The request a `channelCreate` makes; `None` for an endpoint we do not serve.
pub(crate) fn channel_request(endpoint: &str, parameter: Value) -> Result<Option<ChannelRequest>, lmstudio::Error> {
    Ok(Some(match endpoint {
        "getOrLoad" => ChannelRequest::GetOrLoad(p::decode("getOrLoad parameter", parameter)?),
        "loadModel" => ChannelRequest::LoadModel(p::decode("loadModel parameter", parameter)?),
        "predict" => ChannelRequest::Predict(p::decode("predict parameter", parameter)?),
        "streamLogs" => ChannelRequest::StreamLogs(Arc::default()),
        _ => return Ok(None),
    }))
}

/// The SDKs' TTL (seconds) arrives in milliseconds.
fn ttl_seconds(ms: Option<f64>) -> Result<Option<u64>, lmstudio::Error> {
    ms.map(|ms| {
        if ms.is_finite() && ms > 0.0 {
            Ok((ms / 1000.0).ceil() as u64)
        } else {
            Err(invalid(format!("bad TTL: {ms} ms")))
        }
    })
    .transpose()
}

async fn channel(
    state: &AppState,
    namespace: &str,
    request: ChannelRequest,
    id: i64,
    out: &Out,
    open_channels: &OpenChannels,
) -> Result<(), lmstudio::Error> {
    let client = state.client().clone();
    let (query, stack, identifier, ttl) = match request {
        ChannelRequest::Predict(parameter) => return predict(state, id, *parameter, out, open_channels).await,
        ChannelRequest::StreamLogs(stop) => return stream_logs(state, id, out, &stop).await,
        ChannelRequest::GetOrLoad(g) => {
            if let Some(llm) = client.get_loaded(&g.identifier)? {
                let info = Box::new(as_namespace(namespace, llm.info().clone()));
                out.channel(id, &LoadMessage::AlreadyLoaded { info });
                out.close(id);
                return Ok(());
            }
            (g.identifier, g.load_config_stack, None, g.load_ttl_ms)
        }
        ChannelRequest::LoadModel(l) => (l.model_key, l.load_config_stack, Some(l.identifier), l.ttl_ms),
    };
    let new_instance = identifier.is_some();
    // What the SDK's stack leaves unset, the server's own load settings decide (its --parallel).
    // The server's context length is per prediction slot: embedding models take their own.
    let defaults = if namespace == "embedding" { client.embedding_load_config() } else { client.default_load_config() };
    let mut load = stack.load_config(defaults)?;
    load.identifier = identifier.flatten();
    load.ttl = ttl_seconds(ttl)?.or(load.ttl);
    if let Ok(info) = client.resolve_async(&query).await {
        let info = Box::new(as_namespace(namespace, info));
        out.channel(
            id,
            &if new_instance {
                LoadMessage::Resolved { info }
            } else {
                LoadMessage::StartLoading { identifier: info.model_key.clone(), info }
            },
        );
    }
    let events = out.clone();
    let on_load: lmstudio::OnLoad = Arc::new(move |event| {
        let message = match event {
            lmstudio::LoadEvent::Progress(progress) if new_instance => LoadMessage::Progress { progress },
            lmstudio::LoadEvent::Progress(progress) => LoadMessage::LoadProgress { progress },
            lmstudio::LoadEvent::UnloadingOther(info) => LoadMessage::UnloadingOtherJitModel { info },
        };
        events.channel(id, &message);
    });
    let info = Box::new(as_namespace(
        namespace,
        if new_instance {
            client.load_with_async(&query, &load, &on_load).await?.info().clone()
        } else {
            client.get_or_load_with_async(&query, &load, &on_load).await?.0.info().clone()
        },
    ));
    out.channel(id, &if new_instance { LoadMessage::Success { info } } else { LoadMessage::LoadSuccess { info } });
    out.close(id);
    Ok(())
}

/// Forwards the live log's prompts as `{"type": "log", "log": event}` messages (LM Studio's
/// `streamLogs`) until the client sends `stop` (the channel then closes) or is gone. Only
/// `llm.prediction.input`: the SDKs LM Studio ships (1.5) validate that one type, and would refuse
/// the others (`GET /logs` has them all).
async fn stream_logs(state: &AppState, id: i64, out: &Out, stop: &Notify) -> Result<(), lmstudio::Error> {
    #[derive(serde::Serialize)]
    struct Log<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        log: &'a crate::logs::LogEvent,
    }
    let (_, mut rx) = state.metrics().logs.subscribe(false);
    loop {
        let event = tokio::select! {
            event = crate::logs::next(&mut rx) => event,
            () = stop.notified() => {
                out.close(id);
                break;
            }
        };
        let Some(event) = event else { break };
        if !matches!(event.data, crate::logs::LogData::Input { .. }) {
            continue;
        }
        if !out.channel(id, &Log { kind: "log", log: &event }) {
            break;
        }
    }
    Ok(())
}

async fn predict(
    state: &AppState,
    id: i64,
    parameter: PredictParameter,
    out: &Out,
    open_channels: &OpenChannels,
) -> Result<(), lmstudio::Error> {
    // A query loads the model if needed (JIT, as LM Studio); an instance reference does not.
    let spec = &parameter.model_specifier;
    let llm = match (spec, spec.name()) {
        (ModelSpecifier::Query { .. }, Some(query)) => state.client().llm_async(query).await?,
        _ => loaded_by_specifier(state, spec)?,
    };
    let mut layers: KvStack = parameter.prediction_config_stack;
    if let Some(name) = parameter.fuzzy_preset_identifier {
        // Under the request's own layers: what they set wins.
        let preset = tokio::task::spawn_blocking(move || lmstudio::PresetStore::from_env().find(&name))
            .await
            .map_err(|e| lmstudio::Error::Engine(format!("preset task failed: {e}")))??;
        layers.layers.push(wire::KvLayer { layer_name: "preset".into(), config: preset.fields });
    }
    let config = layers.prediction_config()?;
    let messages = parameter.history.chat_messages();
    let stream = if layers.is_raw_completion() {
        let prompt: String = messages.iter().map(|m| m.content.as_str()).collect();
        llm.complete_stream_async(&prompt, config.clone()).await?
    } else {
        llm.respond_stream_async(&messages.into(), config.clone()).await?
    };
    let progress_out = out.clone();
    let mut stream = stream.on_prompt_processing_progress(move |progress| {
        progress_out.channel(id, &PredictMessage::PromptProcessingProgress { progress });
    });
    lock(open_channels).insert(id, Some(Stopper::Prediction(stream.cancel_handle())));
    while let Some(fragment) = stream.next().await {
        let fragment = fragment?;
        if !out.channel(id, &PredictMessage::Fragment { fragment: (&fragment).into() }) {
            return Ok(()); // the socket is gone; dropping the stream stops the prediction
        }
    }
    let result = stream.result()?;
    state.metrics().record(&result);
    // Calls are known whole once the answer is: each goes out as the SDKs' generation events.
    for call in &result.tool_calls {
        let request = wire::protocol::ToolCallRequest::from(call);
        let messages = [
            PredictMessage::ToolCallGenerationStart { tool_call_id: Some(call.id.clone()) },
            PredictMessage::ToolCallGenerationNameReceived { name: call.name.clone() },
            PredictMessage::ToolCallGenerationArgumentFragmentGenerated { content: call.arguments.clone() },
            PredictMessage::ToolCallGenerationEnd { tool_call_request: request },
        ];
        for message in &messages {
            out.channel(id, message);
        }
    }
    out.channel(
        id,
        &PredictMessage::Success {
            stats: Box::new(result.stats),
            model_info: Box::new(result.model_info),
            load_model_config: load_fields("llm", &llm),
            prediction_config: wire::prediction_fields(&config),
        },
    );
    out.close(id);
    Ok(())
}
