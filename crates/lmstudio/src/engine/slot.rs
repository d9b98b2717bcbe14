//! One prediction slot: a sequence of the context, the tokens its cache holds, and the prediction
//! using it, from its start to the result it sends (the per-slot state machine of `worker`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::vocab::LlamaVocab;

use super::draft::{DraftModel, DraftRule};
use super::grammar::Grammar;
use super::job::{EngineParams, Job, Shared};
use super::rules::{
    common_prefix, draft_len, ngram_draft, whole_row_groups_within, Acceptance, Chunks, DRAFT_MAX, DRAFT_START,
};
use super::sampler::Sampler;
use crate::text::{Matched, StopMatcher, Utf8Decoder};
use crate::types::error::Error;
use crate::types::event::Event;
use crate::types::result::{
    DraftStats, Fragment, ModelInfo, PredictionResult, Stats, StopReason, TokenLogprob, TopLogprob,
};

/// What every step needs to know of the loaded model: its vocabulary, end-of-generation tokens,
/// context per slot, and the info that results carry.
pub(super) struct ModelView<'m> {
    pub(super) vocab: LlamaVocab<'m>,
    /// Tokens that end generation (banned from sampling for `ignore_eos`).
    pub(super) end_tokens: Vec<i32>,
    /// Tokens of the output's syntax markers ([`crate::tools::SYNTAX_MARKERS`]), written out as
    /// text even where they are control tokens.
    pub(super) marker_tokens: Vec<i32>,
    /// Tokens of KV cache per slot.
    pub(super) ctx_len: usize,
    /// The sliding attention window (0: none): a cached prefix is usable only while the window
    /// before its end is still cached.
    pub(super) window: usize,
    /// Whether prompt rows are kept for reuse (`EngineParams::reuse_prompts`).
    pub(super) reuse: bool,
    /// How prompts are chunked and reused for the attention path the context takes.
    pub(super) chunks: Chunks,
    /// Whether a filler row can be put in a sequence and dropped again (`worker::add_filler`):
    /// not for recurrent state, which dropping a cell does not restore.
    pub(super) fillers: bool,
    pub(super) info: &'m ModelInfo,
}

impl<'m> ModelView<'m> {
    pub(super) fn new(model: &'m LlamaModel, params: &EngineParams, info: &'m ModelInfo) -> Self {
        let vocab = model.vocab();
        let end_tokens = (0..model.n_vocab()).filter(|&t| vocab.is_eog(LlamaToken(t))).collect();
        let marker_tokens = crate::tools::SYNTAX_MARKERS
            .iter()
            .filter_map(|marker| match vocab.tokenize(marker.as_bytes(), false, true)[..] {
                [token] => Some(token.0),
                _ => None,
            })
            .collect();
        let (ctx_len, window) = (params.context_length as usize, params.sliding_window as usize);
        let (reuse, chunks) = (params.reuse_prompts, Chunks::for_attention(params.attention.flash));
        let fillers = !model.is_recurrent() && !model.is_hybrid();
        Self { vocab, end_tokens, marker_tokens, ctx_len, window, reuse, chunks, fillers, info }
    }

    /// How many of a slot's `reusable` prompt rows to save to host memory and disk.
    pub(super) fn save_len(&self, reusable: usize) -> usize {
        self.chunks.save_point(reusable, self.window)
    }

    /// Whether `slot`'s sequence still holds what continuing after its first `upto` tokens needs:
    /// with a sliding window, the cells of the window before `upto` may have been overwritten, or
    /// be the zero cells a restore put there ([`Slot::window_floor`]).
    pub(super) fn window_keeps(&self, ctx: &LlamaContext, slot: &Slot, upto: usize) -> bool {
        self.window_allows(ctx.kv_cache_seq_pos_min(slot.seq).max(slot.window_floor), upto)
    }

