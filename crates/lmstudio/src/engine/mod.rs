//! The engine: the only code that touches llama.cpp. One owner thread per loaded model holds the
//! `LlamaContext`; predictions reach it over a bounded queue and each gets its own event channel.
//!
//! Architecture invariant: nothing outside this module names a `llama_cpp_2` type.

mod backend;
#[cfg(feature = "benching")]
pub mod benching;
mod compute;
mod disk_cache;
mod draft;
pub(crate) mod embed;
mod ffi;
mod grammar;
mod huge_pages;
pub(crate) use grammar::json_schema_grammar;
mod job;
mod prompt_cache;
mod rpc;
pub use rpc::RpcWorker;
mod rules;
mod sampler;
mod seq_state;
mod slot;
mod worker;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use llama_cpp_2::model::params::{LlamaModelParams, LlamaSplitMode};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::vocab::LlamaVocab;

use self::backend::backend;
use self::job::{EngineParams, Job, Shared};
use crate::store::StoredModel;
use crate::template::{self, ChatTemplate};
use crate::types::config::{ContextOverflowPolicy, GpuOffload, LoadConfig, ValidConfig};
use crate::types::error::{Error, Result};
use crate::types::event::{Event, LoadEvent, OnLoad};
use crate::types::result::{Activity, Device, ModelInfo};
use crate::types::sync::lock;

/// The devices llama.cpp's backends in this build find (the CPU, and GPUs where a GPU backend is
/// built in and sees one).
pub fn devices() -> Result<Vec<Device>> {
    backend()?;
    Ok(llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .map(|d| {
            use llama_cpp_2::LlamaBackendDeviceType as T;
            let kind = match d.device_type {
                T::Cpu => "cpu",
                T::Gpu => "gpu",
                T::IntegratedGpu => "igpu",
                T::Accelerator => "accel",
                T::Unknown => "unknown",
            };
            Device {
                name: d.name,
                description: d.description,
                backend: d.backend,
                kind: kind.into(),
                memory_total_mib: (d.memory_total >> 20) as u64,
                memory_free_mib: (d.memory_free >> 20) as u64,
            }
        })
        .collect())
}

/// Where a load puts a model: how many layers go to the GPU, the free memory of the GPU devices
/// they go to (the main GPU's alone when one is named), and which devices those are. RPC workers
/// ([`LoadConfig::rpc`]) count as GPUs here, as they do in llama.cpp: offloaded layers go to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Offload {
    pub gpu_layers: u32,
    pub gpus: usize,
    pub gpu_free: Option<u64>,
    /// The load config names no offload: fewer layers may go where all do not fit.
    pub fit: bool,
    /// The devices llama.cpp is given (indices among all of its devices: the load's RPC workers,
    /// then this machine's GPUs), or `None` for llama.cpp's own choice: set once any RPC worker
    /// is known to the process, since llama.cpp's choice would put every model on the workers.
    pub devices: Option<Vec<usize>>,
}

/// The [`Offload`] of `config` for a model of `layers` layers, on the devices found now (after
/// reaching the RPC workers the config names: one that does not answer is an error here).
pub(crate) fn offload(config: &LoadConfig, layers: Option<u32>) -> Result<Offload> {
    let workers = rpc::attach(&config.rpc)?;
    let all = devices()?;
    let local = all.iter().enumerate().filter(|(_, d)| d.is_gpu() && d.backend != rpc::BACKEND).map(|(i, _)| i);
    let chosen: Vec<usize> = workers.into_iter().chain(local).collect();
    let gpus: Vec<&Device> = chosen.iter().filter_map(|&i| all.get(i)).collect();
    let gpu_layers = gpu_layers(config, gpus.len(), layers)?;
    let free = |d: &&Device| d.memory_free_mib << 20;
    let gpu_free = match config.main_gpu {
        _ if gpus.is_empty() => None,
        Some(main) => gpus.get(main as usize).map(free),
        None => Some(gpus.iter().map(free).sum()),
    };
    let devices = rpc::any_attached().then_some(chosen);
    Ok(Offload { gpu_layers, gpus: gpus.len(), gpu_free, fit: config.gpu.is_none(), devices })
}

