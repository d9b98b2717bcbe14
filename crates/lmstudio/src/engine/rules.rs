//! The pure rules of the engine thread: prompt chunk lengths and reuse points (the determinism
//! contract, see `worker`), and the pacer that sizes chunks next to running streams. No llama.cpp.

use std::time::Instant;

/// Tokens evaluated per step (llama.cpp's logical batch).
pub(super) const BATCH: u32 = 512;
/// Prompt chunks start at positions divisible by this (the row group of llama.cpp's repacked kernels).
pub(super) const ROW_GROUP: usize = 4;
/// While other predictions are generating, a new prompt is evaluated in chunks of at most this many
/// tokens per step, so running streams never stall for a whole long prompt.
pub(super) const PROMPT_CHUNK_WHILE_GENERATING: usize = 128;
/// How much longer than a plain generation step a step with a prompt chunk may take: running
/// streams then wait about twice their usual gap between two tokens, or one [`PROMPT_CHUNK_FLOOR`]
/// longer where that is more.
pub(super) const STALL_ALLOWANCE: f64 = 0.8;
/// While other predictions are generating, a step still evaluates at least this many prompt
/// tokens: a prompt this short (or the new part of a chat turn after a cached prefix) gets its
/// first token one step after it arrives, not after several small chunks.
pub(super) const PROMPT_CHUNK_FLOOR: usize = 64;

/// A copy of another slot's cache must save at least this many prompt tokens: llama.cpp copies the
/// whole sequence buffer, which costs about as much as evaluating a few tokens.
pub(super) const MIN_SHARED: usize = 32;

/// Predicted tokens after which a stream counts as under way, so that new prompts are paced.
pub(super) const UNDER_WAY: u32 = 8;

/// N-gram speculation: the longest and shortest tail matched against the context, and the most
/// tokens one draft holds.
pub(super) const NGRAM_MAX: usize = 4;
pub(super) const NGRAM_MIN: usize = 3;
pub(super) const DRAFT_MAX: usize = 64;
/// An n-gram draft's most tokens before generation steps were timed ([`StepCost`]).
pub(super) const DRAFT_START: usize = 8;

/// Prompt lookup: the tokens that followed the latest earlier occurrence of the last `n` tokens of
/// `history` (the longest `n` from [`NGRAM_MAX`] down to [`NGRAM_MIN`] that occurs), at most `max`,
/// and how many tokens before that tail also agree with those before the occurrence (at most
/// [`DRAFT_MAX`]): a long agreement means the text is being copied. Where what followed runs into
/// the tail itself, the text repeats with the distance between the two as its period, and the
/// draft goes on around it (a third copy of a paragraph continues past the second's end).
pub(super) fn ngram_draft<T: PartialEq + Copy>(history: &[T], max: usize) -> (Vec<T>, usize) {
    let len = history.len();
    for n in (NGRAM_MIN..=NGRAM_MAX).rev() {
        if len <= n || max == 0 {
            continue;
        }
        let tail = &history[len - n..];
        if let Some(start) = (0..len - n).rev().find(|&i| &history[i..i + n] == tail) {
            let depth = (1..=start.min(DRAFT_MAX)).take_while(|&k| history[start - k] == history[len - n - k]).count();
            let mut draft = history[start + n..(start + n + max).min(len)].to_vec();
            let period = len - n - start;
            while draft.len() < max {
                draft.push(draft[draft.len() - period]);
            }
            return (draft, depth);
        }
    }
    (Vec::new(), 0)
}

/// How a slot's n-gram drafts have fared: drafted tokens accepted and rejected, older drafts
/// counting less ([`Acceptance::DECAY`] per draft), so that the estimate follows the text.
#[derive(Default, Clone, Copy)]
pub(super) struct Acceptance {
    accepted: f64,
    rejected: f64,
}

impl Acceptance {
    /// The weight a draft's outcome keeps after each later draft.
    const DECAY: f64 = 0.9;
    /// What is believed before any draft, worth one token of evidence: four of five stand.
    const PRIOR_ACCEPTED: f64 = 0.8;
    const PRIOR_REJECTED: f64 = 0.2;

