//! The embedded backend of [`Client`](super::Client): models of a store loaded into this process,
//! each with its engine thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::lookup::{answers_to, find_instance};
use crate::engine::{Engine, ModelShape};
use crate::store::{ModelStore, StoredModel};
use crate::types::config::{Guardrail, LoadConfig};
use crate::types::error::{Error, Result};
use crate::types::event::{LoadEvent, OnLoad};
use crate::types::result::{InstanceState, MemoryEstimate, ModelEntry, ModelInfo};
use crate::types::sync::lock;

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// The loaded instances of one store.
pub(super) struct Embedded {
    store: ModelStore,
    /// How `llm()` loads a model that is not loaded yet.
    default_load: LoadConfig,
    loaded: Arc<Mutex<Vec<Arc<Loaded>>>>,
    /// Held while a model loads, so two callers asking for the same model load it once.
    loading: Mutex<()>,
    /// Started with the first instance that has a TTL: unloads idle ones.
    reaper: OnceLock<()>,
    /// A load on demand (JIT) first unloads the instances earlier ones made.
    auto_evict: AtomicBool,
    /// Instances whose TTL ran out, as they were loaded: a request that names one again loads it
    /// with the same settings (identifier, context, slots, TTL), not the defaults.
    expired: Arc<Mutex<Vec<Expired>>>,
    /// Where every instance reports the prompts it is given ([`crate::Client::on_prompt`]).
    on_prompt: Prompts,
}

/// The observer of prompts, shared by a client and its instances (set after they load, too).
pub(super) type Prompts = Arc<Mutex<Option<crate::types::event::OnPrompt>>>;

/// How an instance that its TTL unloaded was loaded.
struct Expired {
    key: String,
    config: LoadConfig,
    jit: bool,
}

/// Settings of TTL-unloaded instances kept for their reload, at most.
const EXPIRED_KEPT: usize = 32;

/// A loaded model instance.
pub(super) struct Loaded {
    pub engine: Engine,
    pub info: ModelInfo,
    /// Idle time after which the instance is unloaded.
    ttl: Option<Duration>,
    /// Loaded on demand (by a lookup that found nothing loaded), not by an explicit load.
    jit: bool,
    /// How it was loaded (for its reload after its TTL ran out).
    config: LoadConfig,
    /// Its memory estimate at load.
    estimate: MemoryEstimate,
    /// When it was last used (a prediction submitted or running, a lookup).
    last_used: Mutex<Instant>,
    /// Where draft models are found.
    store: ModelStore,
    /// Where its prompts are reported.
    on_prompt: Prompts,
}

impl Loaded {
    /// Reports the prompt a prediction gives the model, where an observer wants it.
    pub fn report_prompt(&self, prompt: &str) {
        let observer = lock(&self.on_prompt).clone();
        if let Some(observer) = observer {
            observer(&crate::types::event::PromptEvent {
                model_identifier: self.info.identifier.as_deref().unwrap_or(&self.info.model_key),
                model_path: &self.info.path,
                prompt,
            });
        }
    }

    /// Starts the idle count again.
    pub fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }

    /// The store's entry of the draft model `query` names, its header checked.
    pub fn draft_file(&self, query: &str) -> Result<StoredModel> {
        let stored = self.store.resolve(query)?;
        stored.valid_info()?;
        Ok(stored)
    }

    /// Whether its TTL has run out: idle (nothing running or queued) for that long.
    fn expired(&self, now: Instant) -> bool {
        let Some(ttl) = self.ttl else { return false };
        let activity = self.engine.activity();
        if activity.running + activity.queued > 0 {
            self.touch();
            return false;
        }
        now.duration_since(*lock(&self.last_used)) >= ttl
    }

    /// Its info with its state now.
    fn info_now(&self) -> ModelInfo {
        let activity = self.engine.activity();
        let ttl_left = self.ttl.map(|ttl| match activity.running + activity.queued {
            0 => ttl.saturating_sub(lock(&self.last_used).elapsed()),
            _ => ttl,
        });
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let state = InstanceState {
            jit: self.jit,
            ttl_ms: self.ttl.map(millis),
            ttl_left_ms: ttl_left.map(millis),
            memory_mib: self.estimate.weights_mib
                + self.estimate.kv_cache_mib
                + self.estimate.compute_mib
                + (activity.prompt_cache_bytes >> 20) as u64,
            activity,
        };
        ModelInfo { state: Some(state), ..self.info.clone() }
    }
}