/// Reaches the RPC workers at `endpoints` (`host:port`) and makes their devices llama.cpp's, so
/// that [`devices`] lists them (`lms runtime ls --rpc`). Loads do this themselves
/// ([`LoadConfig::rpc`]). One that does not answer as a worker of this build: [`Error::RpcWorker`].
pub fn attach_rpc_workers(endpoints: &[String]) -> Result<()> {
    rpc::attach(endpoints).map(drop)
}

/// The layers to offload for `config` with `gpus` GPU devices found, of a model of `layers`
/// layers: all of them for `max` and by default, none without a GPU (the CPU runs it); an error
/// for a share above 0 without a GPU, or a main GPU that is not there.
fn gpu_layers(config: &LoadConfig, gpus: usize, layers: Option<u32>) -> Result<u32> {
    if let Some(main) = config.main_gpu.filter(|&m| m as usize >= gpus.max(1)) {
        return Err(Error::InvalidConfig(format!("mainGpu {main}: there are {gpus} GPU devices (lms runtime ls)")));
    }
    // llama.cpp counts the output layer as one more.
    let all = layers.map_or(u32::MAX, |n| n + 1);
    match config.gpu {
        Some(GpuOffload::Off) => Ok(0),
        Some(GpuOffload::Ratio(r)) if r <= 0.0 => Ok(0),
        None | Some(GpuOffload::Max) if gpus == 0 => {
            tracing::debug!("no GPU device found, the CPU runs the model");
            Ok(0)
        }
        None | Some(GpuOffload::Max) => Ok(all),
        Some(GpuOffload::Ratio(r)) if gpus == 0 => Err(Error::InvalidConfig(format!(
            "gpu ratio {r} asks for GPU offload, but no GPU device was found (lms runtime ls); use \"off\", or \"max\", which runs on the CPU where there is no GPU"
        ))),
        Some(GpuOffload::Ratio(r)) => Ok(((r * all.min(1 << 16) as f32).round() as u32).min(all)),
    }
}

/// Tokens of context per slot when the load config names none (capped at the trained length).
pub const DEFAULT_CONTEXT: u32 = 4096;

/// Tokens one batch evaluates: llama.cpp sizes its compute buffers for this many (the logits of
/// each, where the output layer's device computes them).
pub(crate) const BATCH_TOKENS: u32 = rules::BATCH;

/// With the `fault-injection` feature (tests only), a prompt containing this makes the engine
/// thread panic after predicting two tokens of it.
#[cfg(feature = "fault-injection")]
pub const FAULT_PANIC: &str = "\u{1}lmstudio-rs: panic\u{1}";

