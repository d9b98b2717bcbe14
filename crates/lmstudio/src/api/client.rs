//! The blocking API: a [`Client`] owns the models directory and the loaded models; an [`Llm`] is a
//! handle to one loaded model that completes prompts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::api::config::{Config, LoadConfig};
use crate::api::error::{Error, Result};
use crate::api::result::{ChatMessage, ModelInfo, PredictionResult};
use crate::api::stream::{AsyncPredictionStream, PredictionStream};
use crate::engine::Engine;
use crate::store::gguf::GgufHeader;
use crate::store::{ModelStore, StoredModel, DEFAULT_MODEL_KEY};

/// Runs models in this process (LM Studio's "embedded" mode): the entry point of the library.
///
/// Cloning is cheap and shares the loaded models.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
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

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

impl Client {
    /// A client on the models directory named by `$LMSTUDIO_MODELS_DIR` (else the platform's).
    pub fn new() -> Self {
        Self::with_store(ModelStore::from_env())
    }

    /// A client on the given models directory.
    pub fn with_store(store: ModelStore) -> Self {
        Self::with_load_config(store, LoadConfig::default())
    }

    /// A client on the given models directory that loads models with `default_load` when
    /// [`Client::llm`] finds them not loaded.
    pub fn with_load_config(store: ModelStore, default_load: LoadConfig) -> Self {
        let inner = Inner { store, default_load, loaded: Mutex::new(Vec::new()), loading: Mutex::new(()) };
        Self { inner: Arc::new(inner) }
    }

    /// The models directory.
    pub fn store(&self) -> &ModelStore {
        &self.inner.store
    }

    /// A handle to the model `query` names: a loaded instance's identifier, else a model in the
    /// store, loaded with the default [`LoadConfig`] if it is not loaded yet.
    pub fn llm(&self, query: &str) -> Result<Llm> {
        self.get_or_load(query, &self.inner.default_load).map(|(llm, _)| llm)
    }

    /// The loaded instance `query` names, else the model it names loaded with `config`; the flag
    /// says whether this call loaded it (LM Studio's `getOrLoad`).
    pub fn get_or_load(&self, query: &str, config: &LoadConfig) -> Result<(Llm, bool)> {
        config.validate()?;
        let _loading = lock(&self.inner.loading);
        if let Some(found) = self.find_loaded(query) {
            return Ok((Llm { loaded: found }, false));
        }
        let stored = self.inner.store.resolve(query)?;
        if let Some(found) = self.find_loaded(&stored.key) {
            return Ok((Llm { loaded: found }, false));
        }
        Ok((self.load_stored(stored, config)?, true))
    }

    /// LM Studio's `lms.llm()` with no name: any loaded model, else the default model
    /// (`gemma-3-270m`; `lms get` fetches it).
    pub fn default_llm(&self) -> Result<Llm> {
        if let Some(first) = lock(&self.inner.loaded).first() {
            return Ok(Llm { loaded: Arc::clone(first) });
        }
        self.llm(DEFAULT_MODEL_KEY)
    }

