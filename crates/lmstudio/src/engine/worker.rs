//! The engine thread: continuous batching over prediction slots with a per-slot prefix cache.
//!
//! Each step evaluates prompt chunks of new predictions, then decodes one token for every generating
//! slot in one batch (a slot between two generating ones adds a filler row, so that llama.cpp takes
//! the batch in one pass: [`add_filler`]), samples, and sends events. A failed send means the consumer is gone:
//! that slot stops at once and is free for the next prediction.
//!
//! Prompt rows are batch invariant. llama.cpp's CPU kernels give a row of a batch bitwise the same
//! result whatever else is in the batch only when the batch holds at least a minimum chunk of rows
//! of the sequence ([`Chunks::min`](super::rules::Chunks::min): matrix kernels need 8, flash
//! attention's tiles 64) and the row is not in the last `len % ROW_GROUP` rows (those take a
//! one-row kernel for repacked weights). Prompt chunks therefore start at positions divisible by
//! [`ROW_GROUP`](super::rules::ROW_GROUP), hold at least a minimum chunk, and are decoded alone;
//! a cached prefix is reused only where it was computed that way. The same prompt then gives the
//! same logits cold, from the cache, or in another slot (tests/it/completion.rs checks the text).
//!
//! The rules themselves (chunk lengths, reuse points, pacing) are in `rules`, one slot's life in
//! `slot`; this module is the loop: admission, sharing between slots, and the [`Worker`]'s steps.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::backend::context_params;
use super::disk_cache::DiskCache;
use super::job::{EngineParams, Job, Shared};
use super::prompt_cache::PromptCache;
use super::rules::{common_prefix, Pacer, BATCH, MIN_SHARED, UNDER_WAY};
use super::slot::{end_unstarted, ModelView, Slot};
use crate::types::error::Error;
use crate::types::event::Event;
use crate::types::result::{ModelInfo, StopReason};

pub(super) fn run(
    backend: &LlamaBackend,
    model: &LlamaModel,
    params: EngineParams,
    info: ModelInfo,
    jobs: flume::Receiver<Job>,
    shared: Arc<Shared>,
    ready: flume::Sender<Result<(), String>>,
) {
    let mut threads = params.threads;
    let ctx = match new_context(backend, model, &params, threads) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut w = Worker {
        ctx,
        view: ModelView::new(model, &params, &info),
        batch: LlamaBatch::new(BATCH.max(params.parallel) as usize, params.parallel as i32),
        slots: (0..params.parallel as i32).map(|seq| Slot::new(seq, Arc::clone(&shared))).collect(),
        pacer: Pacer::default(),
        saved: PromptCache::new(params.prompt_cache_bytes, params.sliding_window as usize),
        on_disk: None,
    };
    if let Some(disk) = &params.disk_cache {
        disk.restore(&mut w.ctx, &mut w.saved, 0, params.context_length as usize);
        shared.prompt_cache_bytes.store(w.saved.bytes(), Ordering::SeqCst);
    }
    loop {
        if jobs.is_disconnected() {
            // Unloading: whatever is queued or running ends now.
            for job in jobs.drain() {
                shared.queued.fetch_sub(1, Ordering::SeqCst);
                end_unstarted(job, StopReason::ModelUnloaded, &info, &shared);
            }
            for slot in &mut w.slots {
                slot.finish(StopReason::ModelUnloaded, &info);
            }
            if let Some(disk) = &params.disk_cache {
                // What the slots hold too: the prompts used last are the likeliest to come again.
                let Worker { ctx, slots, saved, view, .. } = &mut w;
                for slot in slots.iter_mut() {
                    save_slot(ctx, saved, slot, view);
                }
                let _ = disk.persist(ctx, saved, 0);
            }
            return;
        }
        // A panic in a turn (a bug of ours or of the wrapper) fails what runs and what waits, and
        // leaves the instance failed: nothing after it could trust the slots' state.
        let turn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // Admit new predictions into free slots; block only when nothing is running.
            while w.slots.iter().any(|s| s.active.is_none()) {
                let busy = w.slots.iter().any(|s| s.active.is_some());
                let job = if busy {
                    match jobs.try_recv() {
                        Ok(job) => job,
                        Err(flume::TryRecvError::Empty) => break,
                        Err(flume::TryRecvError::Disconnected) => break,
                    }
                } else {
                    match w.wait_idle(&jobs, params.disk_cache.as_ref()) {
                        Some(job) => job,
                        None => break,
                    }
                };
                // Counted as running before it leaves the queue's count: never missing from both.
                shared.running.fetch_add(1, Ordering::SeqCst);
                shared.queued.fetch_sub(1, Ordering::SeqCst);
                if job.cancel.load(Ordering::Relaxed) || job.events.is_disconnected() {
                    shared.running.fetch_sub(1, Ordering::SeqCst);
                    end_unstarted(job, StopReason::UserStopped, &info, &shared);
                    continue;
                }
                if let Some(wanted) = job.config.cpu_threads.filter(|&t| t != threads && !busy) {
                    // llama-cpp-2 0.1.160 cannot change a live context's threads: a new context,
                    // with what the slots cached moved to host memory first, so none of it is lost.
                    let Worker { ctx, slots, saved, view, .. } = &mut w;
                    for slot in slots.iter_mut() {
                        save_slot(ctx, saved, slot, view);
                    }
                    shared.prompt_cache_bytes.store(w.saved.bytes(), Ordering::SeqCst);
                    match new_context(backend, model, &params, wanted) {
                        Ok(new) => {
                            w.ctx = new;
                            // Other threads, a new context's buffers: timings start again.
                            w.pacer = Pacer::default();
                            threads = wanted;
                            w.slots.iter_mut().for_each(Slot::forget);
                        }
                        Err(e) => tracing::warn!("keeping {threads} threads: {e}"),
                    }
                }
                w.admit(job);
                shared.prompt_cache_bytes.store(w.saved.bytes(), Ordering::SeqCst);
            }
            w.step();
            let held = w.slots.iter().filter(|s| s.active.is_some()).map(|s| s.cached.len()).sum();
            shared.kv_tokens.store(held, Ordering::SeqCst);
        }));
        if let Err(payload) = turn {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            tracing::error!(model = info.model_key, "the engine thread panicked: {why}");
            let failure = format!("the engine thread panicked ({why}); unload the model and load it again");
            *crate::types::sync::lock(&shared.failure) = Some(failure.clone());
            crate::types::sync::lock(&shared.jobs).take();
            let error = Error::Engine(failure);
            for slot in &mut w.slots {
                slot.fail(error.clone());
            }
            // Until the last submitter's clone of the sender is gone: none of its jobs is lost.
            while let Ok(job) = jobs.recv() {
                shared.queued.fetch_sub(1, Ordering::SeqCst);
                let _ = job.events.send(Event::Done(Box::new(Err(error.clone()))));
            }
            return;
        }
    }
}

