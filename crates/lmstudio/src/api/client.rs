//! The blocking API: a [`Client`] runs models in this process (embedded) or talks to a server
//! (remote); an [`Llm`] is a handle to one loaded model that completes prompts. Both modes offer
//! exactly the same methods and produce the same streams.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::api::config::{Config, LoadConfig};
use crate::api::error::{Error, Result};
use crate::api::result::{Activity, ChatMessage, ModelInfo, PredictionResult};
use crate::api::stream::{AsyncPredictionStream, PredictionStream};
use crate::engine::{Engine, Event};
use crate::lock;
use crate::remote::Connection;
use crate::store::gguf::GgufHeader;
use crate::store::{ModelStore, StoredModel, DEFAULT_MODEL_KEY};

/// The entry point of the library: runs models in this process (LM Studio's "embedded" mode) or
/// connects to a server (`lms server start`, or LM Studio itself).
///
/// Cloning is cheap and shares the loaded models (or the connection).
#[derive(Clone)]
pub struct Client {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Embedded(Arc<Embedded>),
    Remote(Arc<Remote>),
}

struct Embedded {
    store: ModelStore,
    /// How `llm()` loads a model that is not loaded yet.
    default_load: LoadConfig,
    loaded: Mutex<Vec<Arc<Loaded>>>,
    /// Held while a model loads, so two callers asking for the same model load it once.
    loading: Mutex<()>,
}

/// A loaded model instance.
struct Loaded {
    engine: Engine,
    info: ModelInfo,
}

struct Remote {
    host: String,
    passkey: Option<String>,
    connection: Mutex<Option<Arc<Connection>>>,
}

impl Remote {
    /// The live connection, reconnecting if the last one was lost.
    fn connection(&self) -> Result<Arc<Connection>> {
        let mut slot = lock(&self.connection);
        if let Some(c) = slot.as_ref().filter(|c| c.is_alive()) {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(Connection::open(&self.host, self.passkey.as_deref())?);
        *slot = Some(Arc::clone(&c));
        Ok(c)
    }

    fn list_loaded(&self) -> Result<Vec<ModelInfo>> {
        let v = self.connection()?.rpc("listLoaded", None)?;
        serde_json::from_value(v).map_err(|e| Error::Connection(format!("listLoaded: {e}")))
    }
}

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

impl Client {
    /// An embedded client on the models directory named by `$LMSTUDIO_MODELS_DIR` (else the
    /// platform's).
    pub fn new() -> Self {
        Self::with_store(ModelStore::from_env())
    }

    /// A remote client when `$LMSTUDIO_HOST` is set (`host:port`; `$LMS_API_KEY` is its key),
    /// else [`Client::new`]. The connection is made on first use.
    pub fn from_env() -> Self {
        match std::env::var("LMSTUDIO_HOST") {
            Ok(host) if !host.is_empty() => Self::remote(host, std::env::var("LMS_API_KEY").ok()),
            _ => Self::new(),
        }
    }

    /// A client of the server at `host` (`"localhost:1234"`), over LM Studio's websocket protocol.
    pub fn connect(host: &str) -> Result<Self> {
        let client = Self::remote(host.to_owned(), std::env::var("LMS_API_KEY").ok());
        if let Backend::Remote(r) = &client.backend {
            r.connection()?;
        }
        Ok(client)
    }

    fn remote(host: String, passkey: Option<String>) -> Self {
        Self { backend: Backend::Remote(Arc::new(Remote { host, passkey, connection: Mutex::new(None) })) }
    }

    /// An embedded client on the given models directory.
    pub fn with_store(store: ModelStore) -> Self {
        Self::with_load_config(store, LoadConfig::default())
    }

    /// An embedded client on the given models directory that loads models with `default_load`
    /// when [`Client::llm`] finds them not loaded.
    pub fn with_load_config(store: ModelStore, default_load: LoadConfig) -> Self {
        let inner = Embedded { store, default_load, loaded: Mutex::new(Vec::new()), loading: Mutex::new(()) };
        Self { backend: Backend::Embedded(Arc::new(inner)) }
    }

    /// The models directory (embedded clients only).
    pub fn store(&self) -> Option<&ModelStore> {
        match &self.backend {
            Backend::Embedded(e) => Some(&e.store),
            Backend::Remote(_) => None,
        }
    }

    /// How [`Client::llm`] loads a model that is not loaded yet (remote: the server decides what
    /// this leaves unset).
    pub fn default_load_config(&self) -> LoadConfig {
        match &self.backend {
            Backend::Embedded(e) => e.default_load.clone(),
            Backend::Remote(_) => LoadConfig::default(),
        }
    }

