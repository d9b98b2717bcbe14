//! The remote backend: LM Studio's SDK protocol ([`wire::protocol`]) over a websocket, to our
//! server or a real LM Studio.
//!
//! One IO thread per connection owns the websocket and sleeps in the OS (epoll and the like,
//! through `mio`) until the socket has something or another thread wakes it: to write a message,
//! or to pass on a cancel. Incoming messages go to the RPC call or channel they belong to.
//! Predictions become the same [`Event`]s the embedded engine sends, so streams, callbacks and
//! results work unchanged. Every RPC has a timeout; a connection that drops fails every call and
//! channel waiting on it at once. No async runtime is involved.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::Value;
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message, WebSocket};

use crate::types::config::{Config, LoadConfig};
use crate::types::error::{Error, Result};
use crate::types::event::{Cancel, Event, Input, LoadEvent, OnLoad};
use crate::types::result::{ChatMessage, Fragment, ModelInfo, PredictionResult, ReasoningType};
use crate::types::sync::lock;
use crate::wire::protocol::{
    self, ApplyPromptTemplate, ApplyPromptTemplateParameter, Auth, AuthReply, ChannelInput, ChatHistory, ClientMessage,
    CountTokens, EmbedString, EmbedStringParameter, GetOrLoadParameter, ListLoaded, LoadMessage, LoadModelParameter,
    ModelSpecifier, PredictMessage, PredictParameter, Rpc, ServerMessage, TextParameter, Tokenize, UnloadModel,
    UnloadModelParameter,
};
use crate::wire::{self, KvStack};

/// How a remote client connects: its key and how long it waits.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// The server's API key (sent as the client passkey); `$LMS_API_KEY` by default.
    pub passkey: Option<String>,
    /// How long an RPC (tokenize, list, unload...) may take before it fails with
    /// [`Error::Timeout`]; loads and predictions stream and have no such limit.
    pub rpc_timeout: Duration,
    /// How long connecting and authenticating may take.
    pub connect_timeout: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            passkey: std::env::var("LMS_API_KEY").ok(),
            rpc_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A server, and the connection to it (made on first use, made again once lost).
pub(crate) struct Remote {
    host: String,
    options: RemoteOptions,
    /// A connection per [`Namespace`], in its order.
    connections: [Mutex<Option<Arc<Connection>>>; 2],
}

/// LM Studio's namespaces this client speaks, one websocket each.
#[derive(Clone, Copy)]
enum Namespace {
    Llm,
    Embedding,
}

impl Namespace {
    fn path(self) -> &'static str {
        match self {
            Self::Llm => "llm",
            Self::Embedding => "embedding",
        }
    }
}

impl Remote {
    pub(crate) fn new(host: String, options: RemoteOptions) -> Self {
        Self { host, options, connections: Default::default() }
    }

    /// The live `/llm` connection, reconnecting if the last one was lost.
    pub(crate) fn connection(&self) -> Result<Arc<Connection>> {
        self.connection_to(Namespace::Llm)
    }

