//! The facade on top of the library: a [`Client`] runs models in this process (embedded, feature
//! `embedded`) or talks to a server (remote); an [`Llm`] is a handle to one loaded model that
//! completes prompts. Both backends offer exactly the same methods and produce the same streams.

pub(crate) mod act;
#[cfg(feature = "embedded")]
mod embedded;
pub(crate) mod embedding;
mod lookup;
#[cfg(feature = "embedded")]
mod output;
pub(crate) mod presets;
pub(crate) mod stream;

use std::sync::Arc;

#[cfg(feature = "embedded")]
use self::embedded::{Embedded, Loaded};
use self::lookup::find_instance;
use crate::client::stream::{AsyncPredictionStream, PredictionStream};
use crate::remote::{Remote, RemoteOptions};
use crate::store::{ModelStore, StoredModel, DEFAULT_MODEL_KEY};
use crate::types::config::{Config, LoadConfig};
use crate::types::error::{Error, Result};
use crate::types::event::{Cancel, Event, Input, LoadEvent, OnLoad};
use crate::types::result::{Activity, Chat, ChatMessage, MemoryEstimate, ModelEntry, ModelInfo, PredictionResult};
use crate::wire::protocol::ModelSpecifier;
#[cfg(feature = "embedded")]
use crate::{
    client::output::OutputReader,
    tools::{family_history, generic_history, Constraint, Syntax, ToolUse},
    types::config::Structured,
};

/// The host a remote-only build connects to when `$LMSTUDIO_HOST` is not set (LM Studio's default).
#[cfg(not(feature = "embedded"))]
const DEFAULT_HOST: &str = "localhost:1234";

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
    #[cfg(feature = "embedded")]
    Embedded(Arc<Embedded>),
    Remote(Arc<Remote>),
}

#[cfg(feature = "embedded")]
impl Client {
    /// An embedded client on the models directory named by `$LMSTUDIO_MODELS_DIR` (else the
    /// platform's).
    pub fn new() -> Self {
        Self::with_store(ModelStore::from_env())
    }

    /// An embedded client on the given models directory.
    pub fn with_store(store: ModelStore) -> Self {
        Self::with_load_config(store, LoadConfig::default())
    }

    /// An embedded client on the given models directory that loads models with `default_load`
    /// when [`Client::llm`] finds them not loaded.
    pub fn with_load_config(store: ModelStore, default_load: LoadConfig) -> Self {
        Self { backend: Backend::Embedded(Arc::new(Embedded::new(store, default_load))) }
    }
}