    /// The chance that a drafted token stands (given those before it did), for a draft whose
    /// match agrees with the context `depth` tokens further back: each counts as a token that stood.
    pub(super) fn rate(&self, depth: usize) -> f64 {
        let stood = self.accepted + Self::PRIOR_ACCEPTED + depth as f64;
        stood / (stood + self.rejected + Self::PRIOR_REJECTED)
    }

    /// Records a draft of `drafted` tokens of which the first `accepted` stood.
    pub(super) fn record(&mut self, drafted: usize, accepted: usize) {
        self.accepted = self.accepted * Self::DECAY + accepted as f64;
        self.rejected = self.rejected * Self::DECAY + f64::from(u8::from(accepted < drafted));
    }

    /// A chance to draft that was passed up: the evidence fades toward the prior, so that drafts
    /// are tried again once in a while.
    pub(super) fn skipped(&mut self) {
        self.accepted *= Self::DECAY;
        self.rejected *= Self::DECAY;
    }
}

/// What a generation step costs: `fixed + per_row * rows` seconds, fitted to this machine's own
/// steps (a least-squares line through their rows and seconds, older steps counting less by
/// [`StepCost::DECAY`] each). `per_row` is what a row with logits adds (the output layer, on a
/// large vocabulary most of a drafted row's cost) and `fixed` what every step pays (reading the
/// weights). A slope needs steps of different sizes (a draft beside plain steps) and stands only
/// where the steps tell it from their noise (at least twice its standard error) and leaves a fixed
/// part above zero (every step reads the weights: a line through the origin or below it comes from
/// steps that ran under load, or from noise); until one was fitted there is no model, and the one
/// fitted last stands while steps do not tell a new one. The intercept follows every step, so a
/// machine under load slows both, and there is no model while it is not above zero either. A step
/// with more rows than any before is left out: llama.cpp grows its logits buffer for it (fresh
/// pages: on a virtual machine about 0.1 s for 50 rows of a 262k vocabulary), which later steps do
/// not pay.
#[derive(Default)]
pub(super) struct StepCost {
    /// The most rows a step has had.
    most_rows: usize,
    /// Decayed sums over timed steps: weight, rows, seconds, and the products of pairs of them.
    weight: f64,
    rows: f64,
    secs: f64,
    rows_sq: f64,
    rows_secs: f64,
    secs_sq: f64,
    /// Seconds per row: the slope of the last fit, 0 before one.
    per_row: f64,
}

impl StepCost {
    /// The weight a step keeps after each later step (about the last twenty count).
    const DECAY: f64 = 0.95;

    pub(super) fn record(&mut self, rows: usize, secs: f64) {
        if rows > self.most_rows {
            self.most_rows = rows;
            return;
        }
        let x = rows as f64;
        let decayed = |sum: f64, add: f64| sum * Self::DECAY + add;
        self.weight = decayed(self.weight, 1.0);
        self.rows = decayed(self.rows, x);
        self.secs = decayed(self.secs, secs);
        self.rows_sq = decayed(self.rows_sq, x * x);
        self.rows_secs = decayed(self.rows_secs, x * secs);
        self.secs_sq = decayed(self.secs_sq, secs * secs);
        let (mean_rows, mean_secs) = (self.rows / self.weight, self.secs / self.weight);
        let spread = self.rows_sq / self.weight - mean_rows * mean_rows;
        // Two steps always lie on a line: a slope needs a third.
        if spread <= 0.0 || self.weight <= 2.0 {
            return;
        }
        let slope = (self.rows_secs / self.weight - mean_rows * mean_secs) / spread;
        // What the line leaves unexplained, and the slope's squared standard error from it (with
        // the two degrees of freedom the line took).
        let residual = self.secs_sq / self.weight - mean_secs * mean_secs - slope * slope * spread;
        let error_sq = residual.max(0.0) / ((self.weight - 2.0) * spread);
        if slope > 0.0 && slope * slope > 4.0 * error_sq && mean_secs > slope * mean_rows {
            self.per_row = slope;
        }
    }