    /// A handle to the model `query` names: a loaded instance's identifier, else a model in the
    /// store, loaded with the default [`LoadConfig`] if it is not loaded yet.
    pub fn llm(&self, query: &str) -> Result<Llm> {
        self.get_or_load(query, &self.default_load_config()).map(|(llm, _)| llm)
    }

    /// The loaded instance `query` names, else the model it names loaded with `config`; the flag
    /// says whether this call loaded it (LM Studio's `getOrLoad`).
    pub fn get_or_load(&self, query: &str, config: &LoadConfig) -> Result<(Llm, bool)> {
        config.validate()?;
        let e = match &self.backend {
            Backend::Embedded(e) => e,
            Backend::Remote(r) => {
                let parameter = json!({"identifier": query, "loadConfigStack": crate::wire::load_stack(config)});
                let info = r.connection()?.load("getOrLoad", parameter)?;
                return Ok((Llm::remote(r, info), false));
            }
        };
        let _loading = lock(&e.loading);
        if let Some(found) = find_loaded(e, query) {
            return Ok((Llm { inner: LlmInner::Embedded(found) }, false));
        }
        let stored = e.store.resolve(query)?;
        if let Some(found) = find_loaded(e, &stored.key) {
            return Ok((Llm { inner: LlmInner::Embedded(found) }, false));
        }
        Ok((load_stored(e, stored, config)?, true))
    }

    /// LM Studio's `lms.llm()` with no name: any loaded model, else the default model
    /// (`gemma-3-270m`; `lms get` fetches it).
    pub fn default_llm(&self) -> Result<Llm> {
        match &self.backend {
            Backend::Embedded(e) => {
                if let Some(first) = lock(&e.loaded).first() {
                    return Ok(Llm { inner: LlmInner::Embedded(Arc::clone(first)) });
                }
            }
            Backend::Remote(r) => {
                if let Some(info) = r.list_loaded()?.into_iter().next() {
                    return Ok(Llm::remote(r, info));
                }
            }
        }
        self.llm(DEFAULT_MODEL_KEY)
    }

    /// The async form of [`Client::llm`] (it runs on tokio's blocking pool).
    pub async fn llm_async(&self, query: &str) -> Result<Llm> {
        let (client, query) = (self.clone(), query.to_owned());
        blocking(move || client.llm(&query)).await
    }

    /// The async form of [`Client::default_llm`].
    pub async fn default_llm_async(&self) -> Result<Llm> {
        let client = self.clone();
        blocking(move || client.default_llm()).await
    }

    /// Loads a new instance of the model `query` names, even if one is already loaded.
    pub fn load(&self, query: &str, config: &LoadConfig) -> Result<Llm> {
        config.validate()?;
        match &self.backend {
            Backend::Embedded(e) => {
                let _loading = lock(&e.loading);
                let stored = e.store.resolve(query)?;
                load_stored(e, stored, config)
            }
            Backend::Remote(r) => {
                let mut parameter = json!({"modelKey": query, "loadConfigStack": crate::wire::load_stack(config)});
                if let Some(id) = &config.identifier {
                    parameter["identifier"] = json!(id);
                }
                let info = r.connection()?.load("loadModel", parameter)?;
                Ok(Llm::remote(r, info))
            }
        }
    }

    /// The loaded instance `query` names (identifier or instance reference), without loading.
    pub fn get_loaded(&self, query: &str) -> Result<Option<Llm>> {
        Ok(match &self.backend {
            Backend::Embedded(e) => find_loaded(e, query).map(|l| Llm { inner: LlmInner::Embedded(l) }),
            Backend::Remote(r) => {
                r.list_loaded()?.into_iter().find(|info| answers_to(info, query)).map(|info| Llm::remote(r, info))
            }
        })
    }

    /// The loaded instances.
    pub fn list_loaded(&self) -> Result<Vec<ModelInfo>> {
        match &self.backend {
            Backend::Embedded(e) => Ok(lock(&e.loaded).iter().map(|l| l.info.clone()).collect()),
            Backend::Remote(r) => r.list_loaded(),
        }
    }

    /// The model files in the store, with their info or why they cannot be read (embedded only).
    pub fn list_downloaded(&self) -> Result<Vec<StoredModel>> {
        match &self.backend {
            Backend::Embedded(e) => e.store.list(),
            Backend::Remote(_) => Err(Error::Unsupported("listing a server's downloaded models".into())),
        }
    }