    /// The live connection to `namespace`, reconnecting if the last one was lost.
    fn connection_to(&self, namespace: Namespace) -> Result<Arc<Connection>> {
        let mut slot = lock(&self.connections[namespace as usize]);
        if let Some(c) = slot.as_ref().filter(|c| c.is_alive()) {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(Connection::open(&self.host, namespace.path(), &self.options)?);
        *slot = Some(Arc::clone(&c));
        Ok(c)
    }

    /// LM Studio's `embedString`: the vector of `text`, from the `/embedding` namespace.
    pub(crate) fn embed_string(&self, model_specifier: ModelSpecifier, text: &str) -> Result<Vec<f32>> {
        let parameter = EmbedStringParameter { model_specifier, input_string: text.to_owned() };
        Ok(self.connection_to(Namespace::Embedding)?.call::<EmbedString>(&parameter)?.embedding)
    }

    pub(crate) fn list_loaded(&self) -> Result<Vec<ModelInfo>> {
        self.connection()?.call::<ListLoaded>(&protocol::Nothing)
    }

    /// LM Studio's `getOrLoad`.
    pub(crate) fn get_or_load(&self, query: &str, config: &LoadConfig, on_load: &OnLoad) -> Result<ModelInfo> {
        let parameter = GetOrLoadParameter {
            identifier: query.to_owned(),
            load_config_stack: wire::load_stack(config),
            load_ttl_ms: ttl_ms(config),
        };
        self.connection()?.load("getOrLoad", protocol::encode(&parameter), on_load)
    }

    /// LM Studio's `loadModel`: a new instance.
    pub(crate) fn load(&self, query: &str, config: &LoadConfig, on_load: &OnLoad) -> Result<ModelInfo> {
        let parameter = LoadModelParameter {
            model_key: query.to_owned(),
            identifier: config.identifier.clone(),
            load_config_stack: wire::load_stack(config),
            ttl_ms: ttl_ms(config),
        };
        self.connection()?.load("loadModel", protocol::encode(&parameter), on_load)
    }

    pub(crate) fn unload(&self, identifier: &str) -> Result<()> {
        self.connection()?.call::<UnloadModel>(&UnloadModelParameter { identifier: identifier.to_owned() })?;
        Ok(())
    }

    pub(crate) fn count_tokens(&self, specifier: ModelSpecifier, text: &str) -> Result<usize> {
        let parameter = TextParameter { specifier, input_string: text.to_owned() };
        Ok(self.connection()?.call::<CountTokens>(&parameter)?.token_count)
    }

    pub(crate) fn tokenize(&self, specifier: ModelSpecifier, text: &str) -> Result<Vec<i32>> {
        let parameter = TextParameter { specifier, input_string: text.to_owned() };
        Ok(self.connection()?.call::<Tokenize>(&parameter)?.tokens)
    }

    pub(crate) fn apply_prompt_template(&self, specifier: ModelSpecifier, messages: &[ChatMessage]) -> Result<String> {
        let parameter = ApplyPromptTemplateParameter {
            specifier,
            history: ChatHistory::of(messages),
            prediction_config_stack: KvStack::default(),
            opts: Value::Object(serde_json::Map::new()),
        };
        Ok(self.connection()?.call::<ApplyPromptTemplate>(&parameter)?.formatted)
    }

    /// Starts a prediction: a raw completion of `input`'s one message, or a chat reply to its
    /// messages (the server applies the model's template); events arrive on `events` as from the
    /// embedded engine. The [`Cancel`] it returns wakes the IO thread to pass the cancel on.
    pub(crate) fn predict(
        &self,
        specifier: ModelSpecifier,
        input: &Input<'_>,
        config: &Config,
        events: flume::Sender<Event>,
    ) -> Result<Cancel> {
        let (history, stack) = match input {
            Input::Raw(prompt) => {
                (ChatHistory::of(&[ChatMessage::new("user", *prompt)]), wire::raw_completion_stack(config))
            }
            Input::Chat(chat) => (ChatHistory::of(chat), KvStack::of("apiOverride", wire::prediction_fields(config))),
        };
        let parameter = PredictParameter {
            model_specifier: specifier,
            history,
            prediction_config_stack: stack,
            fuzzy_preset_identifier: config.preset.clone(),
        };
        let mut first = true;
        let mut content = String::new();
        let mut tool_calls = Vec::new();
        let mut reasoning = String::new();
        let sink: ChannelSink = Box::new(move |incoming| {
            let message =
                incoming.and_then(|m| protocol::decode::<PredictMessage>("predict message", m).map_err(malformed));
            let event = match message {
                Ok(PredictMessage::PromptProcessingProgress { progress }) => Event::PromptProgress(progress),
                Ok(PredictMessage::Fragment { fragment }) => {
                    if std::mem::take(&mut first) && events.send(Event::FirstToken).is_err() {
                        return false;
                    }
                    let fragment = Fragment::from(fragment);
                    match fragment.reasoning {
                        ReasoningType::None => content.push_str(&fragment.content),
                        ReasoningType::Reasoning => reasoning.push_str(&fragment.content),
                        ReasoningType::StartTag | ReasoningType::EndTag => {}
                    }
                    Event::Fragment(fragment)
                }
                Ok(PredictMessage::Success { stats, model_info, .. }) => {
                    let content = std::mem::take(&mut content);
                    let result = PredictionResult {
                        content,
                        reasoning_content: std::mem::take(&mut reasoning),
                        model_info: *model_info,
                        stats: *stats,
                        logprobs: Vec::new(),
                        tool_calls: std::mem::take(&mut tool_calls),
                    };
                    Event::Done(Box::new(Ok(result)))
                }
                Ok(PredictMessage::ToolCallGenerationEnd { tool_call_request }) => {
                    tool_calls.push(tool_call_request.into());
                    return true;
                }
                Ok(
                    PredictMessage::Unknown
                    | PredictMessage::ToolCallGenerationStart { .. }
                    | PredictMessage::ToolCallGenerationNameReceived { .. }
                    | PredictMessage::ToolCallGenerationArgumentFragmentGenerated { .. },
                ) => return true,
                Err(e) => Event::Done(Box::new(Err(e))),
            };
            let done = matches!(event, Event::Done(_));
            events.send(event).is_ok() && !done
        });
        let connection = self.connection()?;
        let cancel = connection.cancel_signal();
        connection.open_channel("predict", protocol::encode(&parameter), sink, Some(cancel.clone()))?;
        Ok(cancel)
    }
}

/// The SDKs' TTL: the config's seconds, in milliseconds.
fn ttl_ms(config: &LoadConfig) -> Option<f64> {
    config.ttl.map(|s| s.saturating_mul(1000) as f64)
}

/// What reaches a channel's sink: a message, or the error that ends the channel.
type ChannelSink = Box<dyn FnMut(Result<Value>) -> bool + Send>;

struct Route {
    sink: ChannelSink,
    /// For predictions: raised by the consumer; the IO thread sends `cancel` once.
    cancel: Option<(Cancel, bool)>,
}

/// The calls and channels waiting for the server, and whether the connection is gone (then
/// nothing new is registered: it would wait forever).
#[derive(Default)]
struct Waiting {
    closed: Option<String>,
    calls: HashMap<i64, flume::Sender<Result<Option<Value>>>>,
    channels: HashMap<i64, Route>,
}

/// What the IO thread and the callers share.
struct Shared {
    outgoing: flume::Sender<String>,
    waiting: Mutex<Waiting>,
    waker: Waker,
    /// Cleared when the [`Connection`] is dropped: the IO thread ends.
    wanted: AtomicBool,
}

impl Shared {
    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::warn!("could not wake the remote IO thread: {e}");
        }
    }
}