    /// Whether a cache whose oldest position is `pos_min` can continue after `upto` tokens.
    pub(super) fn window_allows(&self, pos_min: i32, upto: usize) -> bool {
        self.window == 0 || pos_min <= upto.saturating_sub(self.window) as i32
    }

    /// How much of a prompt of `len` tokens a saved one sharing `common` tokens with it and holding
    /// cells from `pos_min` on can serve ([`Chunks::reuse_point`]), if the window allows it.
    pub(super) fn usable_prefix(&self, common: usize, pos_min: i32, len: usize) -> Option<usize> {
        let upto = self.chunks.reuse_point(common, len);
        self.window_allows(pos_min, upto).then_some(upto)
    }
}

/// One sequence of the context: the tokens its KV cache holds, and the prediction using it.
pub(super) struct Slot {
    pub(super) seq: i32,
    /// Tokens whose keys and values are in this sequence's cache, in position order.
    pub(super) cached: Vec<LlamaToken>,
    /// How many leading `cached` tokens were computed batch-invariantly (prompt chunks, not
    /// generated tokens), so that reusing them changes no result.
    pub(super) reusable: usize,
    /// The lowest position whose window-layer cells are keys and values: a sliding-window model's
    /// prompt restored past the window has zero cells before it (`seq_state`), which llama.cpp
    /// counts as held. 0 otherwise.
    pub(super) window_floor: i32,
    /// The length of the prompt this slot completed last, while `cached` still begins with it and
    /// `whole_logits` holds its last row's logits (kept where prompts are reused): the same prompt
    /// sent again (a regenerated answer) samples its first token from them and evaluates nothing,
    /// as every one of its cells is cached.
    whole: Option<usize>,
    /// One vocabulary's worth of floats, allocated once: the logits `whole` refers to.
    whole_logits: Vec<f32>,
    /// The prediction using the slot; counted in `shared.running` from before it is set until
    /// it is taken out.
    pub(super) active: Option<Active>,
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Active {
    pub(super) job: Job,
    pub(super) sampler: Sampler,
    /// The language of structured output, when asked for.
    pub(super) grammar: Option<Grammar>,
    /// Prompt tokens evaluated so far (including those found in the cache).
    pub(super) prompt_done: usize,
    pub(super) cached_prompt: usize,
    pub(super) last_progress: f32,
    /// The sampled token that is to be evaluated in the next step.
    pub(super) next: Option<LlamaToken>,
    /// The bytes of the last sampled token (reused).
    pub(super) piece: Vec<u8>,
    pub(super) decoder: Utf8Decoder,
    pub(super) matcher: StopMatcher,
    pub(super) content: String,
    pub(super) predicted: u32,
    /// Tokens predicted since the last fragment was sent.
    pub(super) unsent_tokens: u32,
    /// Their log probabilities, when asked for; and all of them, for the result.
    pub(super) unsent_logprobs: Vec<TokenLogprob>,
    pub(super) logprobs: Vec<TokenLogprob>,
    pub(super) first_token_at: Option<Instant>,
    /// With speculation: where drafts come from, the next one's length, and what became of
    /// drafts so far.
    pub(super) drafts: Option<Drafts>,
}

pub(super) struct Drafts {
    /// The draft model, or `None` for drafts from the context (n-grams).
    pub(super) model: Option<(Arc<DraftModel>, DraftRule)>,
    /// How n-gram drafts have fared, for what a drafted row is worth (`rules::draft_len`).
    acceptance: Acceptance,
    pub(super) stats: DraftStats,
}

impl Drafts {
    fn new(job: &mut Job) -> Option<Self> {
        let model = job.draft.take();
        let key = match &model {
            Some((m, _)) => m.key.clone(),
            None if job.config.ngram_speculation => "ngram".into(),
            None => return None,
        };
        Some(Self {
            model,
            acceptance: Acceptance::default(),
            stats: DraftStats { used_draft_model_key: key, ..Default::default() },
        })
    }