    /// Unloads the instance named `identifier`. Predictions still running on it end with
    /// `modelUnloaded`; handles to it fail with [`Error::ModelUnloaded`] from then on.
    pub fn unload(&self, identifier: &str) -> Result<()> {
        let e = match &self.backend {
            Backend::Embedded(e) => e,
            Backend::Remote(r) => {
                r.connection()?.rpc("unloadModel", Some(json!({"identifier": identifier})))?;
                return Ok(());
            }
        };
        let removed = {
            let mut loaded = lock(&e.loaded);
            match loaded.iter().position(|l| l.info.identifier.as_deref() == Some(identifier)) {
                Some(i) => loaded.remove(i),
                None => {
                    let candidates = loaded.iter().filter_map(|l| l.info.identifier.clone()).collect();
                    return Err(Error::ModelNotFound { query: identifier.to_owned(), candidates });
                }
            }
        };
        // Handles may still hold the instance: stop its engine now rather than when they drop.
        removed.engine.shutdown();
        Ok(())
    }
}

fn find_loaded(e: &Embedded, query: &str) -> Option<Arc<Loaded>> {
    lock(&e.loaded).iter().find(|l| answers_to(&l.info, query)).cloned()
}

/// Whether a loaded instance answers to `query` (its identifier or its instance reference).
fn answers_to(info: &ModelInfo, query: &str) -> bool {
    info.identifier.as_deref() == Some(query) || info.instance_reference.as_deref() == Some(query)
}

fn load_stored(e: &Embedded, stored: StoredModel, config: &LoadConfig) -> Result<Llm> {
    let mut info =
        stored.info.clone().map_err(|reason| Error::InvalidModelFile { path: stored.path.clone(), reason })?;
    let header = GgufHeader::read(&stored.path)
        .map_err(|err| Error::InvalidModelFile { path: stored.path.clone(), reason: err.to_string() })?;
    let window = header
        .architecture()
        .and_then(|a| header.uint(&format!("{a}.attention.sliding_window")))
        .and_then(|w| u32::try_from(w).ok())
        .unwrap_or(0);
    info.identifier = Some(unique_identifier(e, config.identifier.as_deref().unwrap_or(&info.model_key)));
    info.instance_reference = Some(format!("inst-{}", NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)));
    let engine = Engine::load(&stored.path, &mut info, window, config)?;
    let loaded = Arc::new(Loaded { engine, info });
    lock(&e.loaded).push(Arc::clone(&loaded));
    tracing::info!(identifier = loaded.info.identifier, path = %stored.path.display(), "loaded");
    Ok(Llm { inner: LlmInner::Embedded(loaded) })
}

/// `base`, or `base:2`, `base:3`... if that identifier is taken (LM Studio's scheme).
fn unique_identifier(e: &Embedded, base: &str) -> String {
    let loaded = lock(&e.loaded);
    let taken = |id: &str| loaded.iter().any(|l| l.info.identifier.as_deref() == Some(id));
    if !taken(base) {
        return base.to_owned();
    }
    (2..).map(|n| format!("{base}:{n}")).find(|id| !taken(id)).unwrap_or_default()
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Engine(format!("loading task failed: {e}")))?
}

/// A handle to a loaded model. Cloning is cheap; the model stays loaded until
/// [`Client::unload`], even when every handle is dropped.
#[derive(Clone)]
pub struct Llm {
    inner: LlmInner,
}

#[derive(Clone)]
enum LlmInner {
    Embedded(Arc<Loaded>),
    Remote { remote: Arc<Remote>, info: Box<ModelInfo> },
}

impl Llm {
    fn remote(remote: &Arc<Remote>, info: ModelInfo) -> Self {
        Self { inner: LlmInner::Remote { remote: Arc::clone(remote), info: Box::new(info) } }
    }

    /// The instance's info: key, display name, architecture, size, context length...
    pub fn info(&self) -> &ModelInfo {
        match &self.inner {
            LlmInner::Embedded(l) => &l.info,
            LlmInner::Remote { info, .. } => info,
        }
    }

    /// The identifier this instance answers to.
    pub fn identifier(&self) -> &str {
        self.info().identifier.as_deref().unwrap_or_default()
    }