#[cfg(feature = "embedded")]
impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// A remote client when `$LMSTUDIO_HOST` is set (`host:port`; `$LMS_API_KEY` is its key),
    /// else an embedded one ([`Client::new`]; a build without the `embedded` feature connects to
    /// `localhost:1234`). The connection is made on first use.
    pub fn from_env() -> Self {
        match std::env::var("LMSTUDIO_HOST") {
            Ok(host) if !host.is_empty() => Self::remote(host, RemoteOptions::default()),
            #[cfg(feature = "embedded")]
            _ => Self::new(),
            #[cfg(not(feature = "embedded"))]
            _ => Self::remote(DEFAULT_HOST.to_owned(), RemoteOptions::default()),
        }
    }

    /// A client of the server at `host` (`"localhost:1234"`), over LM Studio's websocket protocol;
    /// its key from `$LMS_API_KEY`.
    pub fn connect(host: &str) -> Result<Self> {
        Self::connect_with(host, RemoteOptions::default())
    }

    /// [`Client::connect`] with its key and timeouts given.
    pub fn connect_with(host: &str, options: RemoteOptions) -> Result<Self> {
        let remote = Arc::new(Remote::new(host.to_owned(), options));
        remote.connection()?;
        Ok(Self { backend: Backend::Remote(remote) })
    }

    fn remote(host: String, options: RemoteOptions) -> Self {
        Self { backend: Backend::Remote(Arc::new(Remote::new(host, options))) }
    }

    /// Whether a model loaded on demand (by [`Client::llm`] or [`Client::get_or_load`] finding
    /// nothing loaded: LM Studio's JIT) first unloads the instances earlier such loads made, as
    /// LM Studio's server does; explicit loads are never evicted. Off by default; `lms server`
    /// turns it on. Embedded clients only (a server applies its own setting).
    #[cfg_attr(not(feature = "embedded"), allow(unused_variables))]
    pub fn set_auto_evict(&self, on: bool) -> Result<()> {
        match &self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => {
                e.set_auto_evict(on);
                Ok(())
            }
            Backend::Remote(_) => Err(Error::Unsupported("setting a server's auto-evict".into())),
        }
    }

    /// Calls `observer` with the text each prediction gives the model, as the model reads it (a
    /// chat through its template), before the prediction runs (LM Studio's prediction-input log;
    /// `lms log stream`). `None` stops it. Embedded clients only.
    #[cfg_attr(not(feature = "embedded"), allow(unused_variables))]
    pub fn on_prompt(&self, observer: Option<crate::types::event::OnPrompt>) -> Result<()> {
        match &self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => {
                e.set_on_prompt(observer);
                Ok(())
            }
            Backend::Remote(_) => {
                Err(Error::Unsupported("observing a server's prompts (its log stream has them)".into()))
            }
        }
    }

    /// The models directory (embedded clients only).
    pub fn store(&self) -> Option<&ModelStore> {
        match &self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => Some(e.store()),
            Backend::Remote(_) => None,
        }
    }

    /// How [`Client::llm`] loads a model that is not loaded yet (remote: the server decides what
    /// this leaves unset).
    pub fn default_load_config(&self) -> LoadConfig {
        match &self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => e.default_load().clone(),
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
        self.get_or_load_with(query, config, &no_load_events())
    }

    /// [`Client::get_or_load`], with what a load does reported to `on_load` as it runs (nothing
    /// when an instance is found).
    pub fn get_or_load_with(&self, query: &str, config: &LoadConfig, on_load: &OnLoad) -> Result<(Llm, bool)> {
        config.validate()?;
        match &self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => e.get_or_load(query, config, on_load).map(|(l, loaded)| (Llm::embedded(l), loaded)),
            Backend::Remote(r) => Ok((Llm::remote(r, r.get_or_load(query, config, on_load)?), false)),
        }
    }

    /// LM Studio's `lms.llm()` with no name: any loaded model, else the default model
    /// (`gemma-3-270m`; `lms get` fetches it).
    pub fn default_llm(&self) -> Result<Llm> {
        let loaded = match &self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => e.first_loaded().map(Llm::embedded),
            Backend::Remote(r) => r.list_loaded()?.into_iter().next().map(|info| Llm::remote(r, info)),
        };
        loaded.map_or_else(|| self.llm(DEFAULT_MODEL_KEY), Ok)
    }

    /// Loads a new instance of the model `query` names, even if one is already loaded.
    pub fn load(&self, query: &str, config: &LoadConfig) -> Result<Llm> {
        self.load_with(query, config, &no_load_events())
    }

    /// [`Client::load`], with its progress reported to `on_load` as it runs.
    pub fn load_with(&self, query: &str, config: &LoadConfig, on_load: &OnLoad) -> Result<Llm> {
        config.validate()?;
        match &self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => e.load(query, config, on_load).map(Llm::embedded),
            Backend::Remote(r) => Ok(Llm::remote(r, r.load(query, config, on_load)?)),
        }
    }

    /// The loaded instance `query` names (identifier or instance reference), else any loaded
    /// instance of the model whose key it is; without loading.
    pub fn get_loaded(&self, query: &str) -> Result<Option<Llm>> {
        Ok(match &self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => e.get_loaded(query).map(Llm::embedded),
            Backend::Remote(r) => {
                let loaded = r.list_loaded()?;
                find_instance(&loaded, |info| info, query).map(|info| Llm::remote(r, info.clone()))
            }
        })
    }

    /// The loaded instances.
    pub fn list_loaded(&self) -> Result<Vec<ModelInfo>> {
        match &self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => Ok(e.list_loaded()),
            Backend::Remote(r) => r.list_loaded(),
        }
    }

    /// The model files in the store, with their info or why they cannot be read (embedded only).
    pub fn list_downloaded(&self) -> Result<Vec<StoredModel>> {
        match &self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => e.store().list(),
            Backend::Remote(_) => Err(Error::Unsupported("listing a server's downloaded models".into())),
        }
    }

    /// The downloaded models, each key once, with their loaded instances (embedded only).
    pub fn list_models(&self) -> Result<Vec<ModelEntry>> {
        match &self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => e.list_models(),
            Backend::Remote(_) => Err(Error::Unsupported("listing a server's downloaded models".into())),
        }
    }

    /// What loading the model `query` names with `config` would take in memory, and what the
    /// machine has available now (MiB; `None` where the system does not say), without loading
    /// (embedded only: the estimate of the models directory this client reads).
    #[cfg_attr(not(feature = "embedded"), allow(unused_variables))]
    pub fn estimate(&self, query: &str, config: &LoadConfig) -> Result<(MemoryEstimate, Option<u64>)> {
        config.validate()?;
        match &self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => {
                let stored = e.store().resolve(query)?;
                let info = stored.valid_info()?;
                let (_, estimate) = embedded::place(&stored, &info, config)?;
                Ok((estimate, embedded::available_memory().map(|b| b >> 20)))
            }
            Backend::Remote(_) => Err(Error::Unsupported("estimating a load on a server".into())),
        }
    }

    /// The downloaded model `query` names, resolved as [`Client::llm`] resolves a name that is not
    /// a loaded instance (embedded only).
    pub fn resolve(&self, query: &str) -> Result<ModelInfo> {
        match &self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => e.store().resolve(query)?.valid_info(),
            Backend::Remote(_) => Err(Error::Unsupported(format!("resolving {query:?} among a server's models"))),
        }
    }

    /// Unloads the instance named `identifier`. Predictions still running on it end with
    /// `modelUnloaded`; handles to it fail with [`Error::ModelUnloaded`] from then on.
    pub fn unload(&self, identifier: &str) -> Result<()> {
        match &self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded(e) => e.unload(identifier),
            Backend::Remote(r) => r.unload(identifier),
        }
    }
}

