//! Draft models (LM Studio's `draftModel`): a second, smaller model that guesses the next tokens
//! greedily, for the main model to check in one batch as it checks n-gram drafts (`worker`).
//!
//! A draft model runs on a thread of its own, with a context of as many sequences as the main
//! model has slots (sequence `s` follows slot `s`). The engine thread asks it for a draft with the
//! slot's tokens and waits; the draft thread keeps what each sequence holds, so a step evaluates
//! only the tokens that are new since the last draft (what was accepted, and the slot's latest
//! token), drops rejected draft tokens, and drafts from there. The thread's own model and context
//! never borrow from the engine thread's, and it stops when the last prediction using it is gone.

use std::path::PathBuf;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::backend::{context_params, Attention};
use super::rules::{common_prefix, BATCH};
use crate::store::StoredModel;
use crate::types::config::DraftSettings;
use crate::types::error::{Error, Result};

/// How one prediction drafts with a draft model (`ValidConfig::draft`, after the key is resolved).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DraftRule {
    /// Draft exactly this many tokens each step (room allowing), whatever the draft model's
    /// confidence (LM Studio's `numDraftTokensExact`).
    pub exact: Option<usize>,
    /// Drafts shorter than this are not checked (`minDraftLengthToConsider`).
    pub min_len: usize,
    /// Stop drafting when the draft model's most likely token is less likely than this
    /// (`minContinueDraftingProbability`).
    pub min_probability: f32,
}

impl DraftRule {
    pub(super) fn of(d: &DraftSettings) -> Self {
        Self {
            exact: d.num_draft_tokens_exact.map(|n| n as usize),
            min_len: d.min_draft_length_to_consider as usize,
            min_probability: d.min_continue_drafting_probability,
        }
    }
}

/// The most tokens one draft of a draft model holds when `exact` is not set (LM Studio's
/// `maxTokensToDraft` default).
const MODEL_DRAFT_MAX: usize = 16;

/// A draft model loaded for a main model: its key (for the stats) and the thread that runs it.
pub(crate) struct DraftModel {
    pub key: String,
    pub path: PathBuf,
    requests: Option<flume::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Request {
    seq: i32,
    history: Vec<LlamaToken>,
    max: usize,
    rule: DraftRule,
    reply: flume::Sender<Vec<LlamaToken>>,
}

/// The main model's side of a draft: what must match, and the context's shape.
pub(super) struct DraftTarget<'a> {
    pub model: &'a LlamaModel,
    pub context_length: u32,
    pub parallel: u32,
    pub threads: u32,
    /// The main model's attention settings (flash attention, the KV cache's place): the draft's.
    pub attention: Attention,
    /// Whether the main model runs on the GPU (then the draft model does too).
    pub gpu: bool,
}