/// A loaded model: its weights (shared with callers for tokenizing) and its engine thread.
pub(crate) struct Engine {
    model: Arc<LlamaModel>,
    /// The compiled chat template, or why it does not compile (completions work all the same).
    template: Result<ChatTemplate>,
    grammars: grammar::Grammars,
    shared: Arc<Shared>,
    parallel: usize,
    max_queued: usize,
    context_length: usize,
    threads: u32,
    /// How the contexts attend: the main model's, and a draft model's after it.
    attention: backend::Attention,
    /// The draft model predictions asked for last (kept for the next; running predictions hold
    /// their own reference, so replacing it never stops one).
    draft: Mutex<Option<Arc<draft::DraftModel>>>,
    /// The embedding thread, from the first request for embeddings (from the load, for an
    /// embedding model).
    embedder: Mutex<Option<Arc<embed::Embedder>>>,
    /// The model's key, for errors that name it.
    key: String,
    /// An embedding model's engine: no prediction thread, no slots; it only embeds.
    embedding_only: bool,
    /// The load config's pooling for embeddings, if it names one.
    pooling: Option<crate::types::config::Pooling>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the engine needs to know of a model file before loading it (from its header), and where
/// its layers go ([`offload`] of the load config on the devices found).
#[derive(Debug, Clone)]
pub(crate) struct ModelShape {
    /// The sliding attention window (0: none).
    pub sliding_window: u32,
    pub offload: Offload,
}

impl Engine {
    /// Loads the model at `path` and starts its engine thread. `info` describes the file.
    /// Fills in `info.context_length` with the length it loads with.
    pub fn load(
        path: &Path,
        info: &mut ModelInfo,
        shape: ModelShape,
        config: &LoadConfig,
        on_load: &OnLoad,
    ) -> Result<Self> {
        config.validate()?;
        let backend = backend()?;
        let Offload { gpu_layers, gpus, devices, .. } = shape.offload;
        let load_err = |reason: String| Error::Load { path: path.to_owned(), reason };
        on_load(LoadEvent::Progress(0.0));
        // llama.cpp reports as it reads the tensors; the last report is 1.0 (sent once, below).
        let reporter = Arc::clone(on_load);
        let mut params = LlamaModelParams::default().with_use_mmap(config.try_mmap).with_n_gpu_layers(gpu_layers);
        if let Some(devices) = devices {
            params = params.with_devices(&devices).map_err(|e| load_err(e.to_string()))?;
        }
        if let Some(main) = config.main_gpu.filter(|_| gpus > 0) {
            // llama.cpp takes a main GPU only with the model on that one device.
            params = params.with_split_mode(LlamaSplitMode::None).with_main_gpu(main as i32);
        }
        let params = params.with_progress_callback(move |p| {
            if p > 0.0 && p < 1.0 {
                reporter(LoadEvent::Progress(p));
            }
            true
        });
        let model = huge_pages::around(|| LlamaModel::load_from_file(backend, path, &params))
            .map_err(|e| load_err(e.to_string()))?;
        let model = Arc::new(model);
        let trained = model.n_ctx_train().max(16);
        // An embedding model has no KV cache to size: its trained context, unless asked otherwise.
        let default = if info.is_embedding() { trained } else { DEFAULT_CONTEXT };
        let context_length = config.context_length.unwrap_or(default).min(trained);
        let threads = config
            .cpu_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(4, |n| u32::try_from(n.get()).unwrap_or(4)));
        info.context_length = Some(u64::from(context_length));
        info.num_gpu_layers = Some(gpu_layers);
        let template = chat_template(&model, info.architecture.as_deref());
        let info = info.clone();
        // On by default on the CPU: faster decoding (most with several predictions at once and with
        // a long context, where a sliding-window model's window layers would otherwise attend over
        // every cell the full-size cache keeps: bench/README.md), and its tiles keep prompt rows
        // batch-invariant from 64 rows (`rules::Chunks`). Off by default with layers on a GPU.
        let attention = backend::Attention {
            flash: config.flash_attention.unwrap_or(gpu_layers == 0),
            offload_kv_cache: config.offload_kv_cache_to_gpu.unwrap_or(true),
        };
        // Prompt rows are reused only where they have the same bits in any chunking.
        let reuse_prompts = gpu_layers == 0;
        let params = EngineParams {
            context_length,
            parallel: config.parallel(),
            threads,
            sliding_window: shape.sliding_window,
            attention,
            reuse_prompts,
            prompt_cache_bytes: config.prompt_cache_mib as usize * 1024 * 1024,
            disk_cache: config.prompt_cache_dir.as_deref().filter(|_| reuse_prompts).and_then(|dir| {
                let budget = u64::from(config.prompt_cache_disk_mib) << 20;
                disk_cache::DiskCache::for_model(dir, path, attention.flash, budget)
            }),
        };
        let shared = Arc::new(Shared {
            jobs: Mutex::new(None),
            queued: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            prompt_cache_bytes: AtomicUsize::new(0),
            kv_tokens: AtomicUsize::new(0),
            failure: Mutex::new(None),
            gpu_layers,
        });
        let embedding_only = info.is_embedding();
        // A pooling the model cannot take is refused now, not at its first embedding.
        embed::chosen_pooling(&model, config.pooling)?;
        let (thread, embedder) = if embedding_only {
            // An encoder has no text to predict: its vectors' context is all it needs.
            let embedder = embed::Embedder::start(Arc::clone(&model), context_length, threads, config.pooling)
                .map_err(|e| load_err(e.to_string()))?;
            (None, Some(Arc::new(embedder)))
        } else {
            let (jobs, job_rx) = flume::bounded(config.max_queued as usize);
            *lock(&shared.jobs) = Some(jobs);
            let (ready_tx, ready_rx) = flume::bounded(1);
            let thread = {
                let model = Arc::clone(&model);
                let shared = Arc::clone(&shared);
                let info = info.clone();
                std::thread::Builder::new()
                    .name(format!("lms-engine-{}", info.model_key))
                    .spawn(move || worker::run(backend, &model, params, info, job_rx, shared, ready_tx))?
            };
            ready_rx
                .recv()
                .map_err(|_| load_err("the engine thread stopped while creating the context".into()))?
                .map_err(load_err)?;
            (Some(thread), None)
        };
        on_load(LoadEvent::Progress(1.0));
        Ok(Self {
            model,
            template,
            grammars: grammar::Grammars::default(),
            shared,
            parallel: if embedding_only { 0 } else { config.parallel() as usize },
            max_queued: if embedding_only { 0 } else { config.max_queued as usize },
            context_length: context_length as usize,
            threads,
            attention,
            draft: Mutex::new(None),
            embedder: Mutex::new(embedder),
            key: info.model_key,
            embedding_only,
            pooling: config.pooling,
            thread: Mutex::new(thread),
        })
    }