/// The engine thread's state from step to step: the context and what works beside it.
struct Worker<'m> {
    ctx: LlamaContext<'m>,
    view: ModelView<'m>,
    batch: LlamaBatch<'m>,
    slots: Vec<Slot>,
    pacer: Pacer,
    /// Prompts pushed out of the slots, in host memory.
    saved: PromptCache,
    /// What the disk cache was last written from (`Worker::cache_state`).
    on_disk: Option<u64>,
}

/// How long the engine is idle before what is new in the prompt cache is written to disk.
const IDLE_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

impl Worker<'_> {
    /// Waits for the next job while nothing runs; with a disk cache, first writes what is new to
    /// it once the engine has been idle for [`IDLE_FLUSH`], so that a restart, even one after a
    /// crash, finds it. `None`: the queue is closed.
    fn wait_idle(&mut self, jobs: &flume::Receiver<Job>, disk: Option<&DiskCache>) -> Option<Job> {
        if let Some(disk) = disk.filter(|_| self.on_disk != Some(self.cache_state())) {
            match jobs.recv_timeout(IDLE_FLUSH) {
                Ok(job) => return Some(job),
                Err(flume::RecvTimeoutError::Disconnected) => return None,
                Err(flume::RecvTimeoutError::Timeout) => self.write_through(disk),
            }
        }
        jobs.recv().ok()
    }

    /// Saves what the slots could serve to host memory and writes the cache to disk, through the
    /// slot that held least (it starts empty again; what it held is in host memory).
    fn write_through(&mut self, disk: &DiskCache) {
        let Self { ctx, slots, saved, view, batch, .. } = self;
        // Saving cuts a slot's cache below the prompt it holds whole (`Slot::start`).
        let whole: Vec<(usize, Vec<LlamaToken>)> =
            slots.iter_mut().enumerate().filter_map(|(i, s)| s.take_whole().map(|p| (i, p))).collect();
        for slot in slots.iter_mut() {
            save_slot(ctx, saved, slot, view);
        }
        let Some(scratch) = slots.iter_mut().min_by_key(|s| s.cached.len()) else { return };
        if disk.persist(ctx, saved, scratch.seq) {
            scratch.forget();
        }
        for (i, prompt) in whole {
            complete_again(ctx, batch, saved, &mut slots[i], &prompt, view);
        }
        self.on_disk = Some(self.cache_state());
    }

    /// A fingerprint of what the host cache and the slots hold.
    fn cache_state(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.saved.version().hash(&mut h);
        for slot in &self.slots {
            slot.cached[..self.view.save_len(slot.reusable)].iter().for_each(|t| t.0.hash(&mut h));
        }
        h.finish()
    }
}

impl Worker<'_> {
    /// Puts `job` (counted as running) into the free slot whose cache serves it best, first saving
    /// what that slot held when no other slot holds it.
    fn admit(&mut self, job: Job) {
        let waited_ms = job.submitted.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(tokens = job.tokens.len(), waited_ms, "admitting a prediction");
        let slot = pick_slot(&self.slots, &job.tokens, &self.view);
        save_before_reuse(&mut self.ctx, &mut self.saved, &mut self.slots, slot, &job.tokens, &self.view);
        self.slots[slot].start(&mut self.ctx, job, &self.view);
    }
}

fn new_context<'m>(
    backend: &LlamaBackend,
    model: &'m LlamaModel,
    params: &EngineParams,
    threads: u32,
) -> Result<LlamaContext<'m>, String> {
    let ctx_params = context_params(params.context_length, params.parallel, threads, params.attention);
    super::huge_pages::around(|| model.new_context(backend, ctx_params)).map_err(|e| e.to_string())
}

/// The free slot with the longest reusable prefix of `tokens`; on a tie, the one caching the least,
/// so that other slots' caches survive.
fn pick_slot(slots: &[Slot], tokens: &[LlamaToken], view: &ModelView) -> usize {
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.active.is_none())
        .max_by_key(|(_, s)| {
            (
                view.reuse && s.holds_whole(tokens),
                s.reusable_prefix(tokens, view.chunks),
                std::cmp::Reverse(s.cached.len()),
            )
        })
        .map_or(0, |(i, _)| i)
}

/// Saves the prefix that slot `i` could serve to host memory when `prompt`, about to take the slot,
/// keeps less of it and no other slot holds it.
fn save_before_reuse(
    ctx: &mut LlamaContext,
    saved: &mut PromptCache,
    slots: &mut [Slot],
    i: usize,
    prompt: &[LlamaToken],
    view: &ModelView,
) {
    let slot = &slots[i];
    if view.reuse && slot.holds_whole(prompt) {
        // The same prompt again: the slot keeps all of it (`Slot::start`).
        return;
    }
    let prefix = &slot.cached[..view.save_len(slot.reusable)];
    let elsewhere = slots.iter().any(|s| s.seq != slot.seq && s.cached[..s.reusable].starts_with(prefix));
    if slot.reusable_prefix(prompt, view.chunks) < prefix.len() && !elsewhere {
        save_slot(ctx, saved, &mut slots[i], view);
    }
}

/// Saves what free slot `slot` could serve (`Chunks::save_point`) to host memory; the slot keeps
/// just that much (the sequence state is taken from a sequence cut there). Nothing happens where
/// the slot cannot be continued from there (a sliding window reaching below its real cells).
fn save_slot(ctx: &mut LlamaContext, saved: &mut PromptCache, slot: &mut Slot, view: &ModelView) {
    let len = view.save_len(slot.reusable);
    if !view.window_keeps(ctx, slot, len) {
        return;
    }
    saved.save(ctx, slot.seq, &slot.cached[..len]);
    if ctx.kv_cache_seq_rm(slot.seq, Some(len as u32), None).is_ok() {
        slot.cached.truncate(len);
        slot.reusable = len;
    } else {
        let _ = ctx.kv_cache_seq_rm(slot.seq, None, None);
        slot.forget();
    }
}

