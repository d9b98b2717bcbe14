//! The remote backend: LM Studio's SDK protocol over a websocket, to our server or a real LM Studio.
//!
//! One IO thread per connection owns the (blocking) websocket: it writes queued messages, reads with
//! a short timeout, and routes each incoming message to the RPC call or channel it belongs to.
//! Predictions are turned into the same [`Event`]s the embedded engine sends, so the streams,
//! callbacks and results work unchanged. No async runtime is involved.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use crate::lock;
use crate::types::config::Config;
use crate::types::error::{Error, Result};
use crate::types::event::{Event, LoadEvent, OnLoad};
use crate::types::result::{Fragment, ModelInfo, PredictionResult, Stats};
use crate::wire;

/// How long the IO thread waits for input before looking at its outgoing queue again.
const POLL: Duration = Duration::from_millis(2);

/// What the IO thread does with the messages of one channel: `false` means the channel is done.
type ChannelSink = Box<dyn FnMut(&Value) -> bool + Send>;

struct Route {
    sink: ChannelSink,
    /// For predictions: set by the consumer to cancel; the IO thread sends `cancel` once.
    cancel: Option<(Arc<AtomicBool>, bool)>,
}

/// A live connection to the `/llm` namespace.
pub(crate) struct Connection {
    outgoing: flume::Sender<Value>,
    next_call: AtomicI64,
    next_channel: AtomicI64,
    calls: Arc<Mutex<HashMap<i64, flume::Sender<Result<Value>>>>>,
    channels: Arc<Mutex<HashMap<i64, Route>>>,
    alive: Arc<AtomicBool>,
}

fn conn_err(e: impl std::fmt::Display) -> Error {
    Error::Connection(e.to_string())
}