    /// Tokenizes a prompt as the model will see it (with the BOS token when the model wants one).
    pub fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        // A chat template that writes its own BOS text would otherwise give two (and llama.cpp's
        // warning on every request).
        let writes_bos = vocab.should_add_bos()
            && in_vocab(&vocab, vocab.bos())
                .and_then(|bos| vocab.text(bos))
                .is_some_and(|bos| !bos.is_empty() && text.as_bytes().starts_with(bos.to_bytes()));
        let mut tokens = vocab.tokenize(text.as_bytes(), !writes_bos, true);
        if let Some(eos) = in_vocab(&vocab, vocab.eos()).filter(|_| writes_bos && vocab.should_add_eos()) {
            tokens.push(eos);
        }
        tokens
    }

    /// Token ids of `text`, as LM Studio's `tokenize` reports them.
    pub fn token_ids(&self, text: &str) -> Vec<i32> {
        self.tokenize(text).into_iter().map(|t| t.0).collect()
    }

    /// The L2-normalized embedding of each of `texts` (each tokenized as a prompt is), and how
    /// many tokens they were. An input longer than the context is refused by its index.
    pub fn embed(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, usize)> {
        self.embed_inputs(texts.iter().map(|t| self.tokenize(t)).collect())
    }

    /// [`Engine::embed`] of inputs given as token ids, taken as they are (no BOS added); an id
    /// outside the vocabulary is an [`Error::InvalidRequest`] naming its input.
    pub fn embed_tokens(&self, inputs: &[Vec<i32>]) -> Result<(Vec<Vec<f32>>, usize)> {
        let n = self.model.n_vocab();
        let mut tokenized = Vec::with_capacity(inputs.len());
        for (i, ids) in inputs.iter().enumerate() {
            if let Some(id) = ids.iter().find(|id| !(0..n).contains(*id)) {
                return Err(Error::InvalidRequest(format!(
                    "input {i}: token {id} is not in the vocabulary (0 to {})",
                    n - 1
                )));
            }
            tokenized.push(ids.iter().map(|&id| LlamaToken(id)).collect());
        }
        self.embed_inputs(tokenized)
    }

    fn embed_inputs(&self, inputs: Vec<Vec<LlamaToken>>) -> Result<(Vec<Vec<f32>>, usize)> {
        let embedder = self.embedder()?;
        if embedder.ranks {
            return Err(Error::InvalidRequest(format!(
                "{} is a reranker: it scores a query with each document (rerank), it makes no vectors",
                self.key
            )));
        }
        let tokens = fits(&inputs, embedder.context_length)?;
        Ok((embedder.run(inputs, true)?, tokens))
    }

    /// A reranker's score of `query` with each of `documents` (higher: more relevant), and how
    /// many tokens the pairs were (each pair written as llama-server writes it).
    pub fn rerank(&self, query: &str, documents: &[&str]) -> Result<(Vec<f32>, usize)> {
        let embedder = self.embedder()?;
        if !embedder.ranks {
            return Err(Error::InvalidRequest(format!(
                "{} is not a reranker: its file names no rank pooling (a classifier head that scores pairs)",
                self.key
            )));
        }
        let inputs = self.rerank_inputs(query, documents);
        let tokens = fits(&inputs, embedder.context_length)?;
        let scores = embedder.run(inputs, false)?.into_iter().map(|out| out.first().copied().unwrap_or(f32::NAN));
        Ok((scores.collect(), tokens))
    }

    /// The tokens of each query-document pair, as llama-server writes them for `/v1/rerank`: the
    /// model's rerank template where its file has one (a decoder reranker such as
    /// Qwen3-Reranker), else BOS, the query, EOS (SEP where there is no EOS) and SEP as the model
    /// adds them, the document, EOS (BERT: `[CLS] query [SEP] document`; XLM-RoBERTa:
    /// `<s> query </s> document </s>`).
    fn rerank_inputs(&self, query: &str, documents: &[&str]) -> Vec<Vec<LlamaToken>> {
        let vocab = self.model.vocab();
        if let Ok(template) = self.model.meta_val_str("tokenizer.chat_template.rerank") {
            let pair = |doc: &&str| template.replace("{query}", query).replace("{document}", doc);
            return documents.iter().map(|doc| vocab.tokenize(pair(doc).as_bytes(), false, true)).collect();
        }
        let bos = in_vocab(&vocab, vocab.bos()).filter(|_| vocab.should_add_bos());
        let end = in_vocab(&vocab, vocab.eos()).or_else(|| in_vocab(&vocab, vocab.sep()));
        let end = end.filter(|_| vocab.should_add_eos());
        let sep = in_vocab(&vocab, vocab.sep()).filter(|_| vocab.should_add_sep());
        let query = vocab.tokenize(query.as_bytes(), false, false);
        documents
            .iter()
            .map(|doc| {
                let doc = vocab.tokenize(doc.as_bytes(), false, false);
                bos.into_iter().chain(query.iter().copied()).chain(end).chain(sep).chain(doc).chain(end).collect()
            })
            .collect()
    }

    /// The embedding thread, started by the first request for it.
    fn embedder(&self) -> Result<Arc<embed::Embedder>> {
        let mut slot = lock(&self.embedder);
        if let Some(e) = slot.as_ref() {
            return Ok(Arc::clone(e));
        }
        let started = Arc::new(embed::Embedder::start(
            Arc::clone(&self.model),
            self.context_length as u32,
            self.threads,
            self.pooling,
        )?);
        *slot = Some(Arc::clone(&started));
        Ok(started)
    }

    /// Token ids of `text` as llama.cpp's tokenizer gives them: with the model's BOS/EOS when
    /// `add_special`, special tokens' texts read as those tokens when `parse_special`.
    pub fn tokenize_with(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<i32> {
        let tokens = self.model.vocab().tokenize(text.as_bytes(), add_special, parse_special);
        tokens.into_iter().map(|t| t.0).collect()
    }

    /// The text of each token (special tokens written out), as bytes: a token may hold part of a
    /// character. An id outside the vocabulary is an [`Error::InvalidRequest`].
    pub fn token_pieces(&self, ids: &[i32]) -> Result<Vec<Vec<u8>>> {
        let vocab = self.model.vocab();
        let n = self.model.n_vocab();
        ids.iter()
            .map(|&id| {
                if !(0..n).contains(&id) {
                    return Err(Error::InvalidRequest(format!("token {id} is not in the vocabulary (0 to {})", n - 1)));
                }
                let mut piece = Vec::new();
                vocab.token_to_piece_into(LlamaToken(id), &mut piece, true, None);
                Ok(piece)
            })
            .collect()
    }

    /// The model's compiled chat template, or why it has none.
    pub(crate) fn template(&self) -> Result<&ChatTemplate> {
        self.template.as_ref().map_err(Clone::clone)
    }

    /// Number of tokens `text` becomes.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenize(text).len()
    }

    /// Tokenizes, fits and queues a prediction (the caller has refused an empty prompt); events
    /// arrive on `events`. `draft_file` is the store's entry of `config.draft`'s model.
    pub fn submit(
        &self,
        prompt: &str,
        config: ValidConfig,
        draft_file: Option<&StoredModel>,
        events: flume::Sender<Event>,
        cancel: Arc<AtomicBool>,
    ) -> Result<()> {
        if self.embedding_only {
            return Err(Error::InvalidRequest(format!(
                "{} is an embedding model: it makes vectors, not text (load a language model to predict)",
                self.key
            )));
        }
        let submitted = Instant::now();
        let tokens = fit_prompt(self.tokenize(prompt), &config, self.context_length)?;
        let trigger = config.structured_trigger.as_deref();
        let grammar = config.structured.as_ref().map(|s| self.grammars.get(&self.model, s, trigger)).transpose()?;
        let draft = match (&config.draft, draft_file) {
            (Some(d), Some(file)) => Some((self.draft_model(file)?, draft::DraftRule::of(d))),
            _ => None,
        };
        let jobs = lock(&self.shared.jobs).clone().ok_or_else(|| self.stopped())?;
        // Count before sending so the worker's decrement can never run first.
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        let job = Job {
            tokens,
            config,
            grammar,
            draft,
            events,
            cancel,
            submitted,
            #[cfg(feature = "fault-injection")]
            fault: prompt.contains(FAULT_PANIC),
        };
        match jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                match e {
                    // A full queue holds exactly its capacity (the gauge may also count a job being
                    // admitted, which is no longer waiting).
                    flume::TrySendError::Full(_) => Err(Error::Overloaded { queued: self.max_queued }),
                    flume::TrySendError::Disconnected(_) => Err(self.stopped()),
                }
            }
        }
    }
}