    /// The next n-gram draft from `cached`, at most `room` tokens, cut where a row no longer pays
    /// in a step of `rows` rows whose `(fixed, per_row)` seconds are `cost` (`rules::draft_len`;
    /// a draft that fills the room finishes the prediction). Before steps were timed, at most
    /// [`DRAFT_START`] tokens in whole row groups.
    pub(super) fn ngram(
        &mut self,
        cached: &[LlamaToken],
        room: usize,
        rows: usize,
        cost: Option<(f64, f64)>,
    ) -> Vec<LlamaToken> {
        let (mut found, depth) = ngram_draft(cached, DRAFT_MAX.min(room));
        let Some((fixed, per_row)) = cost else {
            found.truncate(whole_row_groups_within(rows, found.len().min(DRAFT_START)));
            return found;
        };
        // A drafted token that stands is one more token of agreement for the next.
        let acceptance = self.acceptance;
        let p = |k| acceptance.rate(depth + k);
        let len = draft_len(p, fixed, per_row, rows, found.len(), found.len() == room);
        tracing::debug!(p = p(0), depth, fixed, per_row, rows, found = found.len(), len, "sized a draft");
        if len == 0 && !found.is_empty() {
            self.acceptance.skipped();
        }
        found.truncate(len);
        found
    }

    /// A draft of `drafted` tokens of which the first `accepted` stood.
    pub(super) fn fared(&mut self, drafted: usize, accepted: usize) {
        self.acceptance.record(drafted, accepted);
    }
}

impl Slot {
    pub(super) fn new(seq: i32, shared: Arc<Shared>) -> Self {
        Self {
            seq,
            cached: Vec::new(),
            reusable: 0,
            window_floor: 0,
            whole: None,
            whole_logits: Vec::new(),
            active: None,
            shared,
        }
    }

    /// Takes the prediction out of the slot, uncounting it (and the KV cache it held) before any
    /// result is sent.
    pub(super) fn end(&mut self) -> Option<Active> {
        let a = self.active.take();
        if a.is_some() {
            // The worker alone writes this gauge: a load and a store do not race.
            let held = self.shared.kv_tokens.load(Ordering::SeqCst);
            self.shared.kv_tokens.store(held.saturating_sub(self.cached.len()), Ordering::SeqCst);
            self.shared.running.fetch_sub(1, Ordering::SeqCst);
        }
        a
    }

    /// How many tokens of `prompt` this slot's cache can serve.
    pub(super) fn reusable_prefix(&self, prompt: &[LlamaToken], chunks: Chunks) -> usize {
        chunks.reuse_point(common_prefix(&self.cached[..self.reusable], prompt), prompt.len())
    }

    /// Forgets the cache's contents (the caller dropped them or the context is new).
    pub(super) fn forget(&mut self) {
        self.cached.clear();
        self.reusable = 0;
        self.window_floor = 0;
        self.whole = None;
    }

    /// Keeps the logits at batch index `row`, the last row of the prompt of `len` tokens just
    /// completed in this slot (`whole`).
    pub(super) fn keep_prompt_logits(&mut self, ctx: &LlamaContext, row: i32, len: usize) {
        self.whole_logits.clear();
        self.whole_logits.extend_from_slice(ctx.get_logits_ith(row));
        self.whole = Some(len);
    }

    /// The prompt this slot holds whole, all of its cells cached and its last logits kept.
    pub(super) fn whole_prompt(&self) -> Option<&[LlamaToken]> {
        self.cached.get(..self.whole?)
    }

    /// Whether `prompt` is the prompt this slot holds whole.
    pub(super) fn holds_whole(&self, prompt: &[LlamaToken]) -> bool {
        self.whole_prompt() == Some(prompt)
    }

    /// Takes out the prompt this slot holds whole, if any; its logits stay for
    /// [`Slot::hold_whole_again`].
    pub(super) fn take_whole(&mut self) -> Option<Vec<LlamaToken>> {
        let prompt = self.whole_prompt().map(<[LlamaToken]>::to_vec);
        self.whole = None;
        prompt
    }