    /// `(fixed, per_row)` seconds; `None` until steps of different sizes were timed, and while the
    /// fitted slope leaves the steps no fixed part.
    pub(super) fn model(&self) -> Option<(f64, f64)> {
        let fixed = (self.secs - self.per_row * self.rows) / self.weight;
        (self.per_row > 0.0 && fixed > 0.0).then_some((fixed, self.per_row))
    }
}

/// The draft length, at most `max`, that makes the most tokens per second of the step: a step of
/// `rows` rows (this slot's token and the other predictions' among them, each a token) costs
/// `fixed + per_row * rows` seconds, and each drafted token adds a row and stands with chance
/// `p(k)` if the `k` drafted before it stood. So drafts are long on text being copied, short or
/// none on text that is not, and shorter when many predictions share the step (a row then buys
/// less). Only lengths that keep whole row groups ([`whole_row_groups`]) are taken.
///
/// Where a draft of `max` tokens `finishes` the prediction (its last tokens), a shorter one leaves
/// the rest to a step of its own: the whole draft, if all of it stands, saves that step's fixed
/// part, and may end in a part group, which costs less than the step it saves.
pub(super) fn draft_len(
    p: impl Fn(usize) -> f64,
    fixed: f64,
    per_row: f64,
    rows: usize,
    max: usize,
    finishes: bool,
) -> usize {
    // Tokens per second of a step with a draft of `d`, the last of which stands with chance `stood`.
    let worth = |tokens: f64, stood: f64, d: usize| {
        let saved = if finishes && d == max { stood * fixed } else { 0.0 };
        tokens / (fixed + per_row * (rows + d) as f64 - saved)
    };
    let (mut best, mut best_worth) = (0, worth(rows as f64, 1.0, 0));
    let (mut tokens, mut stands) = (rows as f64, 1.0);
    for d in 1..=max {
        stands *= p(d - 1);
        tokens += stands;
        let w = worth(tokens, stands, d);
        if w > best_worth && (whole_row_groups(rows, d) || (finishes && d == max)) {
            (best, best_worth) = (d, w);
        }
    }
    best
}

/// The longest draft of at most `max` tokens that keeps whole row groups.
pub(super) fn whole_row_groups_within(rows: usize, max: usize) -> usize {
    (0..=max).rev().find(|&d| whole_row_groups(rows, d)).unwrap_or(0)
}

/// Whether a draft of `d` tokens, in a step of `rows` rows before it, gives llama.cpp's matrix
/// kernels whole [`ROW_GROUP`]s: from one row group on, rows past the last whole group take the
/// one-row kernels, which cost about another pass over the weights (the default model on 2 cores:
/// 4 rows decode in 38 ms, 5 in 58 ms, 8 in 56 ms). A step of one prediction is one micro-batch
/// of `1 + d` rows; with several, llama.cpp splits a batch over a non-unified cache into
/// micro-batches of as many rows of each sequence, so a draft's tokens go into one of their own.
pub(super) fn whole_row_groups(rows: usize, d: usize) -> bool {
    let micro_batch = if rows == 1 { 1 + d } else { d };
    micro_batch < ROW_GROUP || micro_batch % ROW_GROUP == 0
}

/// Sizes prompt chunks from measured speed so that running streams keep flowing.
#[derive(Default)]
pub(super) struct Pacer {
    /// Moving averages, 0 until measured: seconds per generation step and per prompt token.
    pub(super) step_secs: f64,
    pub(super) prompt_token_secs: f64,
    /// Generation steps' cost by their rows, for sizing drafts.
    pub(super) steps: StepCost,
}

impl Pacer {
    /// A generation step of `rows` rows, decoded and sampled since `started`.
    pub(super) fn record_step(&mut self, rows: usize, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        self.step_secs = moving_average(self.step_secs, secs);
        self.steps.record(rows, secs);
    }

    pub(super) fn record_prompt(&mut self, tokens: usize, started: Instant) {
        let per_token = started.elapsed().as_secs_f64() / tokens as f64;
        self.prompt_token_secs = moving_average(self.prompt_token_secs, per_token);
    }

