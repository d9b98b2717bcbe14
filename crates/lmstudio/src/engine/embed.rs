//! Embeddings: a context of their own, on a thread of their own, started by a loaded model's first
//! request for them. Each input is a sequence of its own (attention never crosses them), so that
//! its vector is the same whatever it is sent with; vectors are L2-normalized, as the peers give
//! them.
//!
//! Two ways, by the model:
//! - An encoder (BERT and its kin) and a reranker: llama.cpp pools in its graph (the file's
//!   pooling), inputs batched together, each input whole in one decode.
//! - A decoder (an LLM, or an embedding model that attends causally): each input alone, in
//!   chunks of [`CHUNK`] tokens (its KV cache keeps what came before), and the token outputs
//!   pooled here. A decoder computes its output layer for every token of an embedding decode
//!   (262,144 floats a token for Gemma 3), so whole-input decodes would take memory in proportion
//!   to the longest input; chunks bound it. Decoders are not batched: several sequences in one
//!   decode of Gemma 3 gave vectors 2e-3 away from each input alone (most likely where flash
//!   attention's tiles and the repacked kernels' row groups fall differently), where an
//!   encoder's stay within 1e-7.

use std::num::NonZeroU32;
use std::sync::Arc;

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::backend::backend;
use crate::types::config::Pooling;
use crate::types::error::{Error, Result};

/// A request: the inputs' tokens, whether to L2-normalize their outputs (vectors, not a
/// reranker's scores), and where the outputs go.
struct Job {
    inputs: Vec<Vec<LlamaToken>>,
    normalize: bool,
    reply: flume::Sender<Result<Vec<Vec<f32>>>>,
}

/// The embedding thread of one loaded model; it ends when this is dropped.
pub(crate) struct Embedder {
    jobs: flume::Sender<Job>,
    /// Tokens one input may have.
    pub(crate) context_length: usize,
    /// Whether the model ranks (its file names rank pooling: a classifier head that scores a
    /// query and a document together) rather than embeds.
    pub(crate) ranks: bool,
}

impl Embedder {
    /// Starts the thread, with a context of `context_length` tokens on `threads` threads, pooling
    /// as `pooling` says (else as the file names).
    pub(crate) fn start(
        model: Arc<LlamaModel>,
        context_length: u32,
        threads: u32,
        pooling: Option<Pooling>,
    ) -> Result<Self> {
        let pooling = chosen_pooling(&model, pooling)?;
        let way = if causal(&model) && pooling != Pooling::Rank { Way::Chunks(pooling) } else { Way::Graph(pooling) };
        let (jobs, job_rx) = flume::unbounded::<Job>();
        let (ready_tx, ready_rx) = flume::bounded(1);
        std::thread::Builder::new()
            .name("lms-embed".into())
            .spawn(move || run(&model, context_length, threads, way, &job_rx, &ready_tx))
            .map_err(|e| Error::Engine(format!("no thread for embeddings: {e}")))?;
        ready_rx.recv().map_err(|_| Error::Engine("the embedding thread stopped".into()))??;
        Ok(Self { jobs, context_length: context_length as usize, ranks: pooling == Pooling::Rank })
    }

    /// The pooled outputs of `inputs`, in order: vectors (L2-normalized when `normalize`), or a
    /// reranker's scores.
    pub(crate) fn run(&self, inputs: Vec<Vec<LlamaToken>>, normalize: bool) -> Result<Vec<Vec<f32>>> {
        let (reply, answer) = flume::bounded(1);
        let job = Job { inputs, normalize, reply };
        self.jobs.send(job).map_err(|_| Error::Engine("the embedding thread stopped".into()))?;
        answer.recv().map_err(|_| Error::Engine("the embedding thread stopped".into()))?
    }
}

/// How an embedder decodes and pools.
#[derive(Clone, Copy)]
enum Way {
    /// Inputs batched whole, pooled by llama.cpp's graph (encoders, rerankers).
    Graph(Pooling),
    /// Each input alone, in chunks, its token outputs pooled here (decoders).
    Chunks(Pooling),
}