    /// Holds the prompt of `len` tokens whole again (the slot's cache begins with it again) after
    /// [`Slot::take_whole`], where the logits at batch index `row` (`None`: none were computed) are
    /// the kept ones bit for bit; other logits replace them, with a warning.
    pub(super) fn hold_whole_again(&mut self, ctx: &LlamaContext, row: Option<i32>, len: usize) {
        if let Some(row) = row {
            let logits = ctx.get_logits_ith(row);
            if !logits.iter().zip(&self.whole_logits).all(|(a, b)| a.to_bits() == b.to_bits()) {
                let seq = self.seq;
                tracing::warn!(seq, "a prompt evaluated again gave other logits; they replace the kept ones");
                self.keep_prompt_logits(ctx, row, len);
            }
        }
        self.whole = Some(len);
    }

    /// Takes `job` (already counted as running): reuses the cached prefix, drops the rest of the cache, builds the sampler.
    pub(super) fn start(&mut self, ctx: &mut LlamaContext, mut job: Job, model: &ModelView) {
        let prompt = &job.tokens;
        // The same prompt again: every cell is the one a cold run computes (a prompt's rows are
        // the same in any chunks, and its last rows are always its final chunk's), so its kept
        // logits are the cold run's too.
        let whole = model.reuse && self.holds_whole(prompt) && model.window_keeps(ctx, self, prompt.len());
        let mut reuse = if whole { prompt.len() } else { self.reusable_prefix(prompt, model.chunks) };
        if reuse < self.cached.len() && ctx.kv_cache_seq_rm(self.seq, Some(reuse as u32), None).is_err() {
            reuse = 0;
        }
        if reuse > 0 && !model.window_keeps(ctx, self, reuse) {
            reuse = 0;
        }
        if reuse == 0 {
            let _ = ctx.kv_cache_seq_rm(self.seq, None, None);
            self.window_floor = 0;
        }
        self.cached.truncate(reuse);
        let first = whole && reuse == prompt.len();
        self.whole = None;
        // What other prompts may take from it: as after evaluating the prompt (worker).
        self.reusable = if first { model.chunks.reusable_after(reuse) } else { reuse };
        let mut sampler = Sampler::new(&job.config);
        if job.config.ignore_eos {
            sampler.ban(&model.end_tokens);
        }
        prompt.iter().for_each(|t| sampler.accept(t.0));
        let matcher = StopMatcher::new(job.config.stop_strings.clone());
        let active = Active {
            sampler,
            grammar: job.grammar.take(),
            prompt_done: reuse,
            cached_prompt: reuse,
            last_progress: 0.0,
            next: None,
            piece: Vec::new(),
            decoder: Utf8Decoder::default(),
            matcher,
            content: String::new(),
            predicted: 0,
            unsent_tokens: 0,
            unsent_logprobs: Vec::new(),
            logprobs: Vec::new(),
            first_token_at: None,
            drafts: Drafts::new(&mut job),
            job,
        };
        let alive = active.job.events.send(Event::PromptProgress(0.0)).is_ok();
        self.active = Some(active);
        if !alive {
            self.release();
            return;
        }
        if first {
            let Some(a) = self.active.as_mut() else { return };
            a.last_progress = 1.0;
            if a.job.events.send(Event::PromptProgress(1.0)).is_err() {
                self.release();
                return;
            }
            let logits = std::mem::take(&mut self.whole_logits);
            self.sample_from(&logits, model);
            self.whole_logits = logits;
            self.whole = Some(reuse);
        }
    }

    /// Ends the prediction: flushes held text and sends the result.
    pub(super) fn finish(&mut self, reason: StopReason, info: &ModelInfo) {
        self.finish_with(reason, None, info);
    }