impl Engine {
    /// The draft model in `file`: the one loaded last when it is that file, else loaded now (its
    /// vocabulary checked against this model's).
    fn draft_model(&self, file: &StoredModel) -> Result<Arc<draft::DraftModel>> {
        let mut current = lock(&self.draft);
        if let Some(d) = current.as_ref().filter(|d| d.path == file.path) {
            return Ok(Arc::clone(d));
        }
        let target = draft::DraftTarget {
            model: &self.model,
            context_length: self.context_length as u32,
            parallel: self.parallel as u32,
            threads: self.threads,
            attention: self.attention,
            gpu: self.shared.gpu_layers > 0,
        };
        let loaded = Arc::new(draft::DraftModel::load(backend()?, file, target)?);
        *current = Some(Arc::clone(&loaded));
        Ok(loaded)
    }

    /// Predictions running and queued now, and whether the engine failed.
    pub fn activity(&self) -> Activity {
        Activity {
            running: self.shared.running.load(Ordering::SeqCst),
            queued: self.shared.queued.load(Ordering::SeqCst),
            slots: self.parallel,
            prompt_cache_bytes: self.shared.prompt_cache_bytes.load(Ordering::SeqCst),
            kv_tokens: self.shared.kv_tokens.load(Ordering::SeqCst),
            kv_capacity: self.parallel * self.context_length,
            failure: lock(&self.shared.failure).clone(),
        }
    }