/// The async twins of the blocking methods. Each runs the blocking call on a thread of its own,
/// so it works under any executor (or none: there is no tokio runtime to be inside of) and never
/// blocks the one it is awaited on.
impl Client {
    /// The async form of [`Client::llm`].
    pub async fn llm_async(&self, query: &str) -> Result<Llm> {
        let (client, query) = (self.clone(), query.to_owned());
        off_thread(move || client.llm(&query)).await
    }

    /// The async form of [`Client::default_llm`].
    pub async fn default_llm_async(&self) -> Result<Llm> {
        let client = self.clone();
        off_thread(move || client.default_llm()).await
    }

    /// The async form of [`Client::get_or_load`].
    pub async fn get_or_load_async(&self, query: &str, config: &LoadConfig) -> Result<(Llm, bool)> {
        self.get_or_load_with_async(query, config, &no_load_events()).await
    }

    /// The async form of [`Client::get_or_load_with`].
    pub async fn get_or_load_with_async(
        &self,
        query: &str,
        config: &LoadConfig,
        on_load: &OnLoad,
    ) -> Result<(Llm, bool)> {
        let (client, query, config, on_load) = (self.clone(), query.to_owned(), config.clone(), on_load.clone());
        off_thread(move || client.get_or_load_with(&query, &config, &on_load)).await
    }

    /// The async form of [`Client::load`].
    pub async fn load_async(&self, query: &str, config: &LoadConfig) -> Result<Llm> {
        self.load_with_async(query, config, &no_load_events()).await
    }

    /// The async form of [`Client::load_with`].
    pub async fn load_with_async(&self, query: &str, config: &LoadConfig, on_load: &OnLoad) -> Result<Llm> {
        let (client, query, config, on_load) = (self.clone(), query.to_owned(), config.clone(), on_load.clone());
        off_thread(move || client.load_with(&query, &config, &on_load)).await
    }