/// How often idle instances are looked for.
const REAP_EVERY: Duration = Duration::from_millis(250);

impl Embedded {
    pub fn new(store: ModelStore, default_load: LoadConfig) -> Self {
        Self {
            store,
            default_load,
            loaded: Arc::new(Mutex::new(Vec::new())),
            loading: Mutex::new(()),
            reaper: OnceLock::new(),
            auto_evict: AtomicBool::new(false),
            expired: Arc::new(Mutex::new(Vec::new())),
            on_prompt: Prompts::default(),
        }
    }

    pub fn set_on_prompt(&self, observer: Option<crate::types::event::OnPrompt>) {
        *lock(&self.on_prompt) = observer;
    }

    pub fn set_auto_evict(&self, on: bool) {
        self.auto_evict.store(on, Ordering::SeqCst);
    }

    /// Starts the thread that unloads instances whose TTL ran out; it ends with the client.
    fn start_reaper(&self) {
        self.reaper.get_or_init(|| {
            let loaded: Weak<Mutex<Vec<Arc<Loaded>>>> = Arc::downgrade(&self.loaded);
            let remembered = Arc::downgrade(&self.expired);
            let spawned = std::thread::Builder::new().name("lms-ttl".into()).spawn(move || {
                while let (Some(loaded), Some(remembered)) = (loaded.upgrade(), remembered.upgrade()) {
                    let now = Instant::now();
                    // Held from before an instance leaves the loaded list until it is remembered
                    // (and its engine is down): a request naming it meanwhile waits here, in
                    // `take_expired`, instead of finding it nowhere.
                    let mut remembered = lock(&remembered);
                    let expired = take_where(&loaded, |l| l.expired(now));
                    drop(loaded);
                    for l in expired {
                        tracing::info!(identifier = l.info.identifier, "unloaded: its TTL ran out");
                        l.engine.shutdown();
                        let config = LoadConfig { identifier: l.info.identifier.clone(), ..l.config.clone() };
                        if remembered.len() == EXPIRED_KEPT {
                            remembered.remove(0);
                        }
                        remembered.push(Expired { key: l.info.model_key.clone(), config, jit: l.jit });
                    }
                    drop(remembered);
                    std::thread::sleep(REAP_EVERY);
                }
            });
            if let Err(e) = spawned {
                tracing::error!("no TTL thread ({e}): instances stay loaded until unloaded");
            }
        });
    }

    pub fn store(&self) -> &ModelStore {
        &self.store
    }

    pub fn default_load(&self) -> &LoadConfig {
        &self.default_load
    }

    pub fn get_or_load(&self, query: &str, config: &LoadConfig, on_load: &OnLoad) -> Result<(Arc<Loaded>, bool)> {
        let _loading = lock(&self.loading);
        // Asking for a loaded instance is using it: its TTL starts again (a mere lookup, such as a
        // metrics scrape, is not).
        let used = |found: Arc<Loaded>| {
            found.touch();
            Ok((found, false))
        };
        if let Some(found) = self.get_loaded(query) {
            return used(found);
        }
        // An instance its TTL unloaded comes back as it was (LM Studio forgets its settings).
        let (stored, config, jit) = match self.take_expired(query) {
            Some(e) => (self.store.resolve(&e.key)?, e.config, e.jit),
            None => (self.store.resolve(query)?, config.clone(), true),
        };
        if let Some(found) = self.get_loaded(&stored.key) {
            return used(found);
        }
        if jit && self.auto_evict.load(Ordering::SeqCst) {
            for l in take_where(&self.loaded, |l| l.jit) {
                tracing::info!(identifier = l.info.identifier, for_model = stored.key, "unloaded: another JIT load");
                on_load(LoadEvent::UnloadingOther(Box::new(l.info.clone())));
                l.engine.shutdown();
            }
        }
        Ok((self.load_stored(stored, &config, jit, on_load)?, true))
    }