    /// Prompt tokens to evaluate in a step in which other predictions generate, chunks holding at
    /// least `min_chunk`.
    pub(super) fn budget(&self, min_chunk: usize) -> usize {
        if self.step_secs == 0.0 || self.prompt_token_secs == 0.0 {
            return PROMPT_CHUNK_WHILE_GENERATING;
        }
        // A minimum chunk at least, so that `Chunks::next` always makes progress.
        let fits = (self.step_secs * STALL_ALLOWANCE / self.prompt_token_secs) as usize;
        fits.clamp(PROMPT_CHUNK_FLOOR.max(min_chunk), PROMPT_CHUNK_WHILE_GENERATING)
    }
}

fn moving_average(old: f64, new: f64) -> f64 {
    if old == 0.0 {
        new
    } else {
        0.8 * old + 0.2 * new
    }
}

/// How prompts are cut into chunks and reused for the model's attention path: the determinism
/// contract's numbers (see `worker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Chunks {
    /// Prompt chunks hold at least this many tokens, the fewest from which a row's bits do not
    /// depend on its chunk: below 8 rows llama.cpp picks other matrix kernels, and with flash
    /// attention below 64 query rows of a sequence its CPU kernel takes a one-row path (Q rounded
    /// to F16) instead of its 64-row tiles.
    pub(super) min: usize,
}

impl Chunks {
    /// The rules for flash attention on or off.
    pub(super) fn for_attention(flash_attention: bool) -> Self {
        Self { min: if flash_attention { 64 } else { 8 } }
    }

    /// Where evaluation of a prompt of `len` tokens starts when its first `common` tokens are
    /// cached: a multiple of [`ROW_GROUP`] that leaves at least `min` tokens (the last one's logits
    /// are always computed again). Short prompts are always evaluated whole.
    pub(super) fn reuse_point(self, common: usize, len: usize) -> usize {
        if len < self.min {
            return 0;
        }
        common.min(len - self.min) / ROW_GROUP * ROW_GROUP
    }

    /// How many rows of a completed prompt of `len` tokens other prompts may reuse: its whole row
    /// groups, from a minimum chunk on (a shorter prompt took other kernels: [`Chunks::min`]). The
    /// rows past the last group took the one-row kernels, so a longer prompt computes them otherwise.
    pub(super) fn reusable_after(self, len: usize) -> usize {
        if len < self.min {
            return 0;
        }
        len / ROW_GROUP * ROW_GROUP
    }

    /// How many of a slot's `reusable` prompt rows to save to host memory, for a model with a
    /// sliding window of `window` tokens (0: none). Without a window: all of them (a restored
    /// prefix can be cut anywhere). With one, llama.cpp's sequence state keeps only the window's
    /// last cells of the window layers, so the saved prompt can be continued from its end only: it
    /// ends where the same prompt sent again reuses up to ([`Chunks::reuse_point`]). (A restore
    /// puts those cells where a cold run keeps them: `seq_state`.)
    pub(super) fn save_point(self, reusable: usize, window: usize) -> usize {
        if window == 0 || reusable <= window {
            return reusable;
        }
        self.reuse_point(reusable, reusable)
    }

    /// How many of `remaining` prompt tokens to evaluate now with `budget` tokens to spend: all of
    /// them if they fit, else a multiple of [`ROW_GROUP`] of at least `min` that leaves at least
    /// `min`; where no such split is left (under two minimum chunks), all of them even past the
    /// budget; 0 (wait) when the budget holds no minimum chunk.
    pub(super) fn next(self, remaining: usize, budget: usize) -> usize {
        if remaining <= budget {
            return remaining;
        }
        if budget < self.min {
            return 0;
        }
        let take = budget.min(remaining - self.min) / ROW_GROUP * ROW_GROUP;
        if take < self.min {
            remaining
        } else {
            take
        }
    }
}

