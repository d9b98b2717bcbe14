//! LM Studio's SDK protocol: one websocket per namespace (`/llm`, `/system`, ...), an auth
//! handshake, then multiplexed RPC calls and channels (see shared/reference/lmstudio-sdk-protocol.md).
//!
//! Every message out goes through one writer task; each RPC and channel runs in a task of its own,
//! so a long prediction never holds up a `tokenize` on the same socket. When the socket closes, the
//! session's tasks are aborted and dropping their prediction streams stops generation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use lms::wire::{self, KvStack};
use lmstudio as lms;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;

use crate::{lock, AppState};

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
        Err(e) => crate::ApiError::bad_request(format!("/{namespace} is a websocket endpoint: {e}")).into_response(),
    }
}

/// Outgoing messages of one socket.
#[derive(Clone)]
struct Out(UnboundedSender<Value>);

impl Out {
    fn send(&self, v: Value) -> bool {
        self.0.send(v).is_ok()
    }

    fn channel(&self, id: i64, message: Value) -> bool {
        self.send(json!({"type": "channelSend", "channelId": id, "message": message}))
    }

    fn close(&self, id: i64) {
        self.send(json!({"type": "channelClose", "channelId": id}));
    }

    fn channel_error(&self, id: i64, e: &lms::Error) {
        self.send(json!({"type": "channelError", "channelId": id, "error": wire::error_object(e)}));
    }
}

/// The channels open on one socket, with the cancel handle of those that run a prediction.
type Cancels = Arc<Mutex<HashMap<i64, Option<lms::CancelHandle>>>>;

/// Channels one socket may have open at once; past that, a new one is refused.
const MAX_OPEN_CHANNELS: usize = 256;

async fn session(socket: WebSocket, namespace: String, state: AppState) {
    let (mut sink, mut incoming) = socket.split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(async move {
        while let Some(v) = rx.recv().await {
            if sink.send(Message::Text(v.to_string().into())).await.is_err() {
                break;
            }
        }
    });
    let out = Out(tx);
    if authenticate(&mut incoming, &out, &state).await {
        let cancels: Cancels = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(Ok(frame)) = incoming.next().await {
            let text = match frame {
                Message::Text(t) => t.to_string(),
                Message::Close(_) => break,
                _ => continue,
            };
            match serde_json::from_str::<Value>(&text) {
                Ok(msg) => dispatch(msg, &namespace, &state, &out, &cancels, &mut tasks),
                Err(e) => {
                    out.send(json!({"type": "communicationWarning", "warning": format!("malformed message: {e}")}));
                }
            }
            while tasks.try_join_next().is_some() {}
        }
        // The client is gone: abort its work; dropped prediction streams stop their sequences.
        tasks.abort_all();
    }
    drop(out);
    let _ = writer.await;
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Auth {
    auth_version: i64,
    client_identifier: String,
    client_passkey: String,
}

async fn authenticate(
    incoming: &mut futures_util::stream::SplitStream<WebSocket>,
    out: &Out,
    state: &AppState,
) -> bool {
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), incoming.next()).await;
    let verdict = match first {
        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<Auth>(&t) {
            Ok(a) if a.auth_version != 1 => Err(format!("unsupported authVersion {}", a.auth_version)),
            Ok(a) if a.client_identifier.len() > 256 || a.client_passkey.len() > 256 => {
                Err("credentials too long".into())
            }
            Ok(a) if !state.key_matches(Some(&a.client_passkey)) => {
                Err("invalid API key (send it as the client passkey)".into())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(format!("malformed authentication packet: {e}")),
        },
        _ => Err("expected an authentication packet".into()),
    };
    match verdict {
        Ok(()) => out.send(json!({"success": true})),
        Err(e) => {
            out.send(json!({"success": false, "error": e}));
            false
        }
    }
}

