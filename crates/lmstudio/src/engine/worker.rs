//! The engine thread: continuous batching over prediction slots with a per-slot prefix cache.
//!
//! Each step packs one token per generating slot plus prompt chunks of new predictions into one
//! `llama_batch`, decodes it, samples, and sends events. A failed send means the consumer is gone:
//! that slot stops at once and is free for the next prediction.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::sampler::Sampler;
use super::text::{Matched, StopMatcher, Utf8Decoder};
use super::{EngineParams, Event, Job};
use crate::api::error::Error;
use crate::api::result::{Fragment, ModelInfo, PredictionResult, Stats, StopReason};

/// Tokens evaluated per step (llama.cpp's logical batch).
const BATCH: u32 = 512;
/// While other predictions are generating, a new prompt is evaluated in chunks of at most this many
/// tokens per step, so running streams never stall for a whole long prompt.
const PROMPT_CHUNK_WHILE_GENERATING: usize = 128;

pub(super) fn run(
    backend: &LlamaBackend,
    model: &LlamaModel,
    params: EngineParams,
    info: ModelInfo,
    jobs: flume::Receiver<Job>,
    queued: Arc<AtomicUsize>,
    ready: flume::Sender<Result<(), String>>,
) {
    let mut threads = params.threads;
    let mut ctx = match new_context(backend, model, &params, threads) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut batch = LlamaBatch::new(BATCH.max(params.parallel) as usize, params.parallel as i32);
    let mut slots: Vec<Slot> = (0..params.parallel as i32).map(Slot::new).collect();
    loop {
        if jobs.is_disconnected() {
            // Unloading: whatever is queued or running ends now.
            for job in jobs.drain() {
                queued.fetch_sub(1, Ordering::SeqCst);
                let _ = job.events.send(Event::Done(Box::new(Err(Error::ModelUnloaded))));
            }
            for slot in &mut slots {
                slot.finish(StopReason::ModelUnloaded, &info);
            }
            return;
        }
        // Admit new predictions into free slots; block only when nothing is running.
        while slots.iter().any(|s| s.active.is_none()) {
            let busy = slots.iter().any(|s| s.active.is_some());
            let job = if busy {
                match jobs.try_recv() {
                    Ok(job) => job,
                    Err(flume::TryRecvError::Empty) => break,
                    Err(flume::TryRecvError::Disconnected) => break,
                }
            } else {
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                }
            };
            queued.fetch_sub(1, Ordering::SeqCst);
            if job.cancel.load(Ordering::Relaxed) || job.events.is_disconnected() {
                let _ = job.events.send(Event::Done(Box::new(Err(Error::Cancelled))));
                continue;
            }
            if let Some(wanted) = job.config.cpu_threads.filter(|&t| t != threads && !busy) {
                match new_context(backend, model, &params, wanted) {
                    Ok(new) => {
                        ctx = new;
                        threads = wanted;
                        slots.iter_mut().for_each(|s| s.cached.clear());
                    }
                    Err(e) => tracing::warn!("keeping {threads} threads: {e}"),
                }
            }
            let slot = pick_slot(&slots, &job.tokens);
            slots[slot].start(&mut ctx, job, &params);
        }
        step(&mut ctx, model, &mut batch, &mut slots, params.context_length as usize, &info);
    }
}

fn new_context<'m>(
    backend: &LlamaBackend,
    model: &'m LlamaModel,
    params: &EngineParams,
    threads: u32,
) -> Result<LlamaContext<'m>, String> {
    let n_ctx = params.context_length.saturating_mul(params.parallel);
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(BATCH)
        .with_n_ubatch(BATCH)
        .with_n_seq_max(params.parallel)
        .with_kv_unified(false)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32);
    model.new_context(backend, ctx_params).map_err(|e| e.to_string())
}

/// The free slot whose cached tokens share the longest prefix with `tokens`; on a tie, the one
/// caching the least, so that other slots' caches survive.
fn pick_slot(slots: &[Slot], tokens: &[LlamaToken]) -> usize {
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.active.is_none())
        .max_by_key(|(_, s)| (common_prefix(&s.cached, tokens), std::cmp::Reverse(s.cached.len())))
        .map_or(0, |(i, _)| i)
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// One sequence of the context: the tokens its KV cache holds, and the prediction using it.
struct Slot {
    seq: i32,
    /// Tokens whose keys and values are in this sequence's cache, in position order.
    cached: Vec<LlamaToken>,
    active: Option<Active>,
}