    /// The async form of [`Client::get_loaded`].
    pub async fn get_loaded_async(&self, query: &str) -> Result<Option<Llm>> {
        let (client, query) = (self.clone(), query.to_owned());
        off_thread(move || client.get_loaded(&query)).await
    }

    /// The async form of [`Client::list_loaded`].
    pub async fn list_loaded_async(&self) -> Result<Vec<ModelInfo>> {
        let client = self.clone();
        off_thread(move || client.list_loaded()).await
    }

    /// The async form of [`Client::list_downloaded`].
    pub async fn list_downloaded_async(&self) -> Result<Vec<StoredModel>> {
        let client = self.clone();
        off_thread(move || client.list_downloaded()).await
    }

    /// The async form of [`Client::list_models`].
    pub async fn list_models_async(&self) -> Result<Vec<ModelEntry>> {
        let client = self.clone();
        off_thread(move || client.list_models()).await
    }

    /// The async form of [`Client::resolve`].
    pub async fn resolve_async(&self, query: &str) -> Result<ModelInfo> {
        let (client, query) = (self.clone(), query.to_owned());
        off_thread(move || client.resolve(&query)).await
    }

    /// The async form of [`Client::unload`] (which waits for the engine thread to stop).
    pub async fn unload_async(&self, identifier: &str) -> Result<()> {
        let (client, identifier) = (self.clone(), identifier.to_owned());
        off_thread(move || client.unload(&identifier)).await
    }
}

/// An [`OnLoad`] that drops what it is told.
fn no_load_events() -> OnLoad {
    Arc::new(|_: LoadEvent| {})
}

/// Runs blocking library work on a thread of its own and awaits its result.
async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let (tx, rx) = flume::bounded(1);
    std::thread::Builder::new().name("lms-call".into()).spawn(move || {
        let _ = tx.send(f());
    })?;
    rx.recv_async().await.map_err(|_| Error::Engine("the call's thread panicked".into()))?
}

/// A handle to a loaded model. Cloning is cheap; the model stays loaded until
/// [`Client::unload`], even when every handle is dropped.
#[derive(Clone)]
pub struct Llm {
    inner: LlmInner,
}

#[derive(Clone)]
enum LlmInner {
    #[cfg(feature = "embedded")]
    Embedded(Arc<Loaded>),
    Remote {
        remote: Arc<Remote>,
        info: Box<ModelInfo>,
    },
}

impl Llm {
    #[cfg(feature = "embedded")]
    fn embedded(loaded: Arc<Loaded>) -> Self {
        Self { inner: LlmInner::Embedded(loaded) }
    }

    fn remote(remote: &Arc<Remote>, info: ModelInfo) -> Self {
        Self { inner: LlmInner::Remote { remote: Arc::clone(remote), info: Box::new(info) } }
    }

    /// The instance's info: key, display name, architecture, size, context length...
    pub fn info(&self) -> &ModelInfo {
        match &self.inner {
            #[cfg(feature = "embedded")]
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
            #[cfg(feature = "embedded")]
            LlmInner::Embedded(l) => Ok(l.engine.activity()),
            LlmInner::Remote { .. } => Err(Error::Unsupported("the activity of a server's model instance".into())),
        }
    }

    /// LM Studio's `model.respond(chat)`: the model's reply to `chat`, rendered by the model's
    /// own chat template, as one result.
    pub fn respond(&self, chat: &Chat, config: Config) -> Result<PredictionResult> {
        self.respond_stream(chat, config)?.wait_for_result()
    }

    /// Starts the model's reply to `chat`: the same stream, callbacks and cancel as
    /// [`Llm::complete_stream`]; `on_message` gives the message to [`Chat::append`].
    pub fn respond_stream(&self, chat: &Chat, config: Config) -> Result<PredictionStream> {
        let (events, cancel) = self.submit(Input::Chat(chat.messages()), &config)?;
        Ok(PredictionStream::new(events, cancel))
    }

    /// The async form of [`Llm::respond_stream`]: templating and queueing run off the caller's
    /// thread.
    pub async fn respond_stream_async(&self, chat: &Chat, config: Config) -> Result<AsyncPredictionStream> {
        let (llm, messages) = (self.clone(), chat.messages().to_vec());
        let (events, cancel) = off_thread(move || llm.submit(Input::Chat(&messages), &config)).await?;
        Ok(AsyncPredictionStream::new(events, cancel))
    }