impl Connection {
    /// Connects to `host` (`"127.0.0.1:1234"`) and authenticates; `passkey` is the server's API key,
    /// if it has one.
    pub(crate) fn open(host: &str, passkey: Option<&str>) -> Result<Self> {
        let tcp = TcpStream::connect(host).map_err(|e| conn_err(format!("{host}: {e}")))?;
        tcp.set_nodelay(true).map_err(conn_err)?;
        let (mut ws, _) = tungstenite::client(format!("ws://{host}/llm"), tcp).map_err(conn_err)?;
        let id = random_id();
        let auth = json!({"authVersion": 1, "clientIdentifier": id, "clientPasskey": passkey.unwrap_or(&id)});
        ws.send(Message::text(auth.to_string())).map_err(conn_err)?;
        let reply: Value = match ws.read().map_err(conn_err)? {
            Message::Text(t) => serde_json::from_str(&t).map_err(conn_err)?,
            other => return Err(conn_err(format!("unexpected reply to authentication: {other:?}"))),
        };
        if reply["success"] != true {
            return Err(conn_err(format!("authentication failed: {}", reply["error"])));
        }
        ws.get_mut().set_read_timeout(Some(POLL)).map_err(conn_err)?;
        let (outgoing, queue) = flume::unbounded();
        let conn = Self {
            outgoing,
            next_call: AtomicI64::new(1),
            next_channel: AtomicI64::new(1),
            calls: Arc::default(),
            channels: Arc::default(),
            alive: Arc::new(AtomicBool::new(true)),
        };
        let (calls, channels, alive) = (Arc::clone(&conn.calls), Arc::clone(&conn.channels), Arc::clone(&conn.alive));
        std::thread::Builder::new()
            .name(format!("lms-remote-{host}"))
            .spawn(move || io_loop(ws, queue, &calls, &channels, &alive))
            .map_err(conn_err)?;
        Ok(conn)
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Calls an RPC endpoint and waits for its result.
    pub(crate) fn rpc(&self, endpoint: &str, parameter: Option<Value>) -> Result<Value> {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = flume::bounded(1);
        lock(&self.calls).insert(id, tx);
        let mut msg = json!({"type": "rpcCall", "endpoint": endpoint, "callId": id});
        if let Some(p) = parameter {
            msg["parameter"] = p;
        }
        self.outgoing.send(msg).map_err(|_| conn_err("the connection is closed"))?;
        rx.recv().map_err(|_| conn_err("the connection closed during the call"))?
    }

    /// Opens a channel whose messages go to `sink`.
    fn channel(
        &self,
        endpoint: &str,
        parameter: Value,
        sink: ChannelSink,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Result<()> {
        let id = self.next_channel.fetch_add(1, Ordering::Relaxed);
        lock(&self.channels).insert(id, Route { sink, cancel: cancel.map(|c| (c, false)) });
        let msg =
            json!({"type": "channelCreate", "endpoint": endpoint, "channelId": id, "creationParameter": parameter});
        self.outgoing.send(msg).map_err(|_| conn_err("the connection is closed"))
    }

    /// Opens a load channel (`getOrLoad` or `loadModel`) and waits for the instance info.
    pub(crate) fn load(&self, endpoint: &str, parameter: Value, on_load: &OnLoad) -> Result<ModelInfo> {
        let (tx, rx) = flume::bounded(1);
        let on_load = on_load.clone();
        let sink: ChannelSink = Box::new(move |msg| match msg["type"].as_str() {
            Some("progress" | "loadProgress") => {
                on_load(LoadEvent::Progress(msg["progress"].as_f64().unwrap_or(0.0) as f32));
                true
            }
            Some("unloadingOtherJITModel") => {
                if let Ok(info) = serde_json::from_value::<ModelInfo>(msg["info"].clone()) {
                    on_load(LoadEvent::UnloadingOther(Box::new(info)));
                }
                true
            }
            Some("alreadyLoaded" | "loadSuccess" | "success") => {
                let _ = tx.send(serde_json::from_value::<ModelInfo>(msg["info"].clone()).map_err(conn_err));
                false
            }
            Some("channelError") => {
                let _ = tx.send(Err(wire::error_from_object(&msg["error"])));
                false
            }
            _ => true,
        });
        self.channel(endpoint, parameter, sink, None)?;
        rx.recv().map_err(|_| conn_err("the connection closed while loading"))?
    }

    /// Starts a prediction: a raw completion of `input`'s one message, or a chat reply to its
    /// messages (the server applies the model's template); events arrive on `events` as from the
    /// embedded engine.
    pub(crate) fn predict(
        &self,
        specifier: Value,
        input: &crate::client::Input<'_>,
        config: &Config,
        events: flume::Sender<Event>,
        cancel: Arc<AtomicBool>,
    ) -> Result<()> {
        let mut layers = vec![json!({"layerName": "apiOverride", "config": wire::prediction_fields(config)})];
        let messages: Vec<Value> = match input {
            crate::client::Input::Raw(prompt) => {
                layers.push(json!({"layerName": wire::COMPLETE_MODE_LAYER, "config": {"fields": [{"key": "llm.prediction.promptTemplate", "value": {
                    "type": "jinja", "stopStrings": [],
                    "jinjaPromptTemplate": {"template": "{% for message in messages %}{{ message['content'] }}{% endfor %}", "bosToken": "", "eosToken": ""}}}]}}));
                vec![json!({"role": "user", "content": [{"type": "text", "text": prompt}]})]
            }
            crate::client::Input::Chat(chat) => {
                chat.iter().map(|m| json!({"role": m.role, "content": [{"type": "text", "text": m.content}]})).collect()
            }
        };
        let mut parameter = json!({
            "modelSpecifier": specifier,
            "history": {"messages": messages},
            "predictionConfigStack": {"layers": layers},
        });
        if let Some(preset) = &config.preset {
            parameter["fuzzyPresetIdentifier"] = json!(preset);
        }
        let mut first = true;
        let mut content = String::new();
        let sink: ChannelSink = Box::new(move |msg| {
            let event = match msg["type"].as_str() {
                Some("promptProcessingProgress") => {
                    Event::PromptProgress(msg["progress"].as_f64().unwrap_or(0.0) as f32)
                }
                Some("fragment") => match serde_json::from_value::<Fragment>(msg["fragment"].clone()) {
                    Ok(f) => {
                        if std::mem::take(&mut first) && events.send(Event::FirstToken).is_err() {
                            return false;
                        }
                        content.push_str(&f.content);
                        Event::Fragment(f)
                    }
                    Err(e) => Event::Done(Box::new(Err(conn_err(e)))),
                },
                Some("success") => Event::Done(Box::new(success(msg, std::mem::take(&mut content)))),
                Some("error" | "channelError") => Event::Done(Box::new(Err(wire::error_from_object(&msg["error"])))),
                _ => return true,
            };
            let done = matches!(event, Event::Done(_));
            events.send(event).is_ok() && !done
        });
        self.channel("predict", parameter, sink, Some(cancel))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
    }
}

fn success(msg: &Value, content: String) -> Result<PredictionResult> {
    let stats: Stats = serde_json::from_value(msg["stats"].clone()).map_err(conn_err)?;
    let model_info: ModelInfo = serde_json::from_value(msg["modelInfo"].clone()).map_err(conn_err)?;
    Ok(PredictionResult { content, model_info, stats, logprobs: Vec::new() })
}

fn io_loop(
    mut ws: WebSocket<TcpStream>,
    queue: flume::Receiver<Value>,
    calls: &Mutex<HashMap<i64, flume::Sender<Result<Value>>>>,
    channels: &Mutex<HashMap<i64, Route>>,
    alive: &AtomicBool,
) {
    'run: while alive.load(Ordering::Relaxed) {
        // Cancels asked for since the last round, and consumers that went away.
        for (id, route) in lock(channels).iter_mut() {
            if let Some((flag, sent)) = &mut route.cancel {
                if !*sent && flag.load(Ordering::Relaxed) {
                    *sent = true;
                    let msg = json!({"type": "channelSend", "channelId": id, "message": {"type": "cancel"}});
                    if ws.send(Message::text(msg.to_string())).is_err() {
                        break 'run;
                    }
                }
            }
        }
        while let Ok(msg) = queue.try_recv() {
            if ws.send(Message::text(msg.to_string())).is_err() {
                break 'run;
            }
        }
        match ws.read() {
            Ok(Message::Text(text)) => {
                let Ok(msg) = serde_json::from_str::<Value>(&text) else { continue };
                route(&msg, calls, channels);
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => {
                tracing::debug!("remote connection ended: {e}");
                break;
            }
        }
    }
    alive.store(false, Ordering::Relaxed);
    // Everything still waiting learns that the connection is gone.
    lock(calls).clear();
    for (_, mut route) in lock(channels).drain() {
        (route.sink)(&json!({"type": "channelError", "error": {"title": "the connection to the server was lost"}}));
    }
}

fn route(
    msg: &Value,
    calls: &Mutex<HashMap<i64, flume::Sender<Result<Value>>>>,
    channels: &Mutex<HashMap<i64, Route>>,
) {
    if let Some(id) = msg["channelId"].as_i64() {
        let mut channels = lock(channels);
        let keep = match (msg["type"].as_str(), channels.get_mut(&id)) {
            (Some("channelSend"), Some(r)) => (r.sink)(&msg["message"]),
            (Some("channelError"), Some(r)) => (r.sink)(&json!({"type": "channelError", "error": msg["error"]})),
            (Some("channelClose"), Some(r)) => {
                (r.sink)(
                    &json!({"type": "channelError", "error": {"title": "the server closed the channel without a result"}}),
                );
                false
            }
            _ => true,
        };
        if !keep {
            channels.remove(&id);
        }
    } else if let Some(id) = msg["callId"].as_i64() {
        if let Some(tx) = lock(calls).remove(&id) {
            let result = match msg["type"].as_str() {
                Some("rpcResult") => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
                _ => Err(wire::error_from_object(&msg["error"])),
            };
            let _ = tx.send(result);
        }
    }
}

fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let (mut a, mut b) = (state.build_hasher(), state.build_hasher());
    a.write_u8(1);
    b.write_u8(2);
    format!("{:016x}{:016x}", a.finish(), b.finish())
}