    pub(super) fn finish_with(&mut self, reason: StopReason, stop_string: Option<String>, info: &ModelInfo) {
        let Some(mut a) = self.end() else { return };
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
            num_gpu_layers: Some(f64::from(self.shared.gpu_layers)),
            time_to_first_token_sec: a.first_token_at.map(|t| t.duration_since(a.job.submitted).as_secs_f64()),
            prompt_tokens_count: Some(prompt_tokens),
            predicted_tokens_count: Some(predicted),
            total_tokens_count: Some(prompt_tokens + predicted),
            cached_prompt_tokens_count: Some(a.cached_prompt as u64),
            reasoning_tokens_count: None,
            stop_string,
            drafts: a.drafts.map(|d| DraftStats {
                ignored_draft_tokens_count: d.stats.total_draft_tokens_count
                    - d.stats.accepted_draft_tokens_count
                    - d.stats.rejected_draft_tokens_count,
                ..d.stats
            }),
        };
        // Tokens whose text a stop string swallowed were predicted all the same.
        let mut logprobs = a.logprobs;
        logprobs.append(&mut a.unsent_logprobs);
        let result = PredictionResult {
            content: a.content,
            reasoning_content: String::new(),
            model_info: info.clone(),
            stats,
            logprobs,
            tool_calls: Vec::new(),
        };
        let _ = a.job.events.send(Event::Done(Box::new(Ok(result))));
    }

    pub(super) fn fail(&mut self, error: Error) {
        if let Some(a) = self.end() {
            let _ = a.job.events.send(Event::Done(Box::new(Err(error))));
        }
    }

    /// Frees the slot without a result: its consumer is gone.
    pub(super) fn release(&mut self) {
        self.end();
    }
}

impl Active {
    /// Sends text as a fragment; returns false when the consumer is gone.
    pub(super) fn send_text(&mut self, text: String) -> bool {
        if text.is_empty() {
            return true;
        }
        self.content.push_str(&text);
        let logprobs = std::mem::take(&mut self.unsent_logprobs);
        self.logprobs.extend(logprobs.iter().cloned());
        let tokens_count = std::mem::take(&mut self.unsent_tokens);
        let fragment = Fragment { content: text, tokens_count, logprobs, reasoning: Default::default() };
        self.job.events.send(Event::Fragment(fragment)).is_ok()
    }
}

impl Slot {
    /// After this slot's cache was replaced by another's prefix: continues the prompt after
    /// `tokens` (whose window cells are real from `window_floor`), or, when the replacement failed
    /// (`None`), starts the prompt over.
    pub(super) fn took_prefix(&mut self, ctx: &mut LlamaContext, tokens: Option<(Vec<LlamaToken>, i32)>) {
        let Some(a) = self.active.as_mut() else { return };
        match tokens {
            Some((tokens, window_floor)) => {
                a.cached_prompt += tokens.len() - a.prompt_done;
                a.prompt_done = tokens.len();
                self.reusable = tokens.len();
                self.cached = tokens;
                self.window_floor = window_floor;
            }
            None => {
                let _ = ctx.kv_cache_seq_rm(self.seq, None, None);
                a.cached_prompt = 0;
                a.prompt_done = 0;
                self.forget();
            }
        }
    }
}

impl Slot {
    /// Samples from the logits at batch index `at`, delivers the token's text, and decides whether
    /// the prediction goes on.
    pub(super) fn sample(&mut self, ctx: &LlamaContext, at: i32, model: &ModelView) {
        self.sample_from(ctx.get_logits_ith(at), model);
    }