/// Makes `slot` hold `prompt` whole again, after [`Slot::take_whole`] and a save that cut its cache
/// below it (or emptied it, as the disk write's scratch slot: then it is restored from host memory
/// first): evaluates the prompt's end from its reuse point in one chunk, as sending the prompt
/// again would, so that the same prompt after the engine was idle still evaluates nothing. Where
/// that cannot be done, the slot keeps what it has, without holding the prompt whole.
fn complete_again(
    ctx: &mut LlamaContext,
    batch: &mut LlamaBatch,
    saved: &mut PromptCache,
    slot: &mut Slot,
    prompt: &[LlamaToken],
    view: &ModelView,
) {
    if slot.cached.starts_with(prompt) {
        // Not cut (saving skipped it).
        slot.hold_whole_again(ctx, None, prompt.len());
        return;
    }
    let from = view.chunks.reuse_point(prompt.len(), prompt.len());
    if slot.cached.is_empty() && from > 0 {
        let usable = |common, pos_min| view.usable_prefix(common, pos_min, prompt.len()).filter(|&upto| upto == from);
        let Some((entry, upto)) = saved.best(prompt, usable) else { return };
        let Some((tokens, floor)) = restore_saved(ctx, saved, entry, slot.seq, upto) else { return };
        (slot.cached, slot.window_floor, slot.reusable) = (tokens, floor, upto);
    }
    if slot.cached.len() < from || !prompt.starts_with(&slot.cached) || !view.window_keeps(ctx, slot, from) {
        return;
    }
    if ctx.kv_cache_seq_rm(slot.seq, Some(from as u32), None).is_err() {
        let _ = ctx.kv_cache_seq_rm(slot.seq, None, None);
        slot.forget();
        return;
    }
    slot.cached.truncate(from);
    slot.reusable = slot.reusable.min(from);
    batch.clear();
    for (j, &token) in prompt[from..].iter().enumerate() {
        // At most a minimum chunk and a row group: within BATCH.
        let _ = batch.add(token, (from + j) as i32, &[slot.seq], from + j + 1 == prompt.len());
    }
    if super::compute::decode(ctx, batch).is_err() {
        let _ = ctx.kv_cache_seq_rm(slot.seq, None, None);
        slot.forget();
        return;
    }
    slot.cached.extend_from_slice(&prompt[from..]);
    slot.reusable = view.chunks.reusable_after(prompt.len());
    slot.hold_whole_again(ctx, Some(batch.n_tokens() - 1), prompt.len());
    tracing::debug!(seq = slot.seq, tokens = prompt.len() - from, "completed a saved prompt again");
}

/// One engine step: prompt chunks of new predictions, then a token for every generating slot.
///
/// Prompts go first so that a prediction whose prompt is complete samples its first token at once
/// and generates in the same step's batch; running streams wait for the same work either way.
impl Worker<'_> {
    fn step(&mut self) {
        let Self { view: model, slots, .. } = self;
        // Cancelled predictions end before any more work is spent on them.
        for slot in slots.iter_mut() {
            if let Some(a) = &slot.active {
                if a.job.events.is_disconnected() {
                    slot.release();
                } else if a.job.cancel.load(Ordering::Relaxed) {
                    slot.finish(StopReason::UserStopped, model.info);
                }
            }
        }
        if self.evaluate_prompts() {
            self.generate();
        }
    }

    /// Evaluates the next chunk of every unfinished prompt, each chunk decoded alone so that its rows
    /// do not depend on other predictions, and samples the first token of each prompt completed.
    /// Pacing protects streams that are under way; predictions that arrived together start at full
    /// speed. Returns false when a decode failed (every prediction has then ended).
    fn evaluate_prompts(&mut self) -> bool {
        let Self { ctx, view: model, batch, slots, pacer, saved, .. } = self;
        let paced = slots.iter().any(|s| s.active.as_ref().is_some_and(|a| a.predicted >= UNDER_WAY));
        let mut budget = if paced { pacer.budget(model.chunks.min) } else { BATCH as usize };
        for i in 0..slots.len() {
            // A copy is carried out at the next decode, so slots share only in a turn that decodes
            // their next chunk at once (with a minimum chunk of budget): a copy left queued could
            // be carried out after its source was overwritten.
            let shared = if budget >= model.chunks.min { share(ctx, model, slots, saved, i) } else { Share::Nothing };
            match shared {
                Share::Wait => continue,
                Share::Copy { from, upto } => copy_prefix(ctx, slots, from, i, upto),
                Share::Restore { entry, upto } => restore_prefix(ctx, slots, saved, entry, i, upto),
                Share::Nothing => {}
            }
            let slot = &mut slots[i];
            let Some(a) = slot.active.as_mut() else { continue };
            let prompt_len = a.job.tokens.len();
            let take = model.chunks.next(prompt_len - a.prompt_done, budget);
            if take == 0 {
                continue;
            }
            batch.clear();
            for (j, &token) in a.job.tokens[a.prompt_done..a.prompt_done + take].iter().enumerate() {
                let last = a.prompt_done + j + 1 == prompt_len;
                // Capacity is BATCH; a chunk past its budget is under two minimum chunks.
                let _ = batch.add(token, slot.cached.len() as i32, &[slot.seq], last);
                slot.cached.push(token);
            }
            let started = Instant::now();
            if !decode(ctx, batch, slots) {
                return false;
            }
            pacer.record_prompt(take, started);
            tracing::debug!(
                seq = slots[i].seq,
                tokens = take,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "evaluated a prompt chunk"
            );
            budget = budget.saturating_sub(take);
            let slot = &mut slots[i];
            let Some(a) = slot.active.as_mut() else { continue };
            a.prompt_done += take;
            let progress = if a.prompt_done == prompt_len { 1.0 } else { a.prompt_done as f32 / prompt_len as f32 };
            if progress > a.last_progress {
                a.last_progress = progress;
                if a.job.events.send(Event::PromptProgress(progress)).is_err() {
                    slot.release();
                    continue;
                }
            }
            if !model.reuse {
                // Nothing is reusable, so nothing is reused, shared or saved.
                slot.reusable = 0;
                if a.prompt_done == prompt_len {
                    slot.sample(ctx, batch.n_tokens() - 1, model);
                }
            } else if a.prompt_done < prompt_len {
                // A whole number of row groups from a row-group boundary: other slots may share it now.
                slot.reusable = a.prompt_done;
            } else {
                slot.reusable = model.chunks.reusable_after(prompt_len);
                slot.keep_prompt_logits(ctx, batch.n_tokens() - 1, prompt_len);
                slot.sample(ctx, batch.n_tokens() - 1, model);
            }
        }
        true
    }
}