    /// The settings of the TTL-unloaded instance `query` names (identifier or key), taken.
    fn take_expired(&self, query: &str) -> Option<Expired> {
        let mut expired = lock(&self.expired);
        let names = |e: &Expired| e.config.identifier.as_deref() == Some(query) || e.key == query;
        let at = expired.iter().rposition(names)?;
        let e = expired.remove(at);
        // Its identifier may have been taken since: then it gets a new one.
        let taken =
            lock(&self.loaded).iter().any(|l| e.config.identifier.as_deref().is_some_and(|id| answers_to(&l.info, id)));
        Some(if taken { Expired { config: LoadConfig { identifier: None, ..e.config }, ..e } } else { e })
    }

    pub fn load(&self, query: &str, config: &LoadConfig, on_load: &OnLoad) -> Result<Arc<Loaded>> {
        let _loading = lock(&self.loading);
        let stored = self.store.resolve(query)?;
        // An explicit load says how the model is loaded from now on.
        lock(&self.expired).retain(|e| e.key != stored.key);
        self.load_stored(stored, config, false, on_load)
    }

    pub fn first_loaded(&self) -> Option<Arc<Loaded>> {
        lock(&self.loaded).first().map(Arc::clone)
    }

    /// The instance `query` names (identifier or instance reference), else any instance of the
    /// model whose key it is (`key`, or `key:2` once `key` was unloaded).
    pub fn get_loaded(&self, query: &str) -> Option<Arc<Loaded>> {
        find_instance(&lock(&self.loaded), |l| &l.info, query).map(Arc::clone)
    }

