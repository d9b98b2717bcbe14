//! Prompts that no slot holds any more, kept in host memory and restored into any slot.
//!
//! When a slot is about to be overwritten, the prefix it could have served (its reusable prompt
//! rows) is saved as llama.cpp's per-sequence state; a later prompt that shares more of it than any
//! slot does restores it instead of evaluating it. Least recently used entries leave first once the
//! cache is over its size. A terminal or chat that resends its history after other conversations
//! took every slot then still starts from its cached prefix.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{LlamaStateSeqFlags, SeqState};

use super::rules::common_prefix;

/// Shorter prefixes are not worth saving: evaluating them costs about as much as a restore.
pub(super) const MIN_SAVED: usize = 64;

/// One saved prefix.
struct Saved {
    tokens: Vec<LlamaToken>,
    state: SeqState,
    /// The lowest position the state holds (with a sliding window, older ones may be gone).
    pos_min: i32,
    /// When it was last saved or restored (a counter).
    used: u64,
}

/// Whether a saved `state_of` serves every prompt that a state of `tokens` would serve. A state of
/// a sliding-window model (`window` > 0) continues only from its end, so there only the same
/// tokens do.
fn covers(window: usize, state_of: &[LlamaToken], tokens: &[LlamaToken]) -> bool {
    match window {
        0 => state_of.starts_with(tokens),
        _ => state_of == tokens,
    }
}

/// The saved prefixes, at most `capacity` bytes of state.
pub(super) struct PromptCache {
    entries: Vec<Saved>,
    capacity: usize,
    /// The model's sliding window (0: none).
    window: usize,
    clock: u64,
}

impl PromptCache {
    pub(super) fn new(capacity: usize, window: usize) -> Self {
        Self { entries: Vec::new(), capacity, window, clock: 0 }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each saved prefix and its state, least recently used first.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&[LlamaToken], &SeqState)> {
        let mut entries: Vec<&Saved> = self.entries.iter().collect();
        entries.sort_by_key(|e| e.used);
        entries.into_iter().map(|e| (e.tokens.as_slice(), &e.state))
    }

    /// Changes whenever an entry is saved or used.
    pub(super) fn version(&self) -> u64 {
        self.clock
    }

    pub(super) fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.state.byte_len()).sum()
    }

    /// Saves the first `tokens.len()` tokens of sequence `seq`, which holds them at positions
    /// `0..tokens.len()`; drops the sequence's later tokens first. Nothing happens when the prefix
    /// is short, already saved within a longer one, or larger than the whole cache. (With a sliding
    /// window, see `rules::Chunks::save_point` for where a prompt is worth saving.)
    pub(super) fn save(&mut self, ctx: &mut LlamaContext, seq: i32, tokens: &[LlamaToken]) {
        if tokens.len() < MIN_SAVED || self.entries.iter().any(|e| covers(self.window, &e.tokens, tokens)) {
            return;
        }
        if ctx.kv_cache_seq_rm(seq, Some(tokens.len() as u32), None).is_err() {
            return;
        }
        let started = std::time::Instant::now();
        // Measured before it is copied out: a long context of a large model can be gigabytes.
        if ctx.state_seq_get_size_ext(seq, LlamaStateSeqFlags::empty()) > self.capacity {
            return;
        }
        // Past a window, its restore lays the window cells out for every position (`restore`):
        // not saved where that would not fit the cache either.
        if self.window > 0 && tokens.len() > self.window {
            let window_bytes = ctx.state_seq_get_size_ext(seq, LlamaStateSeqFlags::PARTIAL_ONLY);
            let padded = super::seq_state::padded_len(window_bytes, self.window, tokens.len());
            if padded.is_none_or(|bytes| bytes > self.capacity) {
                return;
            }
        }
        let Ok(state) = ctx.state_seq_get(seq, LlamaStateSeqFlags::empty()) else { return };
        // A saved prefix of this one is covered by it.
        let window = self.window;
        self.entries.retain(|e| !covers(window, tokens, &e.tokens));
        while self.bytes() + state.byte_len() > self.capacity {
            let oldest = self.entries.iter().enumerate().min_by_key(|(_, e)| e.used).map(|(i, _)| i);
            match oldest {
                Some(i) => drop(self.entries.swap_remove(i)),
                None => break,
            }
        }
        self.clock += 1;
        // The state holds only the window's last cells of the window layers (llama.cpp leaves
        // out the cells the window masks); the live sequence may still hold older ones.
        let kept = tokens.len().saturating_sub(self.window) as i32;
        let pos_min = ctx.kv_cache_seq_pos_min(seq).max(if self.window == 0 { 0 } else { kept });
        let ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(tokens = tokens.len(), bytes = state.byte_len(), ms, "saved a prompt to host memory");
        self.entries.push(Saved { tokens: tokens.to_vec(), state, pos_min, used: self.clock });
    }

    /// The entry whose tokens share the longest prefix with `prompt`, with that length after
    /// `usable` (which turns a common prefix into a reusable one; `None`: not usable).
    pub(super) fn best(
        &self,
        prompt: &[LlamaToken],
        usable: impl Fn(usize, i32) -> Option<usize>,
    ) -> Option<(usize, usize)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| usable(common_prefix(&e.tokens, prompt), e.pos_min).map(|upto| (i, upto)))
            .max_by_key(|&(_, upto)| upto)
    }

    /// Restores entry `i` into sequence `seq` (which must be empty) and returns its tokens and the
    /// lowest position whose window-layer cells are keys and values (before it, a sliding-window
    /// model's restore puts zero cells: `seq_state`). `None` where llama.cpp refuses the state, or
    /// where a sliding-window model's cells cannot be laid out as a cold run's (the entry is
    /// dropped then; the caller clears the sequence).
    pub(super) fn restore(&mut self, ctx: &mut LlamaContext, i: usize, seq: i32) -> Option<(&[LlamaToken], i32)> {
        self.clock += 1;
        let entry = &mut self.entries[i];
        entry.used = self.clock;
        if ctx.state_seq_set(&entry.state, seq).is_err() {
            tracing::warn!(tokens = entry.tokens.len(), "llama.cpp refused a saved prompt's state; dropped");
            self.entries.swap_remove(i);
            return None;
        }
        // Past the window, the window layers' cells go where a cold run keeps them, or the
        // tokens decoded after them would get other bits.
        let past = self.window > 0 && entry.tokens.len() > self.window;
        if past && !super::ffi::place_window_cells(ctx, seq, self.capacity) {
            tracing::warn!(tokens = entry.tokens.len(), "a saved prompt's window cells could not be placed; dropped");
            let _ = ctx.kv_cache_seq_rm(seq, None, None);
            self.entries.swap_remove(i);
            return None;
        }
        let entry = &self.entries[i];
        Some((&entry.tokens, entry.pos_min))
    }
}