/// What other slots can do for the unfinished prompt of a slot.
enum Share {
    /// Copy the first `upto` tokens of slot `from`'s cache.
    Copy {
        from: usize,
        upto: usize,
    },
    /// Restore the first `upto` tokens of a prompt saved in host memory.
    Restore {
        entry: usize,
        upto: usize,
    },
    /// Another slot is evaluating a prefix this prompt shares: copy it once computed.
    Wait,
    Nothing,
}

/// Whether slot `i` can take its prompt's next tokens from another slot's cache, now or once
/// another slot evaluating the same prefix has computed it. Of several slots evaluating one prefix,
/// the one furthest on (then the lowest sequence) evaluates and the others wait, so a prefix that
/// concurrent requests share is computed once.
fn share(ctx: &LlamaContext, model: &ModelView, slots: &[Slot], saved: &PromptCache, i: usize) -> Share {
    let Some(a) = &slots[i].active else { return Share::Nothing };
    let prompt = &a.job.tokens;
    if a.prompt_done == prompt.len() {
        return Share::Nothing;
    }
    let worth = |upto: usize| upto >= a.prompt_done + MIN_SHARED;
    let here = (a.prompt_done, std::cmp::Reverse(slots[i].seq));
    let mut best: Option<(usize, usize)> = None;
    let mut wait = false;
    for (j, other) in slots.iter().enumerate().filter(|&(j, _)| j != i) {
        let upto = other.reusable_prefix(prompt, model.chunks);
        if worth(upto) && best.is_none_or(|(_, b)| upto > b) && model.window_keeps(ctx, other, upto) {
            best = Some((j, upto));
        }
        if let Some(o) = &other.active {
            let shared = model.chunks.reuse_point(common_prefix(&o.job.tokens, prompt), prompt.len());
            let ahead = (o.prompt_done, std::cmp::Reverse(other.seq)) > here;
            wait |= worth(shared) && o.prompt_done < shared && ahead;
        }
    }
    let usable = |common, pos_min| model.usable_prefix(common, pos_min, prompt.len()).filter(|&upto| worth(upto));
    match (best, saved.best(prompt, usable)) {
        (best, Some((entry, upto))) if best.is_none_or(|(_, b)| upto > b) => Share::Restore { entry, upto },
        (Some((from, upto)), _) => Share::Copy { from, upto },
        (None, _) if wait => Share::Wait,
        (None, _) => Share::Nothing,
    }
}

/// Replaces slot `to`'s cache with the first `upto` tokens of slot `from`'s. llama.cpp copies the
/// whole sequence buffer at the next decode (cells keep their places, so results stay the same as
/// computing those tokens here), then the rest is dropped.
fn copy_prefix(ctx: &mut LlamaContext, slots: &mut [Slot], from: usize, to: usize, upto: usize) {
    let (src, dst) = (slots[from].seq, slots[to].seq);
    let tokens = (slots[from].cached[..upto].to_vec(), slots[from].window_floor);
    let copied =
        ctx.kv_cache_seq_cp(src, dst, None, None).is_ok() && ctx.kv_cache_seq_rm(dst, Some(upto as u32), None).is_ok();
    tracing::debug!(from = src, to = dst, upto, copied, "shared a cached prefix");
    slots[to].took_prefix(ctx, copied.then_some(tokens));
}

/// Replaces slot `to`'s cache with the first `upto` tokens of a prompt saved in host memory.
fn restore_prefix(
    ctx: &mut LlamaContext,
    slots: &mut [Slot],
    saved: &mut PromptCache,
    entry: usize,
    to: usize,
    upto: usize,
) {
    let seq = slots[to].seq;
    let tokens = restore_saved(ctx, saved, entry, seq, upto);
    tracing::debug!(seq, upto, restored = tokens.is_some(), "restored a prompt from host memory");
    slots[to].took_prefix(ctx, tokens);
}

/// Replaces sequence `seq`'s cache with the first `upto` tokens of saved prompt `entry`: those
/// tokens and the window floor ([`Slot::window_floor`]), or `None` with the sequence emptied.
fn restore_saved(
    ctx: &mut LlamaContext,
    saved: &mut PromptCache,
    entry: usize,
    seq: i32,
    upto: usize,
) -> Option<(Vec<LlamaToken>, i32)> {
    let _ = ctx.kv_cache_seq_rm(seq, None, None);
    let restored = saved
        .restore(ctx, entry, seq)
        .map(|(t, floor)| (t[..upto].to_vec(), floor))
        .filter(|_| ctx.kv_cache_seq_rm(seq, Some(upto as u32), None).is_ok());
    if restored.is_none() {
        let _ = ctx.kv_cache_seq_rm(seq, None, None);
    }
    restored
}