    /// The async form of [`Client::llm`] (loading runs on tokio's blocking pool).
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
        let _loading = lock(&self.inner.loading);
        let stored = self.inner.store.resolve(query)?;
        self.load_stored(stored, config)
    }

    fn load_stored(&self, stored: StoredModel, config: &LoadConfig) -> Result<Llm> {
        let mut info =
            stored.info.clone().map_err(|reason| Error::InvalidModelFile { path: stored.path.clone(), reason })?;
        let header = GgufHeader::read(&stored.path)
            .map_err(|e| Error::InvalidModelFile { path: stored.path.clone(), reason: e.to_string() })?;
        let window = header
            .architecture()
            .and_then(|a| header.uint(&format!("{a}.attention.sliding_window")))
            .and_then(|w| u32::try_from(w).ok())
            .unwrap_or(0);
        info.identifier = Some(self.unique_identifier(config.identifier.as_deref().unwrap_or(&info.model_key)));
        info.instance_reference = Some(format!("inst-{}", NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)));
        let engine = Engine::load(&stored.path, &mut info, window, config)?;
        let loaded = Arc::new(Loaded { engine, info });
        lock(&self.inner.loaded).push(Arc::clone(&loaded));
        tracing::info!(identifier = loaded.info.identifier, path = %stored.path.display(), "loaded");
        Ok(Llm { loaded })
    }

    /// `base`, or `base:2`, `base:3`... if that identifier is taken (LM Studio's scheme).
    fn unique_identifier(&self, base: &str) -> String {
        let loaded = lock(&self.inner.loaded);
        let taken = |id: &str| loaded.iter().any(|l| l.info.identifier.as_deref() == Some(id));
        if !taken(base) {
            return base.to_owned();
        }
        (2..).map(|n| format!("{base}:{n}")).find(|id| !taken(id)).unwrap_or_default()
    }

    fn find_loaded(&self, query: &str) -> Option<Arc<Loaded>> {
        lock(&self.inner.loaded)
            .iter()
            .find(|l| {
                l.info.identifier.as_deref() == Some(query) || l.info.instance_reference.as_deref() == Some(query)
            })
            .cloned()
    }

    /// The loaded instance `query` names (identifier or instance reference), without loading.
    pub fn get_loaded(&self, query: &str) -> Option<Llm> {
        self.find_loaded(query).map(|loaded| Llm { loaded })
    }

    /// The loaded instances.
    pub fn list_loaded(&self) -> Vec<ModelInfo> {
        lock(&self.inner.loaded).iter().map(|l| l.info.clone()).collect()
    }

    /// The model files in the store, with their info or why they cannot be read.
    pub fn list_downloaded(&self) -> Result<Vec<StoredModel>> {
        self.inner.store.list()
    }

    /// Unloads the instance named `identifier`. Predictions still running on it end with
    /// `modelUnloaded`; handles to it fail with [`Error::ModelUnloaded`] from then on.
    pub fn unload(&self, identifier: &str) -> Result<()> {
        let removed = {
            let mut loaded = lock(&self.inner.loaded);
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

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Engine(format!("loading task failed: {e}")))?
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere never leaves these lists half-updated: take the data anyway.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A handle to a loaded model. Cloning is cheap; the model stays loaded until
/// [`Client::unload`], even when every handle is dropped.
#[derive(Clone)]
pub struct Llm {
    loaded: Arc<Loaded>,
}

impl Llm {
    /// The instance's info: key, display name, architecture, size, context length...
    pub fn info(&self) -> &ModelInfo {
        &self.loaded.info
    }

    /// The identifier this instance answers to.
    pub fn identifier(&self) -> &str {
        self.loaded.info.identifier.as_deref().unwrap_or_default()
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
    pub fn count_tokens(&self, text: &str) -> usize {
        self.loaded.engine.count_tokens(text)
    }

    /// The token ids of `text` (with the BOS token the model adds to a prompt).
    pub fn tokenize(&self, text: &str) -> Vec<i32> {
        self.loaded.engine.token_ids(text)
    }

    /// Formats a chat as a prompt with the model's chat template, ending where the assistant's
    /// answer begins; complete it to get the answer.
    pub fn apply_prompt_template(&self, messages: &[ChatMessage]) -> Result<String> {
        self.loaded.engine.apply_chat_template(messages, self.loaded.info.architecture.as_deref())
    }

    fn submit(
        &self,
        prompt: &str,
        config: &Config,
    ) -> Result<(flume::Receiver<crate::engine::Event>, Arc<AtomicBool>)> {
        let valid = config.validate()?;
        let (tx, rx) = flume::unbounded();
        let cancel = Arc::new(AtomicBool::new(false));
        self.loaded.engine.submit(prompt, valid, tx, Arc::clone(&cancel))?;
        Ok((rx, cancel))
    }
}
