//! Embeddings: a context of their own (pooled outputs: the model's pooling, mean for a model that
//! names none, as a decoder LLM), on a thread of their own, started by a loaded model's first
//! request for them. A request's inputs go through in batches, each input a sequence of its own
//! (attention never crosses them), so that its vector is the same whatever it is sent with;
//! vectors are L2-normalized, as the peers give them.

use std::num::NonZeroU32;
use std::sync::Arc;

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::backend::backend;
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
    /// Starts the thread, with a context of `context_length` tokens on `threads` threads.
    pub(crate) fn start(model: Arc<LlamaModel>, context_length: u32, threads: u32) -> Result<Self> {
        let (jobs, job_rx) = flume::unbounded::<Job>();
        let (ready_tx, ready_rx) = flume::bounded(1);
        let pooling = pooling(&model);
        let sequences = if causal(&model) { 1 } else { MAX_SEQUENCES };
        std::thread::Builder::new()
            .name("lms-embed".into())
            .spawn(move || run(&model, context_length, threads, pooling, sequences, &job_rx, &ready_tx))
            .map_err(|e| Error::Engine(format!("no thread for embeddings: {e}")))?;
        ready_rx.recv().map_err(|_| Error::Engine("the embedding thread stopped".into()))??;
        Ok(Self { jobs, context_length: context_length as usize, ranks: pooling == LlamaPoolingType::Rank })
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

/// The pooling a model's file names (`<arch>.pooling_type`), mean where it names none.
fn pooling(model: &LlamaModel) -> LlamaPoolingType {
    let arch = model.meta_val_str("general.architecture").unwrap_or_default();
    let named = model.meta_val_str(&format!("{arch}.pooling_type")).ok().and_then(|v| v.parse::<i32>().ok());
    match named.map(LlamaPoolingType::from) {
        Some(
            p @ (LlamaPoolingType::Mean | LlamaPoolingType::Cls | LlamaPoolingType::Last | LlamaPoolingType::Rank),
        ) => p,
        _ => LlamaPoolingType::Mean,
    }
}

fn run(
    model: &LlamaModel,
    context_length: u32,
    threads: u32,
    pooling: LlamaPoolingType,
    sequences: usize,
    jobs: &flume::Receiver<Job>,
    ready: &flume::Sender<Result<()>>,
) {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(context_length))
        .with_n_batch(context_length)
        .with_n_ubatch(context_length)
        .with_n_seq_max(sequences as u32)
        // One pool of cells for the sequences of a decode: any input may use the whole context.
        .with_kv_unified(true)
        .with_embeddings(true)
        .with_pooling_type(pooling)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32);
    let context = backend()
        .and_then(|b| model.new_context(b, params).map_err(|e| Error::Engine(format!("the embedding context: {e}"))));
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
        let mut outputs = Vec::with_capacity(job.inputs.len());
        let mut result = Ok(());
        for group in batches(&job.inputs, context_length as usize, sequences) {
            match decode(&mut ctx, group, job.normalize) {
                Ok(mut out) => outputs.append(&mut out),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let _ = job.reply.send(result.map(|()| outputs));
    }
}

/// Sequences one decode of an encoder takes at most.
const MAX_SEQUENCES: usize = 64;

/// Whether the model attends causally (a decoder). A decoder's inputs are decoded one at a time:
/// several sequences in one decode of Gemma 3 gave vectors 2e-3 away from each input alone (and
/// from llama-server's), where an encoder's (nomic-bert) stay within 1e-7.
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

/// One decode of `group`, each input a sequence of its own (attention never crosses them), and
/// each sequence's pooled output.
fn decode(ctx: &mut LlamaContext, group: &[Vec<LlamaToken>], normalize: bool) -> Result<Vec<Vec<f32>>> {
    let failed = |e: &dyn std::fmt::Display| Error::Engine(format!("embedding: {e}"));
    ctx.clear_kv_cache();
    let tokens = group.iter().map(Vec::len).sum::<usize>();
    let mut batch = LlamaBatch::new(tokens.max(1), group.len() as i32);
    for (seq, input) in group.iter().enumerate() {
        for (pos, &t) in input.iter().enumerate() {
            batch.add(t, pos as i32, &[seq as i32], true).map_err(|e| failed(&e))?;
        }
    }
    ctx.decode(&mut batch).map_err(|e| failed(&e))?;
    (0..group.len())
        .map(|seq| {
            let raw = ctx.embeddings_seq_ith(seq as i32).map_err(|e| failed(&e))?;
            if !normalize {
                return Ok(raw.to_vec());
            }
            let norm = raw.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
            let scale = if norm > 0.0 { (1.0 / norm) as f32 } else { 1.0 };
            Ok(raw.iter().map(|x| x * scale).collect())
        })
        .collect()
}