fn dispatch(
    msg: Value,
    namespace: &str,
    state: &AppState,
    out: &Out,
    cancels: &Cancels,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let kind = msg["type"].as_str().unwrap_or_default();
    match kind {
        "rpcCall" => {
            let Some(call_id) = msg["callId"].as_i64() else {
                out.send(json!({"type": "communicationWarning", "warning": "rpcCall without callId"}));
                return;
            };
            let endpoint = msg["endpoint"].as_str().unwrap_or_default().to_owned();
            let (state, out, ns) = (state.clone(), out.clone(), namespace.to_owned());
            let parameter = msg.get("parameter").cloned().unwrap_or(Value::Null);
            tasks.spawn(async move {
                // The library's calls block (header reads, engine joins): never on the runtime.
                let outcome = tokio::task::spawn_blocking(move || rpc(&state, &ns, &endpoint, parameter))
                    .await
                    .unwrap_or_else(|e| Err(lms::Error::Engine(format!("rpc task failed: {e}"))));
                match outcome {
                    Ok(Some(result)) => out.send(json!({"type": "rpcResult", "callId": call_id, "result": result})),
                    Ok(None) => out.send(json!({"type": "rpcResult", "callId": call_id})),
                    Err(e) => out.send(json!({"type": "rpcError", "callId": call_id, "error": wire::error_object(&e)})),
                };
            });
        }
        "channelCreate" => {
            let Some(id) = msg["channelId"].as_i64() else {
                out.send(json!({"type": "communicationWarning", "warning": "channelCreate without channelId"}));
                return;
            };
            {
                let mut open = lock(cancels);
                if open.contains_key(&id) {
                    // Not a channelError: that would end the open channel of that id at the client.
                    let warning = format!("channelCreate refused: channel {id} is already open on this connection");
                    out.send(json!({"type": "communicationWarning", "warning": warning}));
                    return;
                }
                if open.len() >= MAX_OPEN_CHANNELS {
                    let why = format!("more than {MAX_OPEN_CHANNELS} channels open on this connection");
                    out.channel_error(id, &invalid(why));
                    return;
                }
                open.insert(id, None);
            }
            let endpoint = msg["endpoint"].as_str().unwrap_or_default().to_owned();
            if !CHANNEL_ENDPOINTS.contains(&endpoint.as_str()) {
                // As LM Studio: a warning, and the channel is never answered.
                lock(cancels).remove(&id);
                let warning = format!("channelCreate for unknown endpoint {endpoint:?} (channel {id})");
                out.send(json!({"type": "communicationWarning", "warning": warning}));
                return;
            }
            let parameter = msg.get("creationParameter").cloned().unwrap_or(Value::Null);
            let (state, out, cancels) = (state.clone(), out.clone(), Arc::clone(cancels));
            tasks.spawn(async move {
                if let Err(e) = channel(&state, &endpoint, id, parameter, &out, &cancels).await {
                    out.channel_error(id, &e);
                }
                lock(&cancels).remove(&id);
            });
        }
        "channelSend" => {
            // The JS SDK sends its cancel twice; the second finds the prediction cancelled or gone.
            if msg["message"]["type"] == "cancel" {
                if let Some(handle) = msg["channelId"].as_i64().and_then(|id| lock(cancels).get(&id).cloned().flatten())
                {
                    handle.cancel();
                }
            }
        }
        "communicationWarning" => {
            // The client found a message of ours it could not take: a bug of ours, so it counts.
            state.metrics().client_warnings.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(warning = msg["warning"].as_str().unwrap_or_default(), "the client warns");
        }
        "keepAlive" => {
            out.send(json!({"type": "keepAliveAck"}));
        }
        "signalSubscribe" | "writableSignalSubscribe" => {
            let kind = if kind == "signalSubscribe" { "signalError" } else { "writableSignalError" };
            let endpoint = msg["endpoint"].as_str().unwrap_or_default();
            let error = wire::error_object(&lms::Error::Unsupported(format!("signal {namespace}/{endpoint}")));
            out.send(json!({"type": kind, "subscribeId": msg["subscribeId"], "error": error}));
        }
        // Acknowledgements and the ends of subscriptions we never opened need no answer.
        "channelClose" | "channelAck" | "signalUnsubscribe" | "writableSignalUnsubscribe" | "writableSignalUpdate" => {}
        other => {
            out.send(json!({"type": "communicationWarning", "warning": format!("unknown message type {other:?}")}));
        }
    }
}

fn invalid(what: impl Into<String>) -> lms::Error {
    lms::Error::InvalidConfig(what.into())
}

/// The instance a `specifier` / `modelSpecifier` names, among loaded models only. An instance
/// reference names one load: once it is unloaded, the model is unloaded for that handle.
fn loaded_by_specifier(state: &AppState, spec: &Value) -> Result<lms::Llm, lms::Error> {
    if spec["type"] == "query" && spec["query"]["identifier"].is_null() && spec["query"]["path"].is_null() {
        // `client.llm.model()` with no key: any loaded model.
        let any = state.client().list_loaded()?.into_iter().find_map(|i| i.identifier);
        let any = any.ok_or_else(|| lms::Error::ModelNotFound { query: String::new(), candidates: Vec::new() })?;
        return state.client().get_loaded(&any)?.ok_or(lms::Error::ModelUnloaded);
    }
    let query = specifier_query(spec)?;
    let found = state.client().get_loaded(&query)?;
    if spec["type"] == "instanceReference" {
        return found.ok_or(lms::Error::ModelUnloaded);
    }
    found.ok_or_else(|| lms::Error::ModelNotFound {
        query,
        candidates: state.client().list_loaded().unwrap_or_default().into_iter().filter_map(|i| i.identifier).collect(),
    })
}