    /// The async form of [`Llm::respond`].
    pub async fn respond_async(&self, chat: &Chat, config: Config) -> Result<PredictionResult> {
        self.respond_stream_async(chat, config).await?.wait_for_result().await
    }

    /// Completes `prompt` and returns the whole result.
    pub fn complete(&self, prompt: &str, config: Config) -> Result<PredictionResult> {
        self.complete_stream(prompt, config)?.wait_for_result()
    }

    /// Starts completing `prompt`; iterate the stream for fragments, attach callbacks, or wait.
    pub fn complete_stream(&self, prompt: &str, config: Config) -> Result<PredictionStream> {
        let (events, cancel) = self.submit(Input::Raw(prompt), &config)?;
        Ok(PredictionStream::new(events, cancel))
    }

    /// The async form of [`Llm::complete_stream`]; the stream is a [`futures_core::Stream`].
    /// Validation, tokenizing (long prompts take a while) and queueing run off the caller's thread.
    pub async fn complete_stream_async(&self, prompt: &str, config: Config) -> Result<AsyncPredictionStream> {
        let (llm, prompt) = (self.clone(), prompt.to_owned());
        let (events, cancel) = off_thread(move || llm.submit(Input::Raw(&prompt), &config)).await?;
        Ok(AsyncPredictionStream::new(events, cancel))
    }

    /// The async form of [`Llm::complete`].
    pub async fn complete_async(&self, prompt: &str, config: Config) -> Result<PredictionResult> {
        self.complete_stream_async(prompt, config).await?.wait_for_result().await
    }