struct Active {
    job: Job,
    sampler: Sampler,
    /// Prompt tokens evaluated so far (including those found in the cache).
    prompt_done: usize,
    cached_prompt: usize,
    last_progress: f32,
    /// The sampled token that is to be evaluated in the next step.
    next: Option<LlamaToken>,
    /// Index in the current batch whose logits this slot samples from.
    logits_at: Option<i32>,
    decoder: Utf8Decoder,
    matcher: StopMatcher,
    content: String,
    predicted: u32,
    /// Tokens predicted since the last fragment was sent.
    unsent_tokens: u32,
    first_token_at: Option<Instant>,
}

impl Slot {
    fn new(seq: i32) -> Self {
        Self { seq, cached: Vec::new(), active: None }
    }

    /// Takes `job`: reuses the cached prefix, drops the rest of the cache, builds the sampler.
    fn start(&mut self, ctx: &mut LlamaContext, job: Job, params: &EngineParams) {
        let prompt = &job.tokens;
        // The last prompt token is always evaluated again: its logits give the first prediction.
        let mut reuse = common_prefix(&self.cached, prompt).min(prompt.len() - 1);
        if reuse < self.cached.len() && ctx.kv_cache_seq_rm(self.seq, Some(reuse as u32), None).is_err() {
            reuse = 0;
        }
        // With a sliding-window cache, positions older than the window may already be gone.
        let pos_min = ctx.kv_cache_seq_pos_min(self.seq);
        if reuse > 0
            && params.sliding_window > 0
            && pos_min > reuse.saturating_sub(params.sliding_window as usize) as i32
        {
            reuse = 0;
        }
        if reuse == 0 {
            let _ = ctx.kv_cache_seq_rm(self.seq, None, None);
        }
        self.cached.truncate(reuse);
        let mut sampler = Sampler::new(&job.config);
        prompt.iter().for_each(|t| sampler.accept(t.0));
        let matcher = StopMatcher::new(job.config.stop_strings.clone());
        let active = Active {
            sampler,
            prompt_done: reuse,
            cached_prompt: reuse,
            last_progress: 0.0,
            next: None,
            logits_at: None,
            decoder: Utf8Decoder::default(),
            matcher,
            content: String::new(),
            predicted: 0,
            unsent_tokens: 0,
            first_token_at: None,
            job,
        };
        let alive = active.job.events.send(Event::PromptProgress(0.0)).is_ok();
        self.active = Some(active);
        if !alive {
            self.release();
        }
    }

    /// Ends the prediction: flushes held text and sends the result.
    fn finish(&mut self, reason: StopReason, info: &ModelInfo) {
        self.finish_with(reason, None, info);
    }

    fn finish_with(&mut self, reason: StopReason, stop_string: Option<String>, info: &ModelInfo) {
        let Some(mut a) = self.active.take() else { return };
        if stop_string.is_none() {
            let tail = a.decoder.finish();
            let mut rest = match a.matcher.push(&tail) {
                Matched::Emit(t) | Matched::Stop { text: t, .. } => t,
            };
            rest.push_str(&a.matcher.flush());
            a.send_text(rest);
        }
        let now = Instant::now();
        let prompt_tokens = a.job.tokens.len() as u64;
        let predicted = u64::from(a.predicted);
        let tokens_per_second = a.first_token_at.and_then(|t| {
            let secs = now.duration_since(t).as_secs_f64();
            (secs > 0.0 && predicted > 0).then(|| predicted as f64 / secs)
        });
        let stats = Stats {
            stop_reason: reason,
            tokens_per_second,
            num_gpu_layers: Some(0.0),
            time_to_first_token_sec: a.first_token_at.map(|t| t.duration_since(a.job.submitted).as_secs_f64()),
            prompt_tokens_count: Some(prompt_tokens),
            predicted_tokens_count: Some(predicted),
            total_tokens_count: Some(prompt_tokens + predicted),
            cached_prompt_tokens_count: Some(a.cached_prompt as u64),
            stop_string,
        };
        let result = PredictionResult { content: a.content, model_info: info.clone(), stats };
        let _ = a.job.events.send(Event::Done(Box::new(Ok(result))));
    }

    fn fail(&mut self, error: Error) {
        if let Some(a) = self.active.take() {
            let _ = a.job.events.send(Event::Done(Box::new(Err(error))));
        }
    }

    /// Frees the slot without a result: its consumer is gone.
    fn release(&mut self) {
        self.active = None;
    }
}

impl Active {
    /// Sends text as a fragment; returns false when the consumer is gone.
    fn send_text(&mut self, text: String) -> bool {
        if text.is_empty() {
            return true;
        }
        self.content.push_str(&text);
        let fragment = Fragment { content: text, tokens_count: std::mem::take(&mut self.unsent_tokens) };
        self.job.events.send(Event::Fragment(fragment)).is_ok()
    }
}