    pub fn list_loaded(&self) -> Vec<ModelInfo> {
        lock(&self.loaded).iter().map(|l| l.info_now()).collect()
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

    fn load_stored(
        &self,
        stored: StoredModel,
        config: &LoadConfig,
        jit: bool,
        on_load: &OnLoad,
    ) -> Result<Arc<Loaded>> {
        let mut info = stored.valid_info()?;
        config.validate()?;
        // The devices are listed once a load: the estimate and the engine place the layers alike.
        let (offload, estimate) = place(&stored, &info, config)?;
        check_memory(estimate, config, available_memory(), offload.gpu_free)?;
        info.identifier = Some(match &config.identifier {
            Some(id) if lock(&self.loaded).iter().any(|l| answers_to(&l.info, id)) => {
                return Err(Error::IdentifierInUse { identifier: id.clone() })
            }
            Some(id) => id.clone(),
            None => self.unique_identifier(&info.model_key),
        });
        info.instance_reference = Some(format!("inst-{}", NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)));
        let shape = ModelShape { sliding_window: stored.sliding_window.unwrap_or(0), offload };
        let engine = Engine::load(&stored.path, &mut info, shape, config, on_load)?;
        let ttl = config.ttl.map(Duration::from_secs);
        let loaded = Arc::new(Loaded {
            engine,
            info,
            ttl,
            jit,
            config: config.clone(),
            estimate,
            last_used: Mutex::new(Instant::now()),
            store: self.store.clone(),
            on_prompt: Arc::clone(&self.on_prompt),
        });
        lock(&self.loaded).push(Arc::clone(&loaded));
        if ttl.is_some() {
            self.start_reaper();
        }
        tracing::info!(identifier = loaded.info.identifier, path = %stored.path.display(), "loaded");
        Ok(loaded)
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

/// Compute buffers and the rest of a context beyond its weights and KV cache: 32 MiB and a
/// sixteenth of the weights (llama.cpp's compute buffers grow with the model). For the default
/// model, measured RSS growth of a load and a first prediction (`tests/memory.rs`): 306 MiB at
/// 1,024 x 1 slot (estimate 306), 536 at 4,096 x 4 (576), 800 at 16,384 x 2 (864).
fn overhead(weights: u64) -> u64 {
    (32 << 20) + weights / 16
}

/// What the output layer's device holds for the logits of a batch: llama.cpp reserves its compute
/// buffer for a whole batch of outputs (512 x 262,144 floats, 512 MiB, for Gemma 3). On the CPU
/// the pages stay untouched (one row a prompt chunk is read), so they count on a GPU only.
fn batch_logits(vocab: u64) -> u64 {
    u64::from(crate::engine::BATCH_TOKENS) * vocab * 4
}

/// What a decoder's embedding decode writes beyond its activations: the output layer's logits of
/// every token of a chunk, in llama.cpp's compute buffer and again in its output buffer (a chunk
/// of 512 tokens: 1 GiB for Gemma 3's vocabulary; a shorter input touches its share).
fn embedding_outputs(vocab: u64) -> u64 {
    2 * u64::from(crate::engine::embed::CHUNK) * vocab * 4
}

/// What loading `stored` with `config` takes, with `gpu_layers` of its layers offloaded: the
/// weights (read into memory), the KV cache of every slot, compute buffers, and the host prompt
/// cache at its limit; and what of it lies on the GPU, as llama.cpp places it (the offloaded
/// layers' weights, their share of the KV cache unless it is kept on the CPU, compute buffers
/// beside them with a batch's logits: the output layer is the first to go). The GPU part is
/// llama.cpp's placement rule applied to the file's tensor table; on Mesa's software Vulkan device
/// the blocks' weights and the KV cache are what llama.cpp allocated (bench/README.md, "From ARCHITECTURE.md").
pub(super) fn estimate(stored: &StoredModel, info: &ModelInfo, config: &LoadConfig, gpu_layers: u32) -> MemoryEstimate {
    // An embedding model: its trained context by default, one pool of KV cells (none for an
    // encoder), no prompt cache; a decoder's chunk of outputs (crate::engine::embed) on top.
    let embedding = info.is_embedding();
    let max_context = info.max_context_length.max(16);
    let default_context = if embedding { max_context } else { u64::from(crate::engine::DEFAULT_CONTEXT) };
    let context = config.context_length.map_or(default_context, u64::from).min(max_context);
    let sequences = if embedding { 1 } else { u64::from(config.parallel()) };
    let kv = stored.kv_bytes_per_token.unwrap_or(0).saturating_mul(context).saturating_mul(sequences);
    let prompt_cache = if embedding { 0 } else { u64::from(config.prompt_cache_mib) << 20 };
    let decodes = match &stored.weights {
        // A decoder: chunks of tokens, with their logits.
        Some(w) if embedding && stored.kv_bytes_per_token != Some(0) => embedding_outputs(w.vocab),
        // An encoder: its whole context in one decode.
        _ if embedding => stored.activation_bytes_per_token.unwrap_or(0).saturating_mul(context),
        _ => 0,
    };
    let counted = match config.guardrail {
        Guardrail::Strict => prompt_cache,
        Guardrail::Relaxed | Guardrail::Off => 0,
    };
    let (gpu_weights, copied, gpu_kv, logits) = match &stored.weights {
        Some(w) if gpu_layers > 0 && !w.blocks.is_empty() => {
            let placed = w.offloaded(gpu_layers);
            let kv_share = kv / w.blocks.len() as u64 * placed.blocks as u64;
            let gpu_kv = if config.offload_kv_cache_to_gpu.unwrap_or(true) { kv_share } else { 0 };
            (placed.gpu_bytes, placed.copied_bytes, gpu_kv, batch_logits(w.vocab))
        }
        _ => (0, 0, 0, 0),
    };
    let weights = info.size_bytes + copied;
    let host_weights = weights.saturating_sub(gpu_weights);
    let gpu_compute = if gpu_weights > 0 { overhead(gpu_weights) + logits } else { 0 };
    let host_compute = overhead(host_weights) + decodes;
    let host = host_weights.saturating_add(kv - gpu_kv).saturating_add(host_compute).saturating_add(counted);
    let gpu = gpu_weights + gpu_kv + gpu_compute;
    MemoryEstimate {
        weights_mib: weights >> 20,
        kv_cache_mib: kv >> 20,
        compute_mib: (host_compute + gpu_compute) >> 20,
        prompt_cache_mib: prompt_cache >> 20,
        total_mib: host >> 20,
        gpu_mib: gpu >> 20,
    }
}

/// Where loading `stored` with `config` puts its layers, on the devices found now, and what that
/// takes. Where the config names no offload, the layers that fit in the GPU's free memory go
/// there (all of them where the model fits, none without a GPU), as LM Studio offloads by default.
pub(super) fn place(
    stored: &StoredModel,
    info: &ModelInfo,
    config: &LoadConfig,
) -> Result<(crate::engine::Offload, MemoryEstimate)> {
    let mut offload = crate::engine::offload(config, stored.layers)?;
    let mut placed = estimate(stored, info, config, offload.gpu_layers);
    if let Some(free) = offload.gpu_free.filter(|&f| offload.fit && placed.gpu_mib > f >> 20) {
        let most = stored.weights.as_ref().map_or(0, |w| w.blocks.len() as u32 + 1).min(offload.gpu_layers);
        let fits =
            (0..most).rev().map(|n| (n, estimate(stored, info, config, n))).find(|(_, e)| e.gpu_mib <= free >> 20);
        if let Some((n, e)) = fits {
            tracing::info!(layers = n, free_mib = free >> 20, "not every layer fits on the GPU");
            (offload.gpu_layers, placed) = (n, e);
        }
    }
    Ok((offload, placed))
}

/// The guardrail: a load whose estimate is more than the machine has available (in host memory,
/// or on the GPU it offloads to) is refused, so that a load (from a web page, a script in a loop,
/// a 128k context) cannot push the machine into swap, the OOM killer or a failed allocation on the
/// GPU. Without a figure of available memory (not Linux; no GPU), nothing is checked there.
fn check_memory(
    estimate: MemoryEstimate,
    config: &LoadConfig,
    available: Option<u64>,
    gpu_free: Option<u64>,
) -> Result<()> {
    if config.guardrail == Guardrail::Off {
        return Ok(());
    }
    if let Some(available) = available.filter(|&a| estimate.total_mib > a >> 20) {
        return Err(Error::InsufficientMemory { estimate, available_mib: available >> 20 });
    }
    if let Some(free) = gpu_free.filter(|&f| estimate.gpu_mib > f >> 20) {
        return Err(Error::InsufficientGpuMemory { estimate, free_mib: free >> 20 });
    }
    Ok(())
}

/// What the machine has available for a load, in bytes: `MemAvailable` of `/proc/meminfo`, or
/// what this process's cgroup (v2) may still use when that is less (containers, systemd units).
pub(super) fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 =
        meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.split_whitespace().next()?.parse().ok()?;
    let system = kb.checked_mul(1024)?;
    Some(cgroup_headroom().map_or(system, |c| c.min(system)))
}

/// `memory.max - memory.current` of this process's cgroup v2, when it has a limit.
fn cgroup_headroom() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok().and_then(|v| v.trim().parse::<u64>().ok());
    let (max, current) = (read("memory.max")?, read("memory.current")?);
    Some(max.saturating_sub(current))
}