/// How many leading tokens `a` and `b` have in common.
pub(crate) fn common_prefix<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [Chunks; 2] = [Chunks { min: 8 }, Chunks { min: 64 }];

    #[test]
    fn flash_attention_takes_64_row_chunks() {
        assert_eq!(BOTH, [false, true].map(Chunks::for_attention));
    }

    /// Every chunk plan that `Chunks::next` makes keeps the invariance rules: non-final chunks are
    /// whole row groups, every chunk of a prompt of at least `min` tokens holds at least `min`, and
    /// any budget the pacer gives makes progress, past it only by less than a minimum chunk.
    #[test]
    fn chunk_plans_keep_the_rules() {
        for c in BOTH {
            let min = c.min;
            for start in (0..40).step_by(ROW_GROUP) {
                for len in start + min..start + 600 {
                    for budget in [min, min + 17, 101, PROMPT_CHUNK_WHILE_GENERATING, BATCH as usize] {
                        let mut done = start;
                        while done < len {
                            let take = c.next(len - done, budget);
                            assert!(take > 0 && take < budget + min, "stuck at {done} of {len} with {budget}");
                            assert!(take <= budget || done + take == len, "{take} at {done} of {len} with {budget}");
                            assert!(take >= min, "{take} at {done} of {len}");
                            if done + take < len {
                                assert_eq!(take % ROW_GROUP, 0, "{take} at {done} of {len}");
                            }
                            done += take;
                        }
                    }
                }
            }
            for (common, len) in [(0, 5), (100, 5), (100, 100), (99, 200), (3, 200), (7, 9)] {
                let from = c.reuse_point(common, len);
                assert!(from % ROW_GROUP == 0 && from <= common, "{common} {len}");
                assert!(len < min && from == 0 || len - from >= min, "{common} {len}");
            }
        }
    }

    /// A sliding-window model's saved prompt is one the same prompt sent again reuses whole,
    /// leaving little to evaluate; without a window everything reusable is saved.
    #[test]
    fn save_points_serve_the_same_prompt_again() {
        for c in BOTH {
            for len in 8..3000 {
                let reusable = len / ROW_GROUP * ROW_GROUP;
                assert_eq!(c.save_point(reusable, 0), reusable);
                let at = c.save_point(reusable, 512);
                assert!(at <= reusable, "{len}");
                if reusable > 512 {
                    assert_eq!(c.reuse_point(at, len), at, "the same prompt reuses it whole: {len}");
                    assert!(len - at < c.min + 2 * ROW_GROUP, "little is left to evaluate: {len}");
                } else {
                    assert_eq!(at, reusable, "{len}");
                }
            }
        }
    }

    #[test]
    fn pacer_keeps_chunks_within_bounds() {
        for c in BOTH {
            let mut pacer = Pacer::default();
            assert_eq!(pacer.budget(c.min), PROMPT_CHUNK_WHILE_GENERATING, "unmeasured");
            pacer.step_secs = 0.125;
            pacer.prompt_token_secs = 0.001;
            assert_eq!(pacer.budget(c.min), 100, "0.8 of a step's time");
            pacer.prompt_token_secs = 0.1;
            assert_eq!(pacer.budget(c.min), PROMPT_CHUNK_FLOOR, "never below the floor");
            assert!(c.min <= PROMPT_CHUNK_FLOOR, "the floor holds a minimum chunk");
            assert_eq!(c.next(1000, c.min - 1), 0, "a budget below a minimum chunk waits");
            pacer.prompt_token_secs = 0.000_001;
            assert_eq!(pacer.budget(c.min), PROMPT_CHUNK_WHILE_GENERATING);
        }
    }

    #[test]
    fn ngram_drafts_continue_the_latest_earlier_match() {
        // The tail "1 2 3" occurred at 0, followed by "4 5 1 2 3" and, the period being 5, on.
        let h = [1, 2, 3, 4, 5, 1, 2, 3];
        assert_eq!(ngram_draft(&h, 8), (vec![4, 5, 1, 2, 3, 4, 5, 1], 0));
        assert_eq!(ngram_draft(&h, 2).0, &[4, 5]);
        // The longest tail wins: "9 1 2 3" matches at 0, before the later "1 2 3" at 6 would.
        let h = [9, 1, 2, 3, 7, 8, 1, 2, 3, 5, 9, 1, 2, 3];
        assert_eq!(ngram_draft(&h, 3).0, &[7, 8, 1]);
        // Nothing repeats, or too little (two tokens): no draft.
        assert!(ngram_draft(&[1, 2, 3, 4, 5], 8).0.is_empty());
        assert!(ngram_draft(&[1, 2, 7, 1, 2], 8).0.is_empty());
        assert!(ngram_draft(&[1, 1, 1], 8).0.is_empty(), "a tail needs an earlier occurrence");
        assert!(ngram_draft(&[1, 2, 3, 1, 2, 3], 0).0.is_empty());
    }

    #[test]
    fn a_match_that_agrees_further_back_is_deeper() {
        // "5 6 7 8 | 1 2 3 4" ... "0 6 7 8 | 1 2 3 4": three tokens before the tail agree.
        let h = [5, 6, 7, 8, 1, 2, 3, 4, 9, 0, 6, 7, 8, 1, 2, 3, 4];
        assert_eq!(ngram_draft(&h, 8), (vec![9, 0, 6, 7, 8, 1, 2, 3], 3));
    }

    #[test]
    fn acceptance_follows_the_drafts() {
        let mut a = Acceptance::default();
        let prior = a.rate(0);
        assert!(a.rate(10) > prior, "a deeper match is likelier to stand");
        a.record(8, 8);
        let after_whole = a.rate(0);
        assert!(after_whole > prior);
        a.record(8, 0);
        assert!(a.rate(0) < after_whole, "a rejection lowers it");
        for _ in 0..20 {
            a.record(4, 0);
        }
        let low = a.rate(0);
        assert!(low < 0.3, "{low}");
        for _ in 0..20 {
            a.skipped();
        }
        assert!(a.rate(0) > low, "passed-up drafts let the evidence fade");
    }

    #[test]
    fn a_steps_cost_is_fitted_to_steps_of_different_sizes() {
        let mut cost = StepCost::default();
        assert!(cost.model().is_none(), "nothing measured");
        for _ in 0..10 {
            cost.record(1, 0.016);
        }
        assert!(cost.model().is_none(), "steps all alike: no slope");
        // Steps of one and two rows whose times are mostly noise: no slope either.
        let mut noisy = StepCost::default();
        for _ in 0..3 {
            for (rows, secs) in [(1, 0.012), (2, 0.019), (1, 0.020), (2, 0.013), (1, 0.016), (2, 0.018), (1, 0.013)] {
                noisy.record(rows, secs);
            }
            noisy.record(2, 0.015);
        }
        assert!(noisy.model().is_none(), "noise is no slope");
        // Steps whose times grow with their rows as from below nothing (noise, or a machine
        // loaded while the long steps ran) leave no fixed part: no model, since then no draft
        // would ever pay.
        let mut steep = StepCost::default();
        for rows in [9, 33, 1, 5, 1, 1, 9, 33] {
            steep.record(rows, 0.004 * rows as f64 - 0.002);
        }
        assert!(steep.model().is_none(), "no fixed part: {:?}", steep.model());
        for rows in [9, 33, 1, 5, 1, 1, 9, 33] {
            cost.record(rows, 0.012 + 0.004 * rows as f64);
        }
        // The steps of 16 ms fit the same line: 12 ms fixed, 4 ms a row.
        let (fixed, per_row) = cost.model().expect("fitted");
        assert!((fixed - 0.012).abs() < 1e-9 && (per_row - 0.004).abs() < 1e-9, "{fixed} {per_row}");
        // The first step of more rows than any before grows llama.cpp's buffers: left out.
        cost.record(64, 1.0);
        assert_eq!(cost.model(), Some((fixed, per_row)));
        // Plain steps alone keep a slope, and the model follows what they cost now (a machine
        // under load).
        for _ in 0..100 {
            cost.record(1, 0.026);
        }
        let (fixed, per_row) = cost.model().expect("kept");
        assert!(per_row > 0.0 && (fixed + per_row - 0.026).abs() < 1e-3, "{fixed} {per_row}");
        // Recent steps count more: rows dearer now than before move the slope toward the new cost.
        for rows in [1, 17, 1, 33, 1, 9] {
            cost.record(rows, 0.012 + 0.008 * rows as f64);
        }
        let (_, per_row) = cost.model().expect("fitted");
        assert!(per_row > 0.006, "{per_row}");
        // Plain steps that now cost less than the fitted row alone: the slope leaves them no
        // fixed part, so there is no model until one fits them again.
        for _ in 0..100 {
            cost.record(1, 0.005);
        }
        assert!(cost.model().is_none(), "{:?}", cost.model());
        for rows in [1, 17, 1, 33, 1, 9, 1, 17, 1, 33] {
            cost.record(rows, 0.003 + 0.002 * rows as f64);
        }
        let (fixed, per_row) = cost.model().expect("fitted again");
        assert!(fixed > 0.0 && per_row < 0.004, "{fixed} {per_row}");
    }

    #[test]
    fn drafts_are_as_long_as_they_pay() {
        let (fixed, per_row) = (0.016, 0.004);
        // Sure drafts: as long as allowed; hopeless ones: none.
        assert_eq!(draft_len(each(1.0), fixed, per_row, 1, 40, false), 39, "whole row groups: 40 rows");
        assert_eq!(draft_len(each(0.05), fixed, per_row, 1, 40, false), 0);
        // Likelier tokens, longer drafts; dearer rows or a fuller step, shorter ones.
        let d = |p, per_row, rows| draft_len(each(p), fixed, per_row, rows, DRAFT_MAX, false);
        assert!(d(0.8, per_row, 1) < d(0.95, per_row, 1));
        assert!(d(0.95, per_row, 1) < d(0.99, per_row, 1));
        assert!(d(0.95, 0.012, 1) < d(0.95, per_row, 1));
        assert!(d(0.95, per_row, 8) < d(0.95, per_row, 1));
        assert!(d(0.8, per_row, 1) >= 1, "a likely token is worth a row");
        assert_eq!(draft_len(each(1.0), fixed, per_row, 1, 0, true), 0, "no room");
        // Each drafted token that stands deepens the agreement for the next: longer than a draft
        // whose every token had the first one's chance.
        let acceptance = Acceptance::default();
        let deepening = draft_len(|k| acceptance.rate(8 + k), fixed, per_row, 1, DRAFT_MAX, false);
        assert!(deepening > draft_len(each(acceptance.rate(8)), fixed, per_row, 1, DRAFT_MAX, false));
    }

    /// The chance of a drafted token standing, the same for each.
    fn each(p: f64) -> impl Fn(usize) -> f64 {
        move |_| p
    }

    /// A draft fills whole row groups of the micro-batch it lands in: the step's when it is the
    /// only prediction, its own beside others; drafts of a few tokens, under a group, are whole.
    #[test]
    fn drafts_keep_whole_row_groups() {
        let (fixed, per_row) = (0.016, 0.004);
        for (rows, max, most) in [(1, 40, 39), (1, 8, 7), (1, 2, 2), (1, 5, 3), (3, 40, 40), (3, 7, 4), (2, 3, 3)] {
            assert_eq!(whole_row_groups_within(rows, max), most, "{rows} rows, at most {max}");
            assert_eq!(draft_len(each(1.0), fixed, per_row, rows, max, false), most, "{rows} rows, at most {max}");
        }
        for d in 0..=DRAFT_MAX {
            let len = draft_len(each(0.97), fixed, per_row, 1, d, false);
            assert!((1 + len) < ROW_GROUP || (1 + len) % ROW_GROUP == 0, "{len} of at most {d}");
        }
        // The draft that finishes the prediction may end in a part group; a likely one does.
        assert_eq!(draft_len(each(1.0), fixed, per_row, 1, 26, true), 26, "27 rows finish it");
        assert_eq!(draft_len(each(1.0), fixed, per_row, 1, 26, false), 23);
        assert_eq!(draft_len(each(0.99), fixed, per_row, 1, 26, true), 26, "it pays to finish now");
        assert!(draft_len(each(0.3), fixed, per_row, 1, 26, true) < 3, "an unlikely draft does not reach for the end");
        assert_eq!(draft_len(each(0.3), fixed, per_row, 1, 0, true), 0, "the step's own token is the last");
    }
}