/// A live connection to one of LM Studio's namespaces (`/llm`, `/embedding`).
pub(crate) struct Connection {
    shared: Arc<Shared>,
    next_id: AtomicI64,
    rpc_timeout: Duration,
}

fn conn_err(e: impl std::fmt::Display) -> Error {
    Error::Connection(e.to_string())
}

fn malformed(e: protocol::DecodeError) -> Error {
    Error::Connection(format!("the server sent a {e}"))
}

const SOCKET: Token = Token(0);
const WAKE: Token = Token(1);

impl Connection {
    /// Connects to `host` (`"127.0.0.1:1234"`) and authenticates.
    fn open(host: &str, namespace: &str, options: &RemoteOptions) -> Result<Self> {
        let deadline = Instant::now() + options.connect_timeout;
        let tcp = connect(host, options.connect_timeout)?;
        tcp.set_nodelay(true).map_err(conn_err)?;
        tcp.set_nonblocking(true).map_err(conn_err)?;
        let mut stream = mio::net::TcpStream::from_std(tcp);
        let mut poll = Poll::new().map_err(conn_err)?;
        poll.registry().register(&mut stream, SOCKET, Interest::READABLE | Interest::WRITABLE).map_err(conn_err)?;
        let waker = Waker::new(poll.registry(), WAKE).map_err(conn_err)?;
        let mut events = Events::with_capacity(16);

        let mut handshake = tungstenite::client(format!("ws://{host}/{namespace}"), stream);
        let mut ws = loop {
            match handshake {
                Ok((ws, _)) => break ws,
                Err(HandshakeError::Interrupted(mid)) => {
                    wait(&mut poll, &mut events, deadline)?;
                    handshake = mid.handshake();
                }
                Err(HandshakeError::Failure(e)) => return Err(conn_err(format!("{host}: {e}"))),
            }
        };
        let id = random_id();
        let auth = Auth {
            auth_version: 1,
            client_identifier: id.clone(),
            client_passkey: options.passkey.clone().unwrap_or(id),
        };
        let reply = authenticate(&mut ws, &auth, &mut poll, &mut events, deadline)?;
        if !reply.success {
            return Err(conn_err(format!("authentication failed: {}", reply.error.unwrap_or_default())));
        }

        let (outgoing, queue) = flume::unbounded();
        let shared = Arc::new(Shared { outgoing, waiting: Mutex::default(), waker, wanted: AtomicBool::new(true) });
        let io = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("lms-remote-{host}"))
            .spawn(move || io_loop(ws, poll, events, &queue, &io))
            .map_err(conn_err)?;
        Ok(Self { shared, next_id: AtomicI64::new(1), rpc_timeout: options.rpc_timeout })
    }

    fn is_alive(&self) -> bool {
        lock(&self.shared.waiting).closed.is_none()
    }

    fn send(&self, message: &ClientMessage) -> Result<()> {
        self.shared.outgoing.send(protocol::encode_text(message)).map_err(|_| conn_err("the connection is closed"))?;
        self.shared.wake();
        Ok(())
    }

    /// A cancel signal that wakes this connection's IO thread.
    fn cancel_signal(&self) -> Cancel {
        let shared = Arc::downgrade(&self.shared);
        Cancel::waking(Arc::new(move || {
            if let Some(shared) = shared.upgrade() {
                shared.wake();
            }
        }))
    }

    /// Calls the RPC endpoint `R` and waits for its result, at most the RPC timeout.
    fn call<R: Rpc>(&self, parameter: &R::Parameter) -> Result<R::Result> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = flume::bounded(1);
        {
            let mut waiting = lock(&self.shared.waiting);
            if let Some(why) = &waiting.closed {
                return Err(conn_err(why));
            }
            waiting.calls.insert(id, tx);
        }
        let parameter = Some(protocol::encode(parameter)).filter(|p| !p.is_null());
        self.send(&ClientMessage::RpcCall { endpoint: R::ENDPOINT.into(), call_id: id, parameter })?;
        let result = match rx.recv_timeout(self.rpc_timeout) {
            Ok(result) => result?,
            Err(flume::RecvTimeoutError::Timeout) => {
                lock(&self.shared.waiting).calls.remove(&id);
                return Err(Error::Timeout { call: R::ENDPOINT.into(), seconds: self.rpc_timeout.as_secs() });
            }
            Err(flume::RecvTimeoutError::Disconnected) => {
                return Err(conn_err("the connection closed during the call"))
            }
        };
        protocol::decode(&format!("{} result", R::ENDPOINT), result.unwrap_or(Value::Null)).map_err(malformed)
    }

    /// Opens a channel whose messages go to `sink`.
    fn open_channel(&self, endpoint: &str, parameter: Value, sink: ChannelSink, cancel: Option<Cancel>) -> Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut waiting = lock(&self.shared.waiting);
            if let Some(why) = &waiting.closed {
                return Err(conn_err(why));
            }
            waiting.channels.insert(id, Route { sink, cancel: cancel.map(|c| (c, false)) });
        }
        self.send(&ClientMessage::ChannelCreate {
            endpoint: endpoint.into(),
            channel_id: id,
            creation_parameter: parameter,
        })
    }

    /// Opens a load channel (`getOrLoad` or `loadModel`) and waits for the instance info.
    fn load(&self, endpoint: &str, parameter: Value, on_load: &OnLoad) -> Result<ModelInfo> {
        let (tx, rx) = flume::bounded(1);
        let on_load = on_load.clone();
        let sink: ChannelSink = Box::new(move |incoming| {
            let message = incoming.and_then(|m| protocol::decode::<LoadMessage>("load message", m).map_err(malformed));
            match message {
                Ok(LoadMessage::Progress { progress } | LoadMessage::LoadProgress { progress }) => {
                    on_load(LoadEvent::Progress(progress));
                    true
                }
                Ok(LoadMessage::UnloadingOtherJitModel { info }) => {
                    on_load(LoadEvent::UnloadingOther(info));
                    true
                }
                Ok(
                    LoadMessage::AlreadyLoaded { info }
                    | LoadMessage::LoadSuccess { info }
                    | LoadMessage::Success { info },
                ) => {
                    let _ = tx.send(Ok(*info));
                    false
                }
                Ok(LoadMessage::Resolved { .. } | LoadMessage::StartLoading { .. } | LoadMessage::Unknown) => true,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    false
                }
            }
        });
        self.open_channel(endpoint, parameter, sink, None)?;
        rx.recv().map_err(|_| conn_err("the connection closed while loading"))?
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.wanted.store(false, Ordering::Relaxed);
        self.shared.wake();
    }
}

