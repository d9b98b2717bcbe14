//! The embedded backend of [`Client`](super::Client): models of a store loaded into this process,
//! each with its engine thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{answers_to, Llm, LlmInner};
use crate::engine::Engine;
use crate::lock;
use crate::store::{ModelStore, StoredModel};
use crate::types::config::LoadConfig;
use crate::types::error::{Error, Result};
use crate::types::result::{ModelEntry, ModelInfo};

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// The loaded instances of one store.
pub(super) struct Embedded {
    store: ModelStore,
    /// How `llm()` loads a model that is not loaded yet.
    default_load: LoadConfig,
    loaded: Mutex<Vec<Arc<Loaded>>>,
    /// Held while a model loads, so two callers asking for the same model load it once.
    loading: Mutex<()>,
}

/// A loaded model instance.
pub(super) struct Loaded {
    pub engine: Engine,
    pub info: ModelInfo,
}

impl Embedded {
    pub fn new(store: ModelStore, default_load: LoadConfig) -> Self {
        Self { store, default_load, loaded: Mutex::new(Vec::new()), loading: Mutex::new(()) }
    }

    pub fn store(&self) -> &ModelStore {
        &self.store
    }

    pub fn default_load(&self) -> &LoadConfig {
        &self.default_load
    }

    pub fn get_or_load(&self, query: &str, config: &LoadConfig) -> Result<(Llm, bool)> {
        let _loading = lock(&self.loading);
        if let Some(found) = self.get_loaded(query) {
            return Ok((found, false));
        }
        let stored = self.store.resolve(query)?;
        if let Some(found) = self.get_loaded(&stored.key) {
            return Ok((found, false));
        }
        Ok((self.load_stored(stored, config)?, true))
    }

    pub fn load(&self, query: &str, config: &LoadConfig) -> Result<Llm> {
        let _loading = lock(&self.loading);
        let stored = self.store.resolve(query)?;
        self.load_stored(stored, config)
    }

    pub fn first_loaded(&self) -> Option<Llm> {
        lock(&self.loaded).first().map(|l| handle(Arc::clone(l)))
    }

    pub fn get_loaded(&self, query: &str) -> Option<Llm> {
        lock(&self.loaded).iter().find(|l| answers_to(&l.info, query)).map(|l| handle(Arc::clone(l)))
    }

    pub fn list_loaded(&self) -> Vec<ModelInfo> {
        lock(&self.loaded).iter().map(|l| l.info.clone()).collect()
    }

    pub fn list_models(&self) -> Result<Vec<ModelEntry>> {
        let loaded = self.list_loaded();
        let mut entries: Vec<ModelEntry> = Vec::new();
        for info in self.store.list()?.into_iter().filter_map(|m| m.info.ok()) {
            if entries.iter().all(|e| e.info.model_key != info.model_key) {
                let instances = loaded.iter().filter(|l| l.model_key == info.model_key).cloned().collect();
                entries.push(ModelEntry { info, instances });
            }
        }
        Ok(entries)
    }

    pub fn unload(&self, identifier: &str) -> Result<()> {
        let removed = {
            let mut loaded = lock(&self.loaded);
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

    fn load_stored(&self, stored: StoredModel, config: &LoadConfig) -> Result<Llm> {
        let mut info = stored.valid_info()?;
        info.identifier = Some(self.unique_identifier(config.identifier.as_deref().unwrap_or(&info.model_key)));
        info.instance_reference = Some(format!("inst-{}", NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)));
        let engine = Engine::load(&stored.path, &mut info, stored.sliding_window.unwrap_or(0), config)?;
        let loaded = Arc::new(Loaded { engine, info });
        lock(&self.loaded).push(Arc::clone(&loaded));
        tracing::info!(identifier = loaded.info.identifier, path = %stored.path.display(), "loaded");
        Ok(handle(loaded))
    }

    /// `base`, or `base:2`, `base:3`... if that identifier is taken (LM Studio's scheme).
    fn unique_identifier(&self, base: &str) -> String {
        let loaded = lock(&self.loaded);
        let taken = |id: &str| loaded.iter().any(|l| l.info.identifier.as_deref() == Some(id));
        if !taken(base) {
            return base.to_owned();
        }
        (2..).map(|n| format!("{base}:{n}")).find(|id| !taken(id)).unwrap_or_default()
    }
}

fn handle(loaded: Arc<Loaded>) -> Llm {
    Llm { inner: LlmInner::Embedded(loaded) }
}