    /// How many tokens `text` is for this model.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        match &self.inner {
            #[cfg(feature = "embedded")]
            LlmInner::Embedded(l) => Ok(l.engine.count_tokens(text)),
            LlmInner::Remote { remote, .. } => remote.count_tokens(self.specifier(), text),
        }
    }

    /// The token ids of `text` (with the BOS token the model adds to a prompt).
    pub fn tokenize(&self, text: &str) -> Result<Vec<i32>> {
        match &self.inner {
            #[cfg(feature = "embedded")]
            LlmInner::Embedded(l) => Ok(l.engine.token_ids(text)),
            LlmInner::Remote { remote, .. } => remote.tokenize(self.specifier(), text),
        }
    }

    /// Token ids of `text` as llama.cpp's tokenizer gives them (llama-server's `/tokenize`): with
    /// the model's BOS (and EOS, for models that add one) when `add_special`, special tokens'
    /// texts read as those tokens when `parse_special`. Embedded backend only.
    pub fn tokenize_with(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<i32>> {
        match &self.inner {
            #[cfg(feature = "embedded")]
            LlmInner::Embedded(l) => Ok(l.engine.tokenize_with(text, add_special, parse_special)),
            LlmInner::Remote { .. } => {
                #[cfg(not(feature = "embedded"))]
                let _ = (text, add_special, parse_special);
                Err(Error::Unsupported("tokenizing with options over LM Studio's SDK protocol".into()))
            }
        }
    }

    /// The text of each token of `tokens` (special tokens written out), as bytes: a token may hold
    /// part of a character. Embedded backend only (LM Studio's protocol has no such call).
    pub fn token_pieces(&self, tokens: &[i32]) -> Result<Vec<Vec<u8>>> {
        match &self.inner {
            #[cfg(feature = "embedded")]
            LlmInner::Embedded(l) => l.engine.token_pieces(tokens),
            LlmInner::Remote { .. } => {
                #[cfg(not(feature = "embedded"))]
                let _ = tokens;
                Err(Error::Unsupported("detokenizing over LM Studio's SDK protocol".into()))
            }
        }
    }

    /// The text `tokens` make ([`Llm::tokenize`] undone; a character cut by the end is U+FFFD).
    pub fn detokenize(&self, tokens: &[i32]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.token_pieces(tokens)?.concat()).into_owned())
    }

    /// Formats a chat as a prompt with the model's chat template, ending where the assistant's
    /// answer begins; complete it to get the answer. Calls and results in it render as `respond`
    /// renders them.
    pub fn apply_prompt_template(&self, messages: &[ChatMessage]) -> Result<String> {
        match &self.inner {
            #[cfg(feature = "embedded")]
            LlmInner::Embedded(l) => Ok(render_chat(l, messages, &Config::default())?.0),
            LlmInner::Remote { remote, .. } => remote.apply_prompt_template(self.specifier(), messages),
        }
    }

    /// How many tokens of prompt `chat` is with `config`: its messages through the chat template,
    /// with the tools the config offers (what a `respond` with them would process).
    pub fn count_chat_tokens(&self, chat: &Chat, config: &Config) -> Result<usize> {
        config.validate()?;
        match &self.inner {
            #[cfg(feature = "embedded")]
            LlmInner::Embedded(l) => Ok(l.engine.count_tokens(&render_chat(l, chat.messages(), config)?.0)),
            LlmInner::Remote { .. } if config.offers_tools() => {
                Err(Error::Unsupported("counting a prompt with tools over LM Studio's SDK protocol".into()))
            }
            LlmInner::Remote { remote, .. } => {
                let prompt = remote.apply_prompt_template(self.specifier(), chat.messages())?;
                remote.count_tokens(self.specifier(), &prompt)
            }
        }
    }

    /// The async form of [`Llm::count_chat_tokens`].
    pub async fn count_chat_tokens_async(&self, chat: &Chat, config: &Config) -> Result<usize> {
        let (llm, chat, config) = (self.clone(), chat.clone(), config.clone());
        off_thread(move || llm.count_chat_tokens(&chat, &config)).await
    }

    /// The async form of [`Llm::count_tokens`].
    pub async fn count_tokens_async(&self, text: &str) -> Result<usize> {
        let (llm, text) = (self.clone(), text.to_owned());
        off_thread(move || llm.count_tokens(&text)).await
    }

    /// The async form of [`Llm::tokenize`].
    pub async fn tokenize_async(&self, text: &str) -> Result<Vec<i32>> {
        let (llm, text) = (self.clone(), text.to_owned());
        off_thread(move || llm.tokenize(&text)).await
    }

    /// The async form of [`Llm::tokenize_with`].
    pub async fn tokenize_with_async(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<i32>> {
        let (llm, text) = (self.clone(), text.to_owned());
        off_thread(move || llm.tokenize_with(&text, add_special, parse_special)).await
    }

    /// The async form of [`Llm::token_pieces`].
    pub async fn token_pieces_async(&self, tokens: &[i32]) -> Result<Vec<Vec<u8>>> {
        let (llm, tokens) = (self.clone(), tokens.to_vec());
        off_thread(move || llm.token_pieces(&tokens)).await
    }

    /// The async form of [`Llm::detokenize`].
    pub async fn detokenize_async(&self, tokens: &[i32]) -> Result<String> {
        let (llm, tokens) = (self.clone(), tokens.to_vec());
        off_thread(move || llm.detokenize(&tokens)).await
    }

    /// The async form of [`Llm::apply_prompt_template`].
    pub async fn apply_prompt_template_async(&self, messages: &[ChatMessage]) -> Result<String> {
        let (llm, messages) = (self.clone(), messages.to_vec());
        off_thread(move || llm.apply_prompt_template(&messages)).await
    }

    /// How requests name this instance: its instance reference, so that a handle to an instance
    /// that was unloaded fails with [`Error::ModelUnloaded`] as embedded, instead of loading anew.
    fn specifier(&self) -> ModelSpecifier {
        match &self.info().instance_reference {
            Some(r) => ModelSpecifier::InstanceReference { instance_reference: r.clone() },
            None => ModelSpecifier::identifier(self.identifier()),
        }
    }

    fn submit(&self, input: Input<'_>, config: &Config) -> Result<(flume::Receiver<Event>, Cancel)> {
        // Checked here for both backends; only the engine takes the checked form.
        #[cfg(feature = "embedded")]
        let applied;
        #[cfg(feature = "embedded")]
        let config = match (&self.inner, &config.preset) {
            // Embedded: the preset is read here; a server reads its own (`fuzzyPresetIdentifier`).
            (LlmInner::Embedded(_), Some(name)) => {
                applied = presets::PresetStore::from_env().find(name)?.under(config.clone())?;
                &applied
            }
            _ => config,
        };
        #[cfg_attr(not(feature = "embedded"), allow(unused_variables))]
        let valid = config.validate()?;
        match input {
            Input::Raw("") => return Err(Error::InvalidPrompt("the prompt is empty".into())),
            Input::Chat([]) => return Err(Error::InvalidPrompt("the chat has no messages".into())),
            _ => {}
        }
        let offers_tools = config.offers_tools();
        if offers_tools && matches!(input, Input::Raw(_)) {
            return Err(Error::InvalidConfig("tools need a chat (respond), not a raw completion".into()));
        }
        let (tx, rx) = flume::unbounded();
        let cancel = match &self.inner {
            #[cfg(feature = "embedded")]
            LlmInner::Embedded(l) => {
                let mut valid = valid;
                let templated;
                let mut reader = OutputReader::default();
                let prompt = match input {
                    Input::Raw(prompt) => prompt,
                    Input::Chat(chat) => {
                        let tools;
                        (templated, tools) = render_chat(l, chat, config)?;
                        if let Some(constraint) = tools.as_ref().and_then(ToolUse::constraint) {
                            valid.structured_trigger = constraint.trigger().map(str::to_owned);
                            valid.structured = Some(grammar_of(constraint)?);
                        }
                        reader = OutputReader::of_chat(&templated, config, tools.map(|t| t.reader()));
                        templated.as_str()
                    }
                };
                l.touch();
                l.report_prompt(prompt);
                let draft = valid.draft.as_ref().map(|d| l.draft_file(&d.model)).transpose()?;
                let cancel = Cancel::default();
                let events = reader.spawn(tx)?;
                l.engine.submit(prompt, valid, draft.as_ref(), events, Arc::clone(cancel.flag()))?;
                cancel
            }
            LlmInner::Remote { .. } if config.logprobs.is_some() => {
                return Err(Error::Unsupported("log probabilities over LM Studio's SDK protocol".into()));
            }
            LlmInner::Remote { remote, .. } => remote.predict(self.specifier(), &input, config, tx)?,
        };
        Ok((rx, cancel))
    }
}