    /// [`Slot::sample`] from `logits`.
    fn sample_from(&mut self, logits: &[f32], model: &ModelView) {
        let info = model.info;
        let vocab = &model.vocab;
        let Some(a) = self.active.as_mut() else { return };
        let token = match a.grammar.as_mut() {
            None => Some(a.sampler.sample(logits)),
            // A lazy grammar still waiting for its trigger checks nothing: the text is free.
            Some(grammar) if grammar.waiting() => {
                let t = a.sampler.sample(logits);
                a.piece.clear();
                vocab.token_to_piece_into(LlamaToken(t), &mut a.piece, true, None);
                grammar.accept_waiting(t, &a.piece);
                Some(t)
            }
            Some(grammar) => {
                let token = a.sampler.sample_allowed(logits, grammar);
                token.inspect(|&t| grammar.accept(t))
            }
        };
        // The grammar allows nothing more: its sentence is whole (and `ignore_eos` bans the end).
        let Some(token) = token.map(LlamaToken) else {
            self.finish(StopReason::EosFound, info);
            return;
        };
        tracing::trace!(seq = self.seq, token = token.0, "sampled");
        if a.first_token_at.is_none() {
            a.first_token_at = Some(Instant::now());
            if a.job.events.send(Event::FirstToken).is_err() {
                self.release();
                return;
            }
        }
        if vocab.is_eog(token) {
            self.finish(StopReason::EosFound, info);
            return;
        }
        a.predicted += 1;
        #[cfg(feature = "fault-injection")]
        assert!(!(a.job.fault && a.predicted > 2), "fault injected after two tokens");
        a.unsent_tokens += 1;
        a.piece.clear();
        let marker = model.marker_tokens.contains(&token.0);
        vocab.token_to_piece_into(token, &mut a.piece, marker, None);
        if let Some(n) = a.job.config.logprobs {
            let (logprob, top) = a.sampler.logprobs(logits, token.0, n as usize);
            let piece = |t: i32| {
                let mut bytes = Vec::new();
                vocab.token_to_piece_into(LlamaToken(t), &mut bytes, false, None);
                (String::from_utf8_lossy(&bytes).into_owned(), bytes)
            };
            let top = top
                .into_iter()
                .map(|(t, logprob)| {
                    let (token, bytes) = piece(t);
                    TopLogprob { token, logprob, bytes }
                })
                .collect();
            let token = String::from_utf8_lossy(&a.piece).into_owned();
            a.unsent_logprobs.push(TokenLogprob { token, logprob, bytes: a.piece.clone(), top });
        }
        let text = a.decoder.push(&a.piece);
        match a.matcher.push(&text) {
            Matched::Emit(text) => {
                if !a.send_text(text) {
                    self.release();
                    return;
                }
            }
            Matched::Stop { text, index } => {
                let stop = a.job.config.stop_strings[index].clone();
                a.send_text(text);
                self.finish_with(StopReason::StopStringFound, Some(stop), info);
                return;
            }
        }
        if a.job.config.max_tokens.is_some_and(|m| a.predicted >= m) {
            self.finish(StopReason::MaxPredictedTokensReached, info);
        } else if self.cached.len() + 1 >= model.ctx_len {
            self.finish(StopReason::ContextLengthReached, info);
        } else {
            a.next = Some(token);
        }
    }
}

/// Ends a prediction that never took a slot (cancelled while queued, or unloaded) with the same
/// shape of result as one that ran: a stop reason, and nothing predicted.
pub(super) fn end_unstarted(job: Job, reason: StopReason, info: &ModelInfo, shared: &Shared) {
    let prompt_tokens = job.tokens.len() as u64;
    let stats = Stats {
        stop_reason: reason,
        tokens_per_second: None,
        num_gpu_layers: Some(f64::from(shared.gpu_layers)),
        time_to_first_token_sec: None,
        prompt_tokens_count: Some(prompt_tokens),
        predicted_tokens_count: Some(0),
        total_tokens_count: Some(prompt_tokens),
        cached_prompt_tokens_count: Some(0),
        reasoning_tokens_count: None,
        stop_string: None,
        drafts: None,
    };
    let result = PredictionResult {
        content: String::new(),
        reasoning_content: String::new(),
        model_info: info.clone(),
        stats,
        logprobs: Vec::new(),
        tool_calls: Vec::new(),
    };
    let _ = job.events.send(Event::Done(Box::new(Ok(result))));
}