/// Tokens of one decode of a decoder's input (see the module's notes): llama-server's batch, so
/// that an input it takes is decoded as it decodes it. (Chunks of 128 gave Gemma 3 vectors 7e-4
/// from llama-server's at 330 tokens; chunks of 512, within 1e-7 at 700.)
pub(crate) const CHUNK: u32 = super::rules::BATCH;

/// The pooling a model's file names (`<arch>.pooling_type`), mean where it names none.
fn named_pooling(model: &LlamaModel) -> Pooling {
    let arch = model.meta_val_str("general.architecture").unwrap_or_default();
    let named = model.meta_val_str(&format!("{arch}.pooling_type")).ok().and_then(|v| v.parse::<i32>().ok());
    match named.map(LlamaPoolingType::from) {
        Some(LlamaPoolingType::Cls) => Pooling::Cls,
        Some(LlamaPoolingType::Last) => Pooling::Last,
        Some(LlamaPoolingType::Rank) => Pooling::Rank,
        _ => Pooling::Mean,
    }
}

/// The pooling to use: the load config's, else the file's. Rank pooling needs the classifier head
/// of a file that names it (llama.cpp aborts the process without one).
pub(crate) fn chosen_pooling(model: &LlamaModel, asked: Option<Pooling>) -> Result<Pooling> {
    let named = named_pooling(model);
    match asked {
        Some(Pooling::Rank) if named != Pooling::Rank => Err(Error::InvalidConfig(format!(
            "pooling \"rank\": the model has no classifier head to rank with (its file names {} pooling)",
            named.as_str()
        ))),
        asked => Ok(asked.unwrap_or(named)),
    }
}

fn llama_pooling(p: Pooling) -> LlamaPoolingType {
    match p {
        Pooling::Mean => LlamaPoolingType::Mean,
        Pooling::Cls => LlamaPoolingType::Cls,
        Pooling::Last => LlamaPoolingType::Last,
        Pooling::Rank => LlamaPoolingType::Rank,
    }
}