/// The prompt `chat` is for the model with `config`: its template given the tools the config
/// offers, and how they are used.
#[cfg(feature = "embedded")]
fn render_chat(l: &embedded::Loaded, chat: &[ChatMessage], config: &Config) -> Result<(String, Option<ToolUse>)> {
    let template = l.engine.template()?;
    let tools = ToolUse::new(template.tool_syntax(), config);
    let traffic = chat.iter().any(ChatMessage::is_tool_traffic);
    let (messages, offered) = match &tools {
        Some(tools) => (tools.messages(chat), tools.template_tools()),
        // A template without tools of its own reads earlier calls and results in the generic
        // form, whether tools are offered now or not.
        None if template.tool_syntax() == Syntax::Generic && traffic => (generic_history(chat), Vec::new()),
        None if traffic => (family_history(template.tool_syntax(), chat), Vec::new()),
        None => (chat.to_vec(), Vec::new()),
    };
    let prompt = template.render_with(&messages, &offered, config.enable_thinking)?;
    Ok((prompt, tools))
}

/// The structured output a tool use's constraint is: compact JSON (see [`crate::tools::compact`]).
#[cfg(feature = "embedded")]
fn grammar_of(constraint: Constraint) -> Result<Structured> {
    use crate::engine::json_schema_grammar;
    use crate::tools::{blocks_grammar, compact};
    Ok(Structured::Gbnf(match constraint {
        Constraint::Json(schema) => compact(&json_schema_grammar(&schema)?),
        Constraint::Blocks { schema, open, close, most, .. } => {
            blocks_grammar(&compact(&json_schema_grammar(&schema)?), open, close, most)
        }
    }))
}