/// A TCP connection to the first address of `host` that answers within `timeout`.
fn connect(host: &str, timeout: Duration) -> Result<std::net::TcpStream> {
    let mut last = None;
    for addr in host.to_socket_addrs().map_err(|e| conn_err(format!("{host}: {e}")))? {
        match std::net::TcpStream::connect_timeout(&addr, timeout) {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(conn_err(format!("{host}: {}", last.map_or_else(|| "no address".to_owned(), |e| e.to_string()))))
}

/// Sleeps until the socket or the waker has news, at most until `deadline` (then a timeout).
fn wait(poll: &mut Poll, events: &mut Events, deadline: Instant) -> Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(conn_err("timed out connecting"));
    }
    match poll.poll(events, Some(left)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(conn_err(e)),
    }
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == ErrorKind::WouldBlock)
}

type Socket = WebSocket<mio::net::TcpStream>;

/// Sends the authentication packet and reads the answer, on the non-blocking socket.
fn authenticate(
    ws: &mut Socket,
    auth: &Auth,
    poll: &mut Poll,
    events: &mut Events,
    deadline: Instant,
) -> Result<AuthReply> {
    match ws.write(Message::text(protocol::encode_text(auth))) {
        Err(e) if !would_block(&e) => return Err(conn_err(e)),
        _ => {}
    }
    loop {
        match ws.flush() {
            Ok(()) => {}
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(conn_err(e)),
        }
        match ws.read() {
            Ok(Message::Text(text)) => {
                return protocol::decode_text("authentication reply", &text).map_err(malformed);
            }
            Ok(other) => return Err(conn_err(format!("unexpected reply to authentication: {other:?}"))),
            Err(e) if would_block(&e) => wait(poll, events, deadline)?,
            Err(e) => return Err(conn_err(e)),
        }
    }
}