impl Worker<'_> {
    /// Decodes the last sampled token of every generating slot in one batch and samples the next.
    /// A slot that speculates puts a draft after its token (positions after it, logits for each)
    /// and keeps the drafted tokens its own draws agree with; its KV cache loses the rest.
    fn generate(&mut self) {
        let Self { ctx, view: model, batch, slots, pacer, .. } = self;
        batch.clear();
        let generating: Vec<i32> =
            slots.iter().filter(|s| s.active.as_ref().is_some_and(|a| a.next.is_some())).map(|s| s.seq).collect();
        let cost = pacer.steps.model();
        // The step's rows so far: a token for each generating slot, and the drafts chosen.
        let mut rows = generating.len();
        let span = generating.iter().min().copied().unwrap_or(0)..generating.iter().max().copied().unwrap_or(0);
        let (mut sampling, mut fillers, n_slots) = (Vec::new(), Vec::new(), slots.len());
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(token) = slot.active.as_mut().and_then(|a| a.next.take()) else {
                if model.fillers && span.contains(&slot.seq) {
                    let token = slot.cached.last().copied().unwrap_or(LlamaToken(0));
                    fillers.extend(add_filler(ctx, batch, slot.seq, token, model.ctx_len).map(|pos| (i, pos)));
                }
                continue;
            };
            let Some(a) = slot.active.as_mut() else { continue };
            let at = batch.n_tokens();
            let pos = slot.cached.len();
            // Capacity is at least the number of slots.
            let _ = batch.add(token, pos as i32, &[slot.seq], true);
            slot.cached.push(token);
            let mut draft = Vec::new();
            if let Some(d) = a.drafts.as_mut() {
                // Room in the context and the batch (one token for each other generating slot),
                // and no more than the prediction may still make.
                let left = a.job.config.max_tokens.map_or(usize::MAX, |m| m.saturating_sub(a.predicted) as usize);
                let room = (model.ctx_len.saturating_sub(pos + 2))
                    .min((BATCH as usize).saturating_sub(batch.n_tokens() as usize + n_slots))
                    .min(left.saturating_sub(1));
                draft = match &d.model {
                    None => d.ngram(&slot.cached, room, rows, cost),
                    Some((m, rule)) => m.draft(slot.seq, &slot.cached, room, *rule),
                };
                rows += draft.len();
                d.stats.total_draft_tokens_count += draft.len() as u64;
                for (j, &t) in draft.iter().enumerate() {
                    let _ = batch.add(t, (pos + 1 + j) as i32, &[slot.seq], true);
                }
            }
            sampling.push((i, at, draft));
        }
        if sampling.is_empty() {
            return;
        }
        let started = Instant::now();
        let decoded = decode(ctx, batch, slots);
        let decoded_ms = started.elapsed().as_secs_f64() * 1e3;
        for (i, pos) in fillers.iter().copied() {
            let slot = &mut slots[i];
            // After a failed decode the sequence's state is unknown: its cache goes too.
            if !decoded || ctx.kv_cache_seq_rm(slot.seq, Some(pos as u32), None).is_err() {
                let _ = ctx.kv_cache_seq_rm(slot.seq, None, None);
                slot.forget();
                slot.fail(Error::Engine("could not drop a filler row from the KV cache".into()));
            }
        }
        if !decoded {
            return;
        }
        for (i, at, draft) in sampling {
            let slot = &mut slots[i];
            slot.sample(ctx, at, model);
            if draft.is_empty() {
                continue;
            }
            let mut accepted = 0;
            // Each drafted token stands while the draw at the position before it produced it (a
            // prediction that ended leaves the rest ignored).
            while let Some(a) = slot.active.as_mut() {
                let Some(d) = a.drafts.as_mut() else { break };
                if accepted == draft.len() {
                    d.fared(draft.len(), accepted);
                    break;
                }
                if a.next != Some(draft[accepted]) {
                    d.stats.rejected_draft_tokens_count += 1;
                    d.fared(draft.len(), accepted);
                    break;
                }
                d.stats.accepted_draft_tokens_count += 1;
                a.next = None;
                slot.cached.push(draft[accepted]);
                accepted += 1;
                slot.sample(ctx, at + accepted as i32, model);
            }
            // What was drafted past the last kept token leaves the cache.
            if accepted < draft.len() && ctx.kv_cache_seq_rm(slot.seq, Some(slot.cached.len() as u32), None).is_err() {
                let _ = ctx.kv_cache_seq_rm(slot.seq, None, None);
                slot.forget();
                slot.fail(Error::Engine("could not drop a rejected draft from the KV cache".into()));
            }
        }
        let ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(rows, seqs = ?generating, fillers = fillers.len(), decoded_ms, ms, "generated a step");
        pacer.record_step(rows, started);
    }
}

/// Puts a filler row (`token`, without logits) for sequence `seq` after the cells it holds, for a
/// slot that is not generating between two that are. llama.cpp splits a batch over a non-unified
/// cache into micro-batches of consecutive sequences, so without it the step would take two, each
/// a pass over the weights (the default model on 2 cores: sequences 0, 1 and 3 decode in 52 ms,
/// 0 to 3 in 36 ms). The caller drops the cell after the step, which leaves the sequence's cells
/// and where its next token goes as they were. `None` where the slot's cache has no room left.
fn add_filler(ctx: &LlamaContext, batch: &mut LlamaBatch, seq: i32, token: LlamaToken, ctx_len: usize) -> Option<i32> {
    let pos = ctx.kv_cache_seq_pos_max(seq) + 1;
    ((pos as usize) < ctx_len && batch.add(token, pos, &[seq], false).is_ok()).then_some(pos)
}