/// Takes the instances `pred` picks out of the list (their engines still to be shut down).
fn take_where(loaded: &Mutex<Vec<Arc<Loaded>>>, pred: impl Fn(&Loaded) -> bool) -> Vec<Arc<Loaded>> {
    let mut list = lock(loaded);
    let (taken, kept) = std::mem::take(&mut *list).into_iter().partition(|l| pred(l));
    *list = kept;
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DEFAULT_MODEL_KEY;

    #[test]
    fn a_load_that_needs_more_memory_than_is_available_is_refused() {
        let stored = ModelStore::from_env().resolve(DEFAULT_MODEL_KEY).expect("the default model (lms get)");
        let info = stored.valid_info().expect("valid");
        // Gemma 3 270M: 18 layers, 1 KV head, keys and values of 256.
        let kv = stored.kv_bytes_per_token.expect("the header gives the attention shape");
        assert_eq!(kv, 18 * (256 + 256) * 2);
        let config =
            LoadConfig { context_length: Some(4096), parallel: Some(4), prompt_cache_mib: 0, ..Default::default() };
        let needed = info.size_bytes + kv * 4096 * 4 + overhead(info.size_bytes);
        let check = |c: &LoadConfig, available| check_memory(estimate(&stored, &info, c, 0), c, available, None);
        assert!(check(&config, Some(needed)).is_ok());
        match check(&config, Some(needed - (1 << 20))) {
            Err(e @ Error::InsufficientMemory { estimate, available_mib }) => {
                assert_eq!((estimate.total_mib, available_mib), (needed >> 20, (needed >> 20) - 1));
                assert_eq!(estimate.kv_cache_mib, (kv * 4096 * 4) >> 20);
                // The message names every number.
                let m = e.to_string();
                for n in [
                    estimate.total_mib,
                    estimate.weights_mib,
                    estimate.kv_cache_mib,
                    estimate.compute_mib,
                    available_mib,
                ] {
                    assert!(m.contains(&n.to_string()), "{n} missing: {m}");
                }
            }
            other => panic!("expected InsufficientMemory, got {other:?}"),
        }
        // Strict counts the prompt cache at its limit; relaxed does not; off checks nothing.
        let cached = LoadConfig { prompt_cache_mib: 512, ..config.clone() };
        assert!(check(&cached, Some(needed)).is_err());
        let relaxed = LoadConfig { guardrail: Guardrail::Relaxed, ..cached.clone() };
        assert!(check(&relaxed, Some(needed)).is_ok());
        let off = LoadConfig { guardrail: Guardrail::Off, ..cached };
        assert!(check(&off, Some(1)).is_ok());
        // Eight times the context, eight times the KV cache: refused where the first fitted.
        let long = LoadConfig { context_length: Some(32768), ..config.clone() };
        assert!(check(&long, Some(needed)).is_err());
        assert!(check(&long, None).is_ok(), "no figure, no check");
    }

    #[test]
    fn offloaded_layers_are_counted_in_gpu_memory() {
        let stored = ModelStore::from_env().resolve(DEFAULT_MODEL_KEY).expect("the default model (lms get)");
        let info = stored.valid_info().expect("valid");
        // Gemma 3 270M: 18 blocks; the output layer is its norm, the weight tied to the embeddings.
        let w = stored.weights.clone().expect("the tensor table");
        assert_eq!(w.blocks.len(), 18);
        assert!(w.output > 0 && w.tied_output > w.blocks.iter().sum::<u64>(), "{w:?}");
        assert!(w.input + w.blocks.iter().sum::<u64>() + w.output <= info.size_bytes);
        let config =
            LoadConfig { context_length: Some(4096), parallel: Some(2), prompt_cache_mib: 0, ..Default::default() };
        let kv = stored.kv_bytes_per_token.expect("the attention shape") * 4096 * 2;
        let cpu = estimate(&stored, &info, &config, 0);
        assert_eq!(cpu.gpu_mib, 0);
        // All 18 blocks and the output layer: the host keeps the input layer (the embeddings).
        let all = estimate(&stored, &info, &config, 19);
        let on_gpu = w.blocks.iter().sum::<u64>() + w.output + w.tied_output;
        // A batch's logits beside the output layer: 512 tokens of the 262,144-entry vocabulary.
        assert_eq!(w.vocab, 262_144);
        let logits = 512 * 262_144 * 4;
        assert_eq!(all.gpu_mib, (on_gpu + kv + overhead(on_gpu) + logits) >> 20);
        let host_weights = info.size_bytes - w.blocks.iter().sum::<u64>() - w.output;
        assert_eq!(all.total_mib, (host_weights + overhead(host_weights)) >> 20, "no KV cache on the host");
        assert_eq!((all.kv_cache_mib, all.weights_mib), (cpu.kv_cache_mib, (info.size_bytes + w.tied_output) >> 20));
        // The KV cache kept on the CPU; half the layers (the output and the last 9 blocks).
        let kv_on_cpu = LoadConfig { offload_kv_cache_to_gpu: Some(false), ..config.clone() };
        assert_eq!(estimate(&stored, &info, &kv_on_cpu, 19).gpu_mib, (on_gpu + overhead(on_gpu) + logits) >> 20);
        let half = estimate(&stored, &info, &config, 10);
        let on_gpu = w.blocks[9..].iter().sum::<u64>() + w.output + w.tied_output;
        assert_eq!(half.gpu_mib, (on_gpu + kv / 2 + overhead(on_gpu) + logits) >> 20);
        // The guardrail checks each memory against its own figure.
        let host = Some((all.total_mib + 1) << 20);
        assert!(check_memory(all, &config, host, Some(all.gpu_mib << 20)).is_ok());
        assert!(matches!(check_memory(cpu, &config, host, None), Err(Error::InsufficientMemory { .. })));
        match check_memory(all, &config, host, Some((all.gpu_mib - 1) << 20)) {
            Err(e @ Error::InsufficientGpuMemory { estimate, free_mib }) => {
                assert_eq!((estimate, free_mib), (all, all.gpu_mib - 1));
                let m = e.to_string();
                assert!(m.contains(&format!("{} MiB of GPU memory", all.gpu_mib)) && m.contains("GPU has"), "{m}");
            }
            other => panic!("expected InsufficientGpuMemory, got {other:?}"),
        }
        let off = LoadConfig { guardrail: Guardrail::Off, ..config };
        assert!(check_memory(all, &off, Some(1), Some(1)).is_ok());
    }
}