fn run(
    model: &LlamaModel,
    context_length: u32,
    threads: u32,
    way: Way,
    jobs: &flume::Receiver<Job>,
    ready: &flume::Sender<Result<()>>,
) {
    let base = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(context_length))
        .with_embeddings(true)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32);
    let params = match way {
        Way::Graph(pooling) => base
            .with_n_batch(context_length)
            .with_n_ubatch(context_length)
            .with_n_seq_max(MAX_SEQUENCES as u32)
            // One pool of cells for the sequences of a decode: any input may use the whole context.
            .with_kv_unified(true)
            .with_pooling_type(llama_pooling(pooling)),
        Way::Chunks(_) => {
            let chunk = CHUNK.min(context_length);
            base.with_n_batch(chunk).with_n_ubatch(chunk).with_pooling_type(LlamaPoolingType::None)
        }
    };
    let context = backend().and_then(|b| {
        super::huge_pages::around(|| model.new_context(b, params))
            .map_err(|e| Error::Engine(format!("the embedding context: {e}")))
    });
    let mut ctx = match context {
        Ok(ctx) => {
            let _ = ready.send(Ok(()));
            ctx
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    for job in jobs.iter() {
        let outputs = match way {
            Way::Graph(_) => batches(&job.inputs, GROUP_TOKENS, MAX_SEQUENCES)
                .into_iter()
                .map(|group| decode(&mut ctx, group))
                .collect::<Result<Vec<_>>>()
                .map(|groups| groups.into_iter().flatten().collect::<Vec<_>>()),
            Way::Chunks(pooling) => job.inputs.iter().map(|input| decode_chunks(&mut ctx, input, pooling)).collect(),
        };
        let outputs = outputs.map(|out| if job.normalize { out.into_iter().map(normalized).collect() } else { out });
        let _ = job.reply.send(outputs);
    }
}

/// Sequences one decode of an encoder takes at most.
const MAX_SEQUENCES: usize = 64;

/// Tokens of the inputs one decode of an encoder takes together (an input longer than this goes
/// alone): llama-server's batch. Whole contexts (2,048 tokens for nomic-bert) were 0.91x of
/// llama-server in bench/embeddings.md, this 0.97x, with 90 MiB of peak RSS instead of 120.
const GROUP_TOKENS: usize = 512;

/// Whether the model attends causally (a decoder).
fn causal(model: &LlamaModel) -> bool {
    let arch = model.meta_val_str("general.architecture").unwrap_or_default();
    model.meta_val_str(&format!("{arch}.attention.causal")).map_or(true, |v| v != "false")
}

/// `inputs` cut into runs that one decode takes: at most `sequences` inputs, of at most `tokens`
/// tokens together (each input alone fits: [`super::fits`] checked).
fn batches(inputs: &[Vec<LlamaToken>], tokens: usize, sequences: usize) -> Vec<&[Vec<LlamaToken>]> {
    let mut out = Vec::new();
    let (mut start, mut total) = (0, 0);
    for (i, input) in inputs.iter().enumerate() {
        if i > start && (i - start == sequences || total + input.len() > tokens) {
            out.push(&inputs[start..i]);
            (start, total) = (i, 0);
        }
        total += input.len();
    }
    if start < inputs.len() {
        out.push(&inputs[start..]);
    }
    out
}

fn failed(e: &dyn std::fmt::Display) -> Error {
    Error::Engine(format!("embedding: {e}"))
}

/// One decode of `group`, each input a sequence of its own (attention never crosses them), and
/// each sequence's pooled output.
fn decode(ctx: &mut LlamaContext, group: &[Vec<LlamaToken>]) -> Result<Vec<Vec<f32>>> {
    ctx.clear_kv_cache();
    let tokens = group.iter().map(Vec::len).sum::<usize>();
    let mut batch = LlamaBatch::new(tokens.max(1), group.len() as i32);
    for (seq, input) in group.iter().enumerate() {
        for (pos, &t) in input.iter().enumerate() {
            batch.add(t, pos as i32, &[seq as i32], true).map_err(|e| failed(&e))?;
        }
    }
    super::compute::decode(ctx, &mut batch).map_err(|e| failed(&e))?;
    (0..group.len()).map(|seq| Ok(ctx.embeddings_seq_ith(seq as i32).map_err(|e| failed(&e))?.to_vec())).collect()
}

/// A decoder's input, alone, in chunks of the context's batch, and its token outputs pooled.
fn decode_chunks(ctx: &mut LlamaContext, input: &[LlamaToken], pooling: Pooling) -> Result<Vec<f32>> {
    ctx.clear_kv_cache();
    let chunk = ctx.n_batch() as usize;
    let mut sum: Vec<f64> = Vec::new();
    let mut first = None;
    let mut last = Vec::new();
    for (c, tokens) in input.chunks(chunk).enumerate() {
        let mut batch = LlamaBatch::new(tokens.len(), 1);
        for (i, &t) in tokens.iter().enumerate() {
            batch.add(t, (c * chunk + i) as i32, &[0], true).map_err(|e| failed(&e))?;
        }
        super::compute::decode(ctx, &mut batch).map_err(|e| failed(&e))?;
        for i in 0..tokens.len() {
            let row = ctx.embeddings_ith(i as i32).map_err(|e| failed(&e))?;
            match pooling {
                Pooling::Mean => {
                    sum.resize(row.len(), 0.0);
                    sum.iter_mut().zip(row).for_each(|(s, x)| *s += f64::from(*x));
                }
                Pooling::Cls if first.is_none() => first = Some(row.to_vec()),
                Pooling::Last if c * chunk + i + 1 == input.len() => last = row.to_vec(),
                _ => {}
            }
        }
    }
    Ok(match pooling {
        Pooling::Mean => sum.iter().map(|s| (s / input.len() as f64) as f32).collect(),
        Pooling::Cls => first.unwrap_or_default(),
        Pooling::Last | Pooling::Rank => last,
    })
}

/// `v` scaled to length 1 (as it is when it is 0).
fn normalized(v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { (1.0 / norm) as f32 } else { 1.0 };
    v.into_iter().map(|x| x * scale).collect()
}