    /// Why the engine takes no more predictions: it failed, or it was unloaded.
    fn stopped(&self) -> Error {
        lock(&self.shared.failure).clone().map_or(Error::ModelUnloaded, Error::Engine)
    }

    /// Stops the engine: everything queued or running ends with `modelUnloaded`, and later
    /// submissions fail with [`Error::ModelUnloaded`]. Waits for the thread to exit.
    pub fn shutdown(&self) {
        lock(&self.shared.jobs).take();
        if let Some(t) = lock(&self.thread).take() {
            if t.join().is_err() {
                tracing::error!("the engine thread panicked while stopping");
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The tokens of all `inputs`, or an [`Error::InvalidRequest`] naming the first one that is empty
/// or longer than `context_length`.
fn fits(inputs: &[Vec<LlamaToken>], context_length: usize) -> Result<usize> {
    if let Some(i) = inputs.iter().position(Vec::is_empty) {
        return Err(Error::InvalidRequest(format!("input {i} is empty: it has no token")));
    }
    if let Some((i, long)) = inputs.iter().enumerate().find(|(_, t)| t.len() > context_length) {
        return Err(Error::InvalidRequest(format!(
            "input {i} is {} tokens; the model's context holds {context_length}",
            long.len()
        )));
    }
    Ok(inputs.iter().map(Vec::len).sum())
}

/// `token` where it is one of the vocabulary's: a model without an EOS (BERT) answers -1, and
/// llama.cpp throws a C++ exception (which aborts the process) for a token outside it.
fn in_vocab(vocab: &LlamaVocab, token: LlamaToken) -> Option<LlamaToken> {
    (0..vocab.n_tokens()).contains(&token.0).then_some(token)
}

/// The model file's chat template (`tokenizer.chat_template`), else its family's.
fn chat_template(model: &LlamaModel, architecture: Option<&str>) -> Result<ChatTemplate> {
    let own = model.meta_val_str("tokenizer.chat_template").ok().filter(|t| !t.trim().is_empty());
    let vocab = model.vocab();
    let text = |token: LlamaToken| {
        let mut piece = Vec::new();
        if let Some(token) = in_vocab(&vocab, token) {
            vocab.token_to_piece_into(token, &mut piece, true, None);
        }
        String::from_utf8_lossy(&piece).into_owned()
    };
    let source = own.as_deref().unwrap_or_else(|| template::fallback_for(architecture));
    ChatTemplate::new(source, &text(vocab.bos()), &text(vocab.eos()))
}

/// Applies the context overflow policy: the prompt must leave room for at least one new token.
fn fit_prompt(tokens: Vec<LlamaToken>, config: &ValidConfig, context_length: usize) -> Result<Vec<LlamaToken>> {
    if tokens.len() < context_length {
        return Ok(tokens);
    }
    let overflow = || Error::ContextOverflow { prompt_tokens: tokens.len(), context_length };
    // Keep room for some of the answer: what max_tokens asks, at most half the context.
    let answer_room = config.max_tokens.map_or(context_length / 4, |m| m as usize).clamp(1, context_length / 2);
    let keep = context_length - answer_room;
    match config.context_overflow_policy {
        ContextOverflowPolicy::StopAtLimit => Err(overflow()),
        ContextOverflowPolicy::TruncateMiddle => {
            let head = keep / 2;
            let tail = keep - head;
            Ok(tokens[..head].iter().chain(&tokens[tokens.len() - tail..]).copied().collect())
        }
        ContextOverflowPolicy::RollingWindow => {
            // The first token is the BOS the model expects at position 0: keep it.
            let first = tokens[0];
            Ok(std::iter::once(first).chain(tokens[tokens.len() - (keep - 1)..].iter().copied()).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_layers_follow_the_devices_found() {
        let with = |gpu, main_gpu| LoadConfig { gpu, main_gpu, ..Default::default() };
        let layers = |c: &LoadConfig, gpus| gpu_layers(c, gpus, Some(18));
        // No GPU: off and max run on the CPU; a share or a main GPU past the first is an error.
        for gpu in [None, Some(GpuOffload::Off), Some(GpuOffload::Max), Some(GpuOffload::Ratio(0.0))] {
            assert_eq!(layers(&with(gpu, None), 0).expect("the CPU"), 0, "{gpu:?}");
        }
        assert!(matches!(layers(&with(Some(GpuOffload::Ratio(0.5)), None), 0), Err(Error::InvalidConfig(_))));
        assert!(layers(&with(None, Some(0)), 0).is_ok());
        assert!(matches!(layers(&with(None, Some(1)), 0), Err(Error::InvalidConfig(_))));
        // One GPU: every layer and the output layer, or the share of them.
        assert_eq!(layers(&with(Some(GpuOffload::Max), None), 1).expect("offloads"), 19);
        assert_eq!(layers(&with(None, None), 1).expect("offloads by default"), 19);
        assert_eq!(layers(&with(Some(GpuOffload::Off), None), 1).expect("the CPU"), 0);
        assert_eq!(layers(&with(Some(GpuOffload::Ratio(0.5)), None), 1).expect("offloads"), 10);
        assert_eq!(layers(&with(Some(GpuOffload::Ratio(1.0)), None), 1).expect("offloads"), 19);
        assert!(matches!(layers(&with(Some(GpuOffload::Max), Some(1)), 1), Err(Error::InvalidConfig(_))));
        assert!(layers(&with(Some(GpuOffload::Max), Some(1)), 2).is_ok());
    }
}