/// The IO thread: writes what is queued and the cancels asked for, reads and routes what
/// arrives, then sleeps until the socket or a waker has news. At the end, everything still
/// waiting fails at once.
fn io_loop(mut ws: Socket, mut poll: Poll, mut events: Events, queue: &flume::Receiver<String>, shared: &Shared) {
    let why = loop {
        if !shared.wanted.load(Ordering::Relaxed) {
            let _ = ws.close(None);
            let _ = ws.flush();
            break "the connection was closed".to_owned();
        }
        if let Err(e) = write_pending(&mut ws, queue, shared) {
            break format!("the connection to the server was lost: {e}");
        }
        if let Err(e) = read_available(&mut ws, shared) {
            break e;
        }
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break format!("the connection's poll failed: {e}"),
        }
    };
    tracing::debug!("remote connection ended: {why}");
    let mut waiting = lock(&shared.waiting);
    waiting.closed = Some(why.clone());
    // Dropping the senders fails the calls; each channel hears why.
    waiting.calls.clear();
    for (_, mut route) in waiting.channels.drain() {
        (route.sink)(Err(conn_err(&why)));
    }
}

fn write_pending(ws: &mut Socket, queue: &flume::Receiver<String>, shared: &Shared) -> Result<(), tungstenite::Error> {
    let ok_if_blocked = |r: Result<(), tungstenite::Error>| match r {
        Err(e) if !would_block(&e) => Err(e),
        _ => Ok(()),
    };
    // Cancels asked for since the last round.
    let cancels: Vec<i64> = lock(&shared.waiting)
        .channels
        .iter_mut()
        .filter_map(|(id, route)| match &mut route.cancel {
            Some((cancel, sent)) if !*sent && cancel.flag().load(Ordering::Relaxed) => {
                *sent = true;
                Some(*id)
            }
            _ => None,
        })
        .collect();
    for channel_id in cancels {
        let message = protocol::encode(&ChannelInput::Cancel);
        let text = protocol::encode_text(&ClientMessage::ChannelSend { channel_id, message, ack_id: None });
        ok_if_blocked(ws.write(Message::text(text)))?;
    }
    while let Ok(text) = queue.try_recv() {
        ok_if_blocked(ws.write(Message::text(text)))?;
    }
    ok_if_blocked(ws.flush())
}