pub(crate) fn specifier_query(spec: &Value) -> Result<String, lms::Error> {
    let q = match spec["type"].as_str() {
        Some("instanceReference") => spec["instanceReference"].as_str(),
        _ => spec["query"]["identifier"].as_str().or_else(|| spec["query"]["path"].as_str()),
    };
    q.map(str::to_owned).ok_or_else(|| invalid(format!("unsupported model specifier {spec}")))
}

pub(crate) fn stack(v: &Value) -> Result<KvStack, lms::Error> {
    if v.is_null() {
        return Ok(KvStack::default());
    }
    serde_json::from_value(v.clone()).map_err(|e| invalid(format!("config stack: {e}")))
}

/// The text of each message of an SDK chat history.
pub(crate) fn history(v: &Value) -> Result<Vec<lms::ChatMessage>, lms::Error> {
    let messages = v["messages"].as_array().ok_or_else(|| invalid("history.messages is missing"))?;
    messages
        .iter()
        .map(|m| {
            let role = m["role"].as_str().ok_or_else(|| invalid("a message has no role"))?;
            let text: String = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => {
                    parts.iter().filter(|p| p["type"] == "text").filter_map(|p| p["text"].as_str()).collect()
                }
                _ => return Err(invalid("a message has no content")),
            };
            Ok(lms::ChatMessage::new(role, text))
        })
        .collect()
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn rpc(state: &AppState, namespace: &str, endpoint: &str, p: Value) -> Result<Option<Value>, lms::Error> {
    let client = state.client();
    Ok(Some(match (namespace, endpoint) {
        ("llm", "listLoaded") => to_value(&client.list_loaded()?),
        ("embedding", "listLoaded") => json!([]),
        ("system", "listDownloadedModels") => {
            let infos: Vec<lms::ModelInfo> =
                client.list_downloaded()?.into_iter().filter_map(|m| m.info.ok()).collect();
            to_value(&infos)
        }
        ("system", "version") => json!({"version": env!("CARGO_PKG_VERSION"), "build": 0}),
        ("llm", "getModelInfo") => match loaded_by_specifier(state, &p["specifier"]) {
            Ok(llm) => to_value(llm.info()),
            // Not found, and not asked to throw: no result at all (the JS SDK takes no `null`).
            Err(_) if p["throwIfNotFound"] == false => return Ok(None),
            Err(e) => return Err(e),
        },
        ("llm", "tokenize") => {
            let text = p["inputString"].as_str().ok_or_else(|| invalid("inputString is missing"))?;
            json!({"tokens": loaded_by_specifier(state, &p["specifier"])?.tokenize(text)?})
        }
        ("llm", "countTokens") => {
            let text = p["inputString"].as_str().ok_or_else(|| invalid("inputString is missing"))?;
            json!({"tokenCount": loaded_by_specifier(state, &p["specifier"])?.count_tokens(text)?})
        }
        ("llm", "getLoadConfig") => load_fields(&loaded_by_specifier(state, &p["specifier"])?),
        ("llm", "applyPromptTemplate") => {
            let llm = loaded_by_specifier(state, &p["specifier"])?;
            json!({"formatted": llm.apply_prompt_template(&history(&p["history"])?)?})
        }
        ("llm", "unloadModel") => {
            let id = p["identifier"].as_str().ok_or_else(|| invalid("identifier is missing"))?;
            client.unload(id)?;
            return Ok(None);
        }
        _ => return Err(invalid(format!("unknown endpoint {namespace}/{endpoint}"))),
    }))
}

fn load_fields(llm: &lms::Llm) -> Value {
    json!({"fields": [{"key": "llm.load.contextLength", "value": llm.info().context_length}]})
}

/// The channel endpoints [`channel`] serves.
const CHANNEL_ENDPOINTS: &[&str] = &["getOrLoad", "loadModel", "predict"];