/// One engine step: fill the batch, decode, sample, deliver.
fn step(
    ctx: &mut LlamaContext,
    model: &LlamaModel,
    batch: &mut LlamaBatch,
    slots: &mut [Slot],
    ctx_len: usize,
    info: &ModelInfo,
) {
    // Cancelled predictions end before any more work is spent on them.
    for slot in slots.iter_mut() {
        if let Some(a) = &slot.active {
            if a.job.events.is_disconnected() {
                slot.release();
            } else if a.job.cancel.load(Ordering::Relaxed) {
                slot.finish(StopReason::UserStopped, info);
            }
        }
    }
    batch.clear();
    let generating = slots.iter().any(|s| s.active.as_ref().is_some_and(|a| a.next.is_some()));
    for slot in slots.iter_mut() {
        let Some(a) = slot.active.as_mut() else { continue };
        a.logits_at = None;
        if let Some(token) = a.next.take() {
            a.logits_at = Some(batch.n_tokens());
            if batch.add(token, slot.cached.len() as i32, &[slot.seq], true).is_err() {
                a.next = Some(token);
                a.logits_at = None;
                continue;
            }
            slot.cached.push(token);
        }
    }
    let mut budget = BATCH as usize - batch.n_tokens() as usize;
    if generating {
        budget = budget.min(PROMPT_CHUNK_WHILE_GENERATING);
    }
    for slot in slots.iter_mut() {
        let Some(a) = slot.active.as_mut() else { continue };
        let remaining = a.job.tokens.len() - a.prompt_done;
        if remaining == 0 || budget == 0 {
            continue;
        }
        let take = remaining.min(budget);
        for (i, &token) in a.job.tokens[a.prompt_done..a.prompt_done + take].iter().enumerate() {
            let last = a.prompt_done + i + 1 == a.job.tokens.len();
            if last {
                a.logits_at = Some(batch.n_tokens());
            }
            // Capacity is BATCH and `take` never exceeds what is left of it.
            let _ = batch.add(token, slot.cached.len() as i32, &[slot.seq], last);
            slot.cached.push(token);
        }
        a.prompt_done += take;
        budget -= take;
    }
    if batch.n_tokens() == 0 {
        return;
    }
    if let Err(e) = ctx.decode(batch) {
        // The batch's sequences are in an unknown state: fail them and drop their cache.
        for slot in slots.iter_mut() {
            if slot.active.is_some() {
                let _ = ctx.kv_cache_seq_rm(slot.seq, None, None);
                slot.cached.clear();
                slot.fail(Error::Engine(e.to_string()));
            }
        }
        return;
    }
    let vocab = model.vocab();
    let mut piece = Vec::new();
    for slot in slots.iter_mut() {
        let Some(a) = slot.active.as_mut() else { continue };
        let prompt_len = a.job.tokens.len();
        if a.prompt_done < prompt_len || a.last_progress < 1.0 {
            let progress = if a.prompt_done == prompt_len { 1.0 } else { a.prompt_done as f32 / prompt_len as f32 };
            if progress > a.last_progress {
                a.last_progress = progress;
                if a.job.events.send(Event::PromptProgress(progress)).is_err() {
                    slot.release();
                    continue;
                }
            }
        }
        let Some(at) = a.logits_at else { continue };
        let token = LlamaToken(a.sampler.sample(ctx.get_logits_ith(at)));
        tracing::trace!(seq = slot.seq, token = token.0, "sampled");
        if a.first_token_at.is_none() {
            a.first_token_at = Some(Instant::now());
            if a.job.events.send(Event::FirstToken).is_err() {
                slot.release();
                continue;
            }
        }
        if vocab.is_eog(token) {
            slot.finish(StopReason::EosFound, info);
            continue;
        }
        a.predicted += 1;
        a.unsent_tokens += 1;
        piece.clear();
        vocab.token_to_piece_into(token, &mut piece, false, None);
        let text = a.decoder.push(&piece);
        match a.matcher.push(&text) {
            Matched::Emit(text) => {
                if !a.send_text(text) {
                    slot.release();
                    continue;
                }
            }
            Matched::Stop { text, index } => {
                let stop = a.job.config.stop_strings[index].clone();
                a.send_text(text);
                slot.finish_with(StopReason::StopStringFound, Some(stop), info);
                continue;
            }
        }
        if a.job.config.max_tokens.is_some_and(|m| a.predicted >= m) {
            slot.finish(StopReason::MaxPredictedTokensReached, info);
        } else if slot.cached.len() + 1 >= ctx_len {
            slot.finish(StopReason::ContextLengthReached, info);
        } else {
            a.next = Some(token);
        }
    }
}