/// Reads until the socket has nothing more; `Err` says why the connection ended.
fn read_available(ws: &mut Socket, shared: &Shared) -> Result<(), String> {
    loop {
        match ws.read() {
            Ok(Message::Text(text)) => match protocol::decode_text::<ServerMessage>("message", &text) {
                Ok(message) => route(message, shared),
                Err(e) => tracing::warn!("the server sent a {e}"),
            },
            Ok(Message::Close(_)) => return Err("the server closed the connection".into()),
            Ok(_) => {}
            Err(e) if would_block(&e) => return Ok(()),
            Err(e) => return Err(format!("the connection to the server was lost: {e}")),
        }
    }
}

fn route(message: ServerMessage, shared: &Shared) {
    let (channel_id, incoming) = match message {
        ServerMessage::ChannelSend { channel_id, message } => (channel_id, Ok(message)),
        ServerMessage::ChannelError { channel_id, error } => (channel_id, Err(wire::error_from_object(&error))),
        ServerMessage::ChannelClose { channel_id } => {
            (channel_id, Err(Error::Server("the server closed the channel without a result".into())))
        }
        ServerMessage::RpcResult { call_id, result } => return answer(shared, call_id, Ok(result)),
        ServerMessage::RpcError { call_id, error } => {
            return answer(shared, call_id, Err(wire::error_from_object(&error)));
        }
        ServerMessage::CommunicationWarning { warning } => return tracing::warn!("the server warns: {warning}"),
        ServerMessage::KeepAliveAck
        | ServerMessage::SignalError { .. }
        | ServerMessage::WritableSignalError { .. }
        | ServerMessage::Unknown => return,
    };
    let mut waiting = lock(&shared.waiting);
    if let Some(route) = waiting.channels.get_mut(&channel_id) {
        let ended = incoming.is_err();
        if !(route.sink)(incoming) || ended {
            waiting.channels.remove(&channel_id);
        }
    }
}

fn answer(shared: &Shared, call_id: i64, result: Result<Option<Value>>) {
    if let Some(tx) = lock(&shared.waiting).calls.remove(&call_id) {
        let _ = tx.send(result);
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