async fn channel(
    state: &AppState,
    endpoint: &str,
    id: i64,
    p: Value,
    out: &Out,
    cancels: &Cancels,
) -> Result<(), lms::Error> {
    let client = state.client().clone();
    match endpoint {
        "getOrLoad" | "loadModel" => {
            let new_instance = endpoint == "loadModel";
            let query = p[if new_instance { "modelKey" } else { "identifier" }]
                .as_str()
                .ok_or_else(|| invalid("no model named"))?
                .to_owned();
            if !new_instance {
                if let Some(llm) = client.get_loaded(&query)? {
                    out.channel(id, json!({"type": "alreadyLoaded", "info": llm.info()}));
                    out.close(id);
                    return Ok(());
                }
            }
            // What the SDK's stack leaves unset, the server's own load settings decide (its --parallel).
            let mut load = stack(&p["loadConfigStack"])?.load_config(client.default_load_config())?;
            load.identifier = p["identifier"].as_str().filter(|_| new_instance).map(str::to_owned);
            // The SDKs' `ttl` (seconds) arrives in milliseconds, under a name of each endpoint's own.
            let ttl_ms = &p[if new_instance { "ttlMs" } else { "loadTtlMs" }];
            if !ttl_ms.is_null() {
                let ms = ttl_ms.as_f64().filter(|ms| *ms > 0.0).ok_or_else(|| invalid(format!("bad TTL: {ttl_ms}")))?;
                load.ttl = Some((ms / 1000.0).ceil() as u64);
            }
            if let Ok(info) = client.resolve_async(&query).await {
                let start = if new_instance {
                    json!({"type": "resolved", "info": info})
                } else {
                    json!({"type": "startLoading", "identifier": info.model_key, "info": info})
                };
                out.channel(id, start);
            }
            let events = out.clone();
            let on_load: lms::OnLoad = std::sync::Arc::new(move |event| match event {
                lms::LoadEvent::Progress(progress) => {
                    let kind = if new_instance { "progress" } else { "loadProgress" };
                    events.channel(id, json!({"type": kind, "progress": progress}));
                }
                lms::LoadEvent::UnloadingOther(info) => {
                    events.channel(id, json!({"type": "unloadingOtherJITModel", "info": info}));
                }
            });
            let llm = if new_instance {
                client.load_with_async(&query, &load, &on_load).await?
            } else {
                client.get_or_load_with_async(&query, &load, &on_load).await?.0
            };
            let done = if new_instance { "success" } else { "loadSuccess" };
            out.channel(id, json!({"type": done, "info": llm.info()}));
            out.close(id);
            Ok(())
        }
        "predict" => predict(state, id, p, out, cancels).await,
        other => Err(invalid(format!("unknown channel endpoint {other}"))),
    }
}

async fn predict(state: &AppState, id: i64, p: Value, out: &Out, cancels: &Cancels) -> Result<(), lms::Error> {
    // A query loads the model if needed (JIT, as LM Studio); an instance reference does not.
    let spec = &p["modelSpecifier"];
    let llm = if spec["type"] == "instanceReference" {
        loaded_by_specifier(state, spec)?
    } else {
        state.client().llm_async(&specifier_query(spec)?).await?
    };
    let mut layers = stack(&p["predictionConfigStack"])?;
    if let Some(name) = p["fuzzyPresetIdentifier"].as_str() {
        // Under the request's own layers: what they set wins.
        let preset = tokio::task::spawn_blocking({
            let name = name.to_owned();
            move || lms::PresetStore::from_env().find(&name)
        })
        .await
        .map_err(|e| lms::Error::Engine(format!("preset task failed: {e}")))??;
        layers.layers.push(wire::KvLayer { layer_name: "preset".into(), config: preset.fields });
    }
    let config = layers.prediction_config()?;
    let messages = history(&p["history"])?;
    let prompt = if layers.is_raw_completion() {
        messages.iter().map(|m| m.content.as_str()).collect()
    } else {
        llm.apply_prompt_template_async(&messages).await?
    };
    let progress_out = out.clone();
    let mut stream =
        crate::start_prediction(&llm, prompt, config.clone()).await?.on_prompt_processing_progress(move |progress| {
            progress_out.channel(id, json!({"type": "promptProcessingProgress", "progress": progress}));
        });
    lock(cancels).insert(id, Some(stream.cancel_handle()));
    while let Some(fragment) = stream.next().await {
        let fragment = fragment?;
        let message = json!({"type": "fragment", "fragment": {
            "content": fragment.content, "tokensCount": fragment.tokens_count,
            "containsDrafted": false, "reasoningType": "none", "isStructural": false}});
        if !out.channel(id, message) {
            return Ok(()); // the socket is gone; dropping the stream stops the prediction
        }
    }
    let result = stream.result()?;
    state.metrics().record(&result);
    out.channel(
        id,
        json!({
            "type": "success",
            "stats": result.stats,
            "modelInfo": result.model_info,
            "loadModelConfig": load_fields(&llm),
            "predictionConfig": wire::prediction_fields(&config),
        }),
    );
    out.close(id);
    Ok(())
}