impl DraftModel {
    /// Loads the draft model in `file` (header already checked), checks that its vocabulary is
    /// the main model's, and starts its thread.
    pub(super) fn load(backend: &'static LlamaBackend, file: &StoredModel, target: DraftTarget) -> Result<Self> {
        let (key, path) = (file.key.as_str(), file.path.as_path());
        let load_err = |reason: String| Error::Load { path: path.to_owned(), reason };
        // Read, not mapped (a mapped file cut on disk kills the process, see `LoadConfig::try_mmap`),
        // and on the GPU when the main model is (this machine's: never on RPC workers).
        let mut params =
            LlamaModelParams::default().with_use_mmap(false).with_n_gpu_layers(if target.gpu { u32::MAX } else { 0 });
        if let Some(devices) = super::rpc::local_devices() {
            params = params.with_devices(&devices).map_err(|e| load_err(e.to_string()))?;
        }
        let model = super::huge_pages::around(|| LlamaModel::load_from_file(backend, path, &params))
            .map_err(|e| load_err(e.to_string()))?;
        if let Some(reason) = vocabulary_difference(target.model, &model) {
            return Err(Error::IncompatibleDraftModel { draft: key.to_owned(), path: path.to_owned(), reason });
        }
        let window = file.sliding_window.unwrap_or(0) as usize;
        let ctx_params = context_params(target.context_length, target.parallel, target.threads, target.attention);
        let (requests, rx) = flume::unbounded::<Request>();
        let (ready_tx, ready_rx) = flume::bounded(1);
        let parallel = target.parallel as usize;
        let thread = std::thread::Builder::new().name(format!("lms-draft-{key}")).spawn(move || {
            let ctx = match super::huge_pages::around(|| model.new_context(backend, ctx_params)) {
                Ok(ctx) => ctx,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let batch = LlamaBatch::new(BATCH as usize, 1);
            let mut drafter = Drafter { ctx, batch, held: vec![Vec::new(); parallel], window };
            for r in rx.iter() {
                let draft = drafter.draft(r.seq, &r.history, r.max, r.rule);
                let _ = r.reply.send(draft);
            }
        })?;
        ready_rx.recv().map_err(|_| load_err("the draft thread stopped".into()))?.map_err(load_err)?;
        tracing::info!(key, path = %path.display(), "loaded a draft model");
        Ok(Self { key: key.to_owned(), path: path.to_owned(), requests: Some(requests), thread: Some(thread) })
    }

    /// Up to `max` tokens the draft model predicts after `history` on sequence `seq`, by `rule`;
    /// empty when it cannot (the prediction then goes on without a draft).
    pub(super) fn draft(&self, seq: i32, history: &[LlamaToken], max: usize, rule: DraftRule) -> Vec<LlamaToken> {
        let (reply, answer) = flume::bounded(1);
        let request = Request { seq, history: history.to_vec(), max, rule, reply };
        match &self.requests {
            Some(requests) if max > 0 && requests.send(request).is_ok() => answer.recv().unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

impl Drop for DraftModel {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why two models cannot draft for one another, if they cannot: a drafted token id must mean the
/// same text to both (the size of the vocabulary, its special tokens, and every token's text).
fn vocabulary_difference(main: &LlamaModel, draft: &LlamaModel) -> Option<String> {
    let (a, b) = (main.vocab(), draft.vocab());
    if main.n_vocab() != draft.n_vocab() {
        return Some(format!("its vocabulary has {} tokens, the model's {}", draft.n_vocab(), main.n_vocab()));
    }
    if a.vocab_type() != b.vocab_type() {
        return Some("its tokenizer is of another type".into());
    }
    if (a.bos(), a.eos()) != (b.bos(), b.eos()) {
        return Some("its beginning or end of text tokens differ".into());
    }
    (0..main.n_vocab()).map(LlamaToken).find(|&t| a.text(t) != b.text(t)).map(|t| {
        let text = |v: &llama_cpp_2::vocab::LlamaVocab| v.text(t).map(|s| s.to_string_lossy().into_owned());
        format!("token {} is {:?} in it and {:?} in the model", t.0, text(&b), text(&a))
    })
}

/// The draft thread's state: the context, its batch, and the tokens each sequence holds.
struct Drafter<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'m>,
    held: Vec<Vec<LlamaToken>>,
    window: usize,
}

impl Drafter<'_> {
    fn draft(&mut self, seq: i32, history: &[LlamaToken], max: usize, rule: DraftRule) -> Vec<LlamaToken> {
        let Some(held) = self.held.get_mut(seq as usize) else { return Vec::new() };
        if history.is_empty() {
            return Vec::new();
        }
        // Keep what still matches, but evaluate at least the last token (its logits are needed).
        let mut keep = common_prefix(held, history).min(history.len() - 1);
        let (ctx, batch) = (&mut self.ctx, &mut self.batch);
        if ctx.kv_cache_seq_rm(seq, Some(keep as u32), None).is_err() || !continues(ctx, seq, keep, self.window) {
            keep = 0;
        }
        if keep == 0 {
            let _ = ctx.kv_cache_seq_rm(seq, None, None);
        }
        held.truncate(keep);
        for chunk in history[keep..].chunks(BATCH as usize) {
            batch.clear();
            for &t in chunk {
                let last = held.len() + 1 == history.len();
                let _ = batch.add(t, held.len() as i32, &[seq], last);
                held.push(t);
            }
            if super::compute::decode(ctx, batch).is_err() {
                let _ = ctx.kv_cache_seq_rm(seq, None, None);
                held.clear();
                return Vec::new();
            }
        }
        let max = rule.exact.unwrap_or(MODEL_DRAFT_MAX).min(max);
        let mut draft = Vec::new();
        let mut at = batch.n_tokens() - 1;
        while draft.len() < max {
            let (token, p) = most_likely(ctx.get_logits_ith(at));
            if rule.exact.is_none() && p < rule.min_probability {
                break;
            }
            draft.push(LlamaToken(token));
            if draft.len() == max {
                break;
            }
            batch.clear();
            let _ = batch.add(LlamaToken(token), held.len() as i32, &[seq], true);
            if super::compute::decode(ctx, batch).is_err() {
                break;
            }
            held.push(LlamaToken(token));
            at = 0;
        }
        if draft.len() < rule.min_len {
            draft.clear();
        }
        draft
    }
}

/// Whether sequence `seq`, cut to its first `keep` tokens, can go on from there: its positions end
/// just before `keep`, and with a sliding window the window before `keep` is still cached.
fn continues(ctx: &LlamaContext, seq: i32, keep: usize, window: usize) -> bool {
    let (min, max) = (ctx.kv_cache_seq_pos_min(seq), ctx.kv_cache_seq_pos_max(seq));
    keep == 0 || (max + 1 == keep as i32 && (window == 0 || min <= keep.saturating_sub(window) as i32))
}

/// The most likely token of `logits` and its probability (softmax at temperature 1).
pub(super) fn most_likely(logits: &[f32]) -> (i32, f32) {
    let (best, max) = logits
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) });
    let sum: f32 = logits.iter().map(|&v| (v - max).exp()).sum();
    (best as i32, if sum > 0.0 { 1.0 / sum } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::most_likely;

    #[test]
    fn the_most_likely_token_and_its_probability() {
        let (t, p) = most_likely(&[0.0, 2.0_f32.ln(), 0.0]);
        assert_eq!(t, 1);
        assert!((p - 0.5).abs() < 1e-6, "{p}");
        let (t, p) = most_likely(&[5.0]);
        assert_eq!((t, p), (0, 1.0));
    }
}