    /// How many predictions are running and queued on this instance now (embedded only: LM
    /// Studio's protocol has no such call). A prediction counts until just before its result is
    /// sent, so once a caller has its result, it is no longer counted.
    pub fn activity(&self) -> Result<Activity> {
        match &self.inner {
            LlmInner::Embedded(l) => Ok(l.engine.activity()),
            LlmInner::Remote { .. } => Err(Error::Unsupported("the activity of a server's model instance".into())),
        }
    }

    /// Completes `prompt` and returns the whole result.
    pub fn complete(&self, prompt: &str, config: Config) -> Result<PredictionResult> {
        self.complete_stream(prompt, config)?.wait_for_result()
    }

    /// Starts completing `prompt`; iterate the stream for fragments, attach callbacks, or wait.
    pub fn complete_stream(&self, prompt: &str, config: Config) -> Result<PredictionStream> {
        let (events, cancel) = self.submit(prompt, &config)?;
        Ok(PredictionStream::new(events, cancel))
    }

    /// The async form of [`Llm::complete_stream`]; the stream is a [`futures_core::Stream`].
    pub fn complete_stream_async(&self, prompt: &str, config: Config) -> Result<AsyncPredictionStream> {
        let (events, cancel) = self.submit(prompt, &config)?;
        Ok(AsyncPredictionStream::new(events, cancel))
    }

    /// The async form of [`Llm::complete`].
    pub async fn complete_async(&self, prompt: &str, config: Config) -> Result<PredictionResult> {
        self.complete_stream_async(prompt, config)?.wait_for_result().await
    }

    /// How many tokens `text` is for this model.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        match &self.inner {
            LlmInner::Embedded(l) => Ok(l.engine.count_tokens(text)),
            LlmInner::Remote { .. } => {
                let v = self.rpc("countTokens", json!({"inputString": text}))?;
                v["tokenCount"].as_u64().map(|n| n as usize).ok_or_else(|| bad_reply("countTokens"))
            }
        }
    }

    /// The token ids of `text` (with the BOS token the model adds to a prompt).
    pub fn tokenize(&self, text: &str) -> Result<Vec<i32>> {
        match &self.inner {
            LlmInner::Embedded(l) => Ok(l.engine.token_ids(text)),
            LlmInner::Remote { .. } => {
                let v = self.rpc("tokenize", json!({"inputString": text}))?;
                serde_json::from_value(v["tokens"].clone()).map_err(|_| bad_reply("tokenize"))
            }
        }
    }

    /// Formats a chat as a prompt with the model's chat template, ending where the assistant's
    /// answer begins; complete it to get the answer.
    pub fn apply_prompt_template(&self, messages: &[ChatMessage]) -> Result<String> {
        match &self.inner {
            LlmInner::Embedded(l) => l.engine.apply_chat_template(messages, l.info.architecture.as_deref()),
            LlmInner::Remote { .. } => {
                let history: Vec<_> = messages
                    .iter()
                    .map(|m| json!({"role": m.role, "content": [{"type": "text", "text": m.content}]}))
                    .collect();
                let v = self.rpc(
                    "applyPromptTemplate",
                    json!({"history": {"messages": history}, "predictionConfigStack": {"layers": []}, "opts": {}}),
                )?;
                v["formatted"].as_str().map(str::to_owned).ok_or_else(|| bad_reply("applyPromptTemplate"))
            }
        }
    }

    /// An RPC about this instance (remote only).
    fn rpc(&self, endpoint: &str, mut parameter: serde_json::Value) -> Result<serde_json::Value> {
        let LlmInner::Remote { remote, .. } = &self.inner else {
            return Err(Error::Unsupported(endpoint.into()));
        };
        parameter["specifier"] = json!({"type": "query", "query": {"identifier": self.identifier()}});
        remote.connection()?.rpc(endpoint, Some(parameter))
    }

    fn submit(&self, prompt: &str, config: &Config) -> Result<(flume::Receiver<Event>, Arc<AtomicBool>)> {
        let valid = config.validate()?;
        if prompt.is_empty() {
            return Err(Error::InvalidPrompt("the prompt is empty".into()));
        }
        let (tx, rx) = flume::unbounded();
        let cancel = Arc::new(AtomicBool::new(false));
        match &self.inner {
            LlmInner::Embedded(l) => l.engine.submit(prompt, valid, tx, Arc::clone(&cancel))?,
            LlmInner::Remote { remote, .. } => {
                remote.connection()?.predict(self.identifier(), prompt, config, tx, Arc::clone(&cancel))?
            }
        }
        Ok((rx, cancel))
    }
}

fn bad_reply(endpoint: &str) -> Error {
    Error::Connection(format!("unexpected reply to {endpoint}"))
}