/// Decodes `batch`; on failure the batch's sequences are in an unknown state, so every running
/// prediction fails and its cache is dropped. Returns whether it succeeded.
fn decode(ctx: &mut LlamaContext, batch: &mut LlamaBatch, slots: &mut [Slot]) -> bool {
    let Err(e) = super::compute::decode(ctx, batch) else { return true };
    for slot in slots.iter_mut() {
        if slot.active.is_some() {
            let _ = ctx.kv_cache_seq_rm(slot.seq, None, None);
            slot.forget();
            slot.fail(Error::Engine(e.to_string()));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::backend::Attention;
    use super::super::rules::{Chunks, PROMPT_CHUNK_WHILE_GENERATING, ROW_GROUP};
    use super::*;
    use crate::store::{ModelStore, DEFAULT_MODEL_PATH};

    /// Evaluates `tokens[from..]` on sequence 0 in the chunks the worker uses with `budget` tokens
    /// per step, and returns the last token's logits.
    fn evaluate(ctx: &mut LlamaContext, c: Chunks, tokens: &[LlamaToken], from: usize, budget: usize) -> Vec<f32> {
        evaluate_on(ctx, c, 0, tokens, from, budget)
    }

    fn evaluate_on(
        ctx: &mut LlamaContext,
        c: Chunks,
        seq: i32,
        tokens: &[LlamaToken],
        from: usize,
        budget: usize,
    ) -> Vec<f32> {
        let mut batch = LlamaBatch::new(BATCH as usize, 1);
        let mut done = from;
        while done < tokens.len() {
            let take = c.next(tokens.len() - done, budget);
            batch.clear();
            for (i, &t) in tokens[done..done + take].iter().enumerate() {
                batch.add(t, (done + i) as i32, &[seq], done + i + 1 == tokens.len()).expect("fits");
            }
            crate::engine::compute::decode(ctx, &mut batch).expect("decodes");
            done += take;
        }
        ctx.get_logits_ith(batch.n_tokens() - 1).to_vec()
    }

    /// Both attention paths the engine runs on the CPU (flash attention off and on, its default).
    const ATTENTION: [bool; 2] = [false, true];

    /// A context on the default model with `parallel` slots of `context_length` cells, 2 threads.
    fn test_context(context_length: u32, parallel: u32, window: usize, flash_attention: bool) -> LlamaContext<'static> {
        context_on(default_model(), context_length, parallel, window, flash_attention)
    }

    fn context_on(
        model: &'static LlamaModel,
        context_length: u32,
        parallel: u32,
        window: usize,
        flash_attention: bool,
    ) -> LlamaContext<'static> {
        let params = EngineParams {
            context_length,
            parallel,
            threads: 2,
            sliding_window: window as u32,
            attention: Attention { flash: flash_attention, offload_kv_cache: true },
            reuse_prompts: true,
            prompt_cache_bytes: 0,
            disk_cache: None,
        };
        new_context(super::super::backend::backend().expect("backend"), model, &params, 2).expect("context")
    }

    /// Loads `path` on the CPU in every build: these tests are about the CPU kernels.
    fn load_on_cpu(path: &std::path::Path) -> LlamaModel {
        let backend = super::super::backend::backend().expect("backend");
        let params = llama_cpp_2::model::params::LlamaModelParams::default().with_n_gpu_layers(0);
        LlamaModel::load_from_file(backend, path, &params).expect("loads")
    }

    fn default_model() -> &'static LlamaModel {
        static MODEL: std::sync::OnceLock<LlamaModel> = std::sync::OnceLock::new();
        MODEL.get_or_init(|| {
            let path = ModelStore::from_env().root().join(DEFAULT_MODEL_PATH);
            assert!(path.exists(), "the default model is needed: run `lms get` first");
            load_on_cpu(&path)
        })
    }

    /// A model without a sliding window: a small qwen2 of random weights (`scripts/random-gguf.py
    /// tiny`), for the kernel paths the default model's window layers keep out of.
    fn windowless_model() -> &'static LlamaModel {
        static MODEL: std::sync::OnceLock<LlamaModel> = std::sync::OnceLock::new();
        MODEL.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("lmstudio-worker-tests-{}", std::process::id()));
            let path = dir.join("tiny.gguf");
            lms_test_support::random_gguf("tiny", &path, &[]);
            let model = load_on_cpu(&path);
            let _ = std::fs::remove_dir_all(&dir);
            model
        })
    }

    const HARBOUR: &str =
        "Ships came into the harbour at dusk, their sails torn by the storm, and the town came out to watch. ";

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    /// The kernel property the prefix cache relies on: however a prompt is chunked and whatever
    /// prefix the cache held, its logits are bitwise the same, with flash attention and without.
    #[test]
    fn prompt_logits_do_not_depend_on_chunking_or_cache() {
        for fa in ATTENTION {
            let c = Chunks::for_attention(fa);
            let mut ctx = test_context(1024, 1, 0, fa);
            let text = HARBOUR.repeat(8);
            let other = tokenize(&format!("{text}Nobody on the quay said a word"));
            for ending in ["The", "The old", "The old man", "The old man who"] {
                let prompt = tokenize(&format!("{text}{ending}"));
                ctx.clear_kv_cache();
                let cold = evaluate(&mut ctx, c, &prompt, 0, BATCH as usize);
                // The same prompt from the cache, in smaller chunks.
                let from = c.reuse_point(c.reusable_after(prompt.len()), prompt.len());
                ctx.kv_cache_seq_rm(0, Some(from as u32), None).expect("trims");
                let again = evaluate(&mut ctx, c, &prompt, from, PROMPT_CHUNK_WHILE_GENERATING);
                // On the prefix another prompt left.
                ctx.clear_kv_cache();
                evaluate(&mut ctx, c, &other, 0, PROMPT_CHUNK_WHILE_GENERATING);
                let reusable = c.reusable_after(other.len());
                let from = c.reuse_point(common_prefix(&other[..reusable], &prompt), prompt.len());
                assert!(from > 50, "the prefix is shared");
                ctx.kv_cache_seq_rm(0, Some(from as u32), None).expect("trims");
                let on_prefix = evaluate(&mut ctx, c, &prompt, from, BATCH as usize);
                assert!(same_bits(&cold, &again), "{ending:?}, flash attention {fa}: cold and from the cache");
                assert!(
                    same_bits(&cold, &on_prefix),
                    "{ending:?}, flash attention {fa}: cold and on another prompt's prefix"
                );
            }
        }
    }

    /// A context with two slots, a donor prompt, a prompt that shares its prefix, and that prompt's
    /// logits computed cold in slot 1 with [`DECODED`] greedy steps after (the cache is empty again
    /// after). The prompts stay within Gemma 3's window (512): these tests model a cache without a
    /// window, whose states hold every cell.
    #[allow(clippy::type_complexity)]
    fn sharing_fixture(fa: bool) -> (LlamaContext<'static>, Vec<LlamaToken>, Vec<LlamaToken>, Vec<Vec<f32>>) {
        let mut ctx = test_context(1024, 2, 0, fa);
        let c = Chunks::for_attention(fa);
        let donor = tokenize(&format!("{}Nobody on the quay said a word", HARBOUR.repeat(8)));
        let prompt = tokenize(&format!("{}The old man who", HARBOUR.repeat(8)));
        assert!(prompt.len() + DECODED < 512, "{}", prompt.len());
        let cold = evaluate_on(&mut ctx, c, 1, &prompt, 0, BATCH as usize);
        let cold = decode_greedy(&mut ctx, 1, &cold, prompt.len(), DECODED);
        ctx.clear_kv_cache();
        (ctx, donor, prompt, cold)
    }

    /// Greedy steps decoded after a prompt in the bitwise tests.
    const DECODED: usize = 8;

    /// Whether two runs' logits, step by step, are bitwise the same.
    fn same_steps(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_bits(x, y))
    }

    fn tokenize(text: &str) -> Vec<LlamaToken> {
        tokenize_for(default_model(), text)
    }

    fn tokenize_for(model: &LlamaModel, text: &str) -> Vec<LlamaToken> {
        model.vocab().tokenize(text.as_bytes(), true, true)
    }

    /// A prefix copied from another slot's cache (`copy_prefix`) gives the same logits as computing
    /// the prompt cold in this slot (the prompt's and the decoded tokens'), also while the other
    /// slot has gone on past the shared part.
    #[test]
    fn prompt_logits_do_not_depend_on_a_copied_prefix() {
        for fa in ATTENTION {
            let c = Chunks::for_attention(fa);
            let (mut ctx, donor, prompt, cold) = sharing_fixture(fa);
            evaluate_on(&mut ctx, c, 0, &donor, 0, PROMPT_CHUNK_WHILE_GENERATING);
            let upto = c.reuse_point(common_prefix(&donor[..c.reusable_after(donor.len())], &prompt), prompt.len());
            assert!(upto > 50, "the prefix is shared");
            ctx.kv_cache_seq_cp(0, 1, None, None).expect("copies");
            ctx.kv_cache_seq_rm(1, Some(upto as u32), None).expect("trims");
            // The donor goes on before the copy is carried out (at the next decode).
            let more = tokenize(" and the bells rang");
            let mut batch = LlamaBatch::new(BATCH as usize, 1);
            for (i, &t) in more.iter().enumerate() {
                batch.add(t, (donor.len() + i) as i32, &[0], false).expect("fits");
            }
            crate::engine::compute::decode(&mut ctx, &mut batch).expect("decodes");
            let copied = evaluate_on(&mut ctx, c, 1, &prompt, upto, BATCH as usize);
            let copied = decode_greedy(&mut ctx, 1, &copied, prompt.len(), DECODED);
            assert!(same_steps(&cold, &copied), "flash attention {fa}: cold and on a copied prefix");
        }
    }

    /// A filler row (`add_filler`) put into an idle slot's sequence while the slots around it
    /// generate, and dropped after each step, leaves that sequence as it was: the prompt it holds
    /// goes on bit for bit as it does without those steps, with flash attention and without.
    #[test]
    fn a_filler_row_leaves_the_idle_sequence_as_it_was() {
        for fa in ATTENTION {
            let mut ctx = test_context(1024, 3, 0, fa);
            let c = Chunks::for_attention(fa);
            let prompt = tokenize(&format!("{}The old man who", HARBOUR.repeat(4)));
            let last = *prompt.last().expect("a prompt");
            let first = evaluate_on(&mut ctx, c, 1, &prompt, 0, BATCH as usize);
            let alone = decode_greedy(&mut ctx, 1, &first, prompt.len(), DECODED);
            ctx.clear_kv_cache();
            let first = evaluate_on(&mut ctx, c, 1, &prompt, 0, BATCH as usize);
            let mut batch = LlamaBatch::new(8, 3);
            assert_eq!(add_filler(&ctx, &mut batch, 1, last, prompt.len()), None, "no room past the context");
            for (pos, &t) in tokenize("1, 2, 3, 4, 5, 6").iter().enumerate() {
                batch.clear();
                batch.add(t, pos as i32, &[0], true).expect("fits");
                let filler = add_filler(&ctx, &mut batch, 1, last, 1024).expect("room");
                assert_eq!(filler as usize, prompt.len(), "after the prompt");
                batch.add(t, pos as i32, &[2], true).expect("fits");
                crate::engine::compute::decode(&mut ctx, &mut batch).expect("decodes");
                ctx.kv_cache_seq_rm(1, Some(filler as u32), None).expect("drops the filler");
            }
            let filled = decode_greedy(&mut ctx, 1, &first, prompt.len(), DECODED);
            assert!(same_steps(&alone, &filled), "flash attention {fa}");
        }
    }

    /// The host cache keeps within its size by dropping the least recently used prompt.
    #[test]
    fn prompt_cache_drops_the_least_recently_used() {
        let (mut ctx, donor, prompt, _) = sharing_fixture(true);
        let c = Chunks::for_attention(true);
        let whole = |t: &[LlamaToken]| c.reusable_after(t.len());
        let shared = |saved: &PromptCache, t: &[LlamaToken]| saved.best(t, |common, _| Some(common)).map(|(_, c)| c);
        evaluate_on(&mut ctx, c, 0, &donor, 0, BATCH as usize);
        let one = ctx.state_seq_get_size_ext(0, llama_cpp_2::LlamaStateSeqFlags::empty());
        let mut saved = PromptCache::new(one * 3 / 2, 0);
        saved.save(&mut ctx, 0, &donor[..whole(&donor)]);
        assert_eq!(shared(&saved, &donor), Some(whole(&donor)));
        evaluate_on(&mut ctx, c, 1, &prompt, 0, BATCH as usize);
        saved.save(&mut ctx, 1, &prompt[..whole(&prompt)]);
        assert_eq!(shared(&saved, &prompt), Some(whole(&prompt)));
        assert!(shared(&saved, &donor).is_some_and(|c| c < whole(&donor)), "only one fits: the older is gone");
    }

    /// Greedy decoding of `n` tokens on sequence `seq` after a prompt of `len` tokens whose last
    /// logits are `first`, one token per batch: the logits of each step, `first` included.
    fn decode_greedy(ctx: &mut LlamaContext, seq: i32, first: &[f32], len: usize, n: usize) -> Vec<Vec<f32>> {
        let mut steps = vec![first.to_vec()];
        let mut batch = LlamaBatch::new(1, 1);
        for pos in len..len + n {
            let last = steps.last().expect("a step");
            let token = (0..last.len()).max_by(|&a, &b| last[a].total_cmp(&last[b])).expect("logits");
            batch.clear();
            batch.add(LlamaToken(token as i32), pos as i32, &[seq], true).expect("fits");
            crate::engine::compute::decode(ctx, &mut batch).expect("decodes");
            steps.push(ctx.get_logits_ith(0).to_vec());
        }
        steps
    }

    /// Restores host-cache `entry` into sequence `seq` (emptied first), cut back to `upto`, then
    /// evaluates the rest of `prompt` and decodes [`DECODED`] greedy steps: each step's logits.
    fn restore_and_decode(
        ctx: &mut LlamaContext,
        c: Chunks,
        saved: &mut PromptCache,
        entry: usize,
        seq: i32,
        prompt: &[LlamaToken],
        upto: usize,
    ) -> Vec<Vec<f32>> {
        ctx.kv_cache_seq_rm(seq, None, None).expect("clears");
        saved.restore(ctx, entry, seq).expect("restores");
        ctx.kv_cache_seq_rm(seq, Some(upto as u32), None).expect("trims");
        let last = evaluate_on(ctx, c, seq, prompt, upto, BATCH as usize);
        decode_greedy(ctx, seq, &last, prompt.len(), DECODED)
    }

    /// Gemma 3's window layers (512 tokens): a prompt longer than the window, saved where
    /// `save_point` puts it and restored into a slot that held other tokens, gives the cold logits
    /// bit for bit, for the prompt and for the tokens decoded after it, with flash attention and
    /// without (the restore puts the window cells where the cold run keeps them: `seq_state`;
    /// without that, flash attention's decoding splits the cells between its threads elsewhere).
    /// The whole prompt saved cannot be cut back (its state lacks the window cells before the
    /// cut), and the cache does not offer it.
    #[test]
    fn a_prompt_longer_than_the_window_is_restored_where_it_was_saved() {
        const WINDOW: usize = 512;
        for fa in ATTENTION {
            let c = Chunks::for_attention(fa);
            let mut ctx = test_context(2048, 2, WINDOW, fa);
            let prompt = tokenize(&format!("{}The old man who", HARBOUR.repeat(45)));
            assert!(prompt.len() > 2 * WINDOW, "{}", prompt.len());
            let cold = evaluate_on(&mut ctx, c, 1, &prompt, 0, BATCH as usize);
            let cold = decode_greedy(&mut ctx, 1, &cold, prompt.len(), DECODED);
            ctx.clear_kv_cache();
            evaluate_on(
                &mut ctx,
                c,
                1,
                &tokenize(&"Bread needs flour, water, salt and yeast. ".repeat(30)),
                0,
                BATCH as usize,
            );
            evaluate_on(&mut ctx, c, 0, &prompt, 0, PROMPT_CHUNK_WHILE_GENERATING);
            let whole = c.reusable_after(prompt.len());
            let usable = |common: usize, pos_min: i32| {
                let upto = c.reuse_point(common, prompt.len());
                (pos_min <= upto.saturating_sub(WINDOW) as i32).then_some(upto)
            };
            let mut naive = PromptCache::new(64 << 20, WINDOW);
            naive.save(&mut ctx, 0, &prompt[..whole]);
            assert_eq!(naive.best(&prompt, usable), None, "the whole prompt's state continues only from its end");
            // Saved where the engine saves it.
            let restored_at = |at: usize, ctx: &mut LlamaContext| {
                ctx.kv_cache_seq_rm(0, None, None).expect("clears");
                evaluate_on(ctx, c, 0, &prompt, 0, PROMPT_CHUNK_WHILE_GENERATING);
                let mut saved = PromptCache::new(64 << 20, WINDOW);
                saved.save(ctx, 0, &prompt[..at]);
                let (entry, upto) = saved.best(&prompt, usable).expect("the saved prompt serves");
                assert_eq!(upto, at);
                let decoded = restore_and_decode(ctx, c, &mut saved, entry, 1, &prompt, upto);
                ctx.kv_cache_seq_rm(1, None, None).expect("clears");
                decoded
            };
            let at = c.save_point(whole, WINDOW);
            assert!(at > WINDOW, "{at}");
            let restored = restored_at(at, &mut ctx);
            assert!(same_steps(&cold, &restored), "flash attention {fa}: cold and restored at {at}");
            // Why not save the whole prompt: its state cut back to the same point gives other logits.
            naive.restore(&mut ctx, 0, 1).expect("restores");
            ctx.kv_cache_seq_rm(1, Some(at as u32), None).expect("trims");
            let cut = evaluate_on(&mut ctx, c, 1, &prompt, at, BATCH as usize);
            assert!(!same_bits(&cold[0], &cut), "flash attention {fa}: a cut state lacks window cells");
        }
    }

    /// A prefix saved to host memory (`PromptCache`) and restored into another slot, one that held
    /// other tokens before, gives the same logits as computing the prompt cold (the prompt's and the
    /// decoded tokens').
    #[test]
    fn prompt_logits_do_not_depend_on_a_restored_prefix() {
        for fa in ATTENTION {
            let c = Chunks::for_attention(fa);
            let (mut ctx, donor, prompt, cold) = sharing_fixture(fa);
            evaluate_on(
                &mut ctx,
                c,
                1,
                &tokenize(&"Bread needs flour, water, salt and yeast. ".repeat(9)),
                0,
                BATCH as usize,
            );
            evaluate_on(&mut ctx, c, 0, &donor, 0, PROMPT_CHUNK_WHILE_GENERATING);
            let mut saved = PromptCache::new(64 << 20, 0);
            saved.save(&mut ctx, 0, &donor[..c.reusable_after(donor.len())]);
            ctx.kv_cache_seq_rm(0, None, None).expect("the slot moves on");
            let (entry, upto) = saved
                .best(&prompt, |common, _| Some(c.reuse_point(common, prompt.len())))
                .expect("the prefix is saved");
            assert!(upto > 50, "the prefix is shared");
            let restored = restore_and_decode(&mut ctx, c, &mut saved, entry, 1, &prompt, upto);
            assert!(same_steps(&cold, &restored), "flash attention {fa}: cold and on a restored prefix");
        }
    }

    /// Without a sliding window, with flash attention (on by default there), a lone sequence of 512
    /// cells or more decodes on llama.cpp's split-KV path, whose sums depend on where the cells lie
    /// (see `a_prompt_longer_than_the_window_is_restored_where_it_was_saved`). A state without a
    /// window holds every cell and is restored from the sequence's first cell, where a cold run
    /// computes them: a prompt past 512 tokens restored into a slot that held other tokens gives
    /// the cold logits bit for bit, the prompt's and the decoded tokens'.
    #[test]
    fn a_prompt_past_512_cells_is_restored_bitwise_without_a_window() {
        let model = windowless_model();
        let tokenize = |text: &str| tokenize_for(model, text);
        for fa in ATTENTION {
            let c = Chunks::for_attention(fa);
            let mut ctx = context_on(model, 1024, 2, 0, fa);
            let prompt = tokenize(&format!("{}The old man who", HARBOUR.repeat(14)));
            assert!(prompt.len() > 512 + c.min + ROW_GROUP && prompt.len() + DECODED < 1024, "{}", prompt.len());
            let cold = evaluate_on(&mut ctx, c, 1, &prompt, 0, BATCH as usize);
            let cold = decode_greedy(&mut ctx, 1, &cold, prompt.len(), DECODED);
            ctx.clear_kv_cache();
            let other = tokenize(&"Bread needs flour, water, salt and yeast. ".repeat(20));
            evaluate_on(&mut ctx, c, 1, &other, 0, BATCH as usize);
            evaluate_on(&mut ctx, c, 0, &prompt, 0, PROMPT_CHUNK_WHILE_GENERATING);
            let mut saved = PromptCache::new(64 << 20, 0);
            saved.save(&mut ctx, 0, &prompt[..c.save_point(c.reusable_after(prompt.len()), 0)]);
            let (entry, upto) = saved
                .best(&prompt, |common, _| Some(c.reuse_point(common, prompt.len())))
                .expect("the prompt is saved");
            assert!(upto > 512, "{upto}");
            let restored = restore_and_decode(&mut ctx, c, &mut saved, entry, 1, &prompt, upto);
            assert!(same_steps(&cold, &restored), "flash attention {fa}: cold and restored");
        }
    }
}
