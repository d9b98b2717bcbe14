//! Token sampling over the logits llama.cpp returns, in the order of llama.cpp's sampler chain:
//! penalties, top-k, top-p, min-p, temperature, then a seeded draw (or argmax when greedy).
//!
//! Why not llama.cpp's own chain: it copies the whole vocabulary (262,144 entries for Gemma 3) into a
//! candidate array and sorts it for every token, which cost a quarter of decode speed here. This one
//! touches the logits once, keeps only the top-k, and does the rest on those few.

use std::collections::HashMap;

use crate::types::config::ValidConfig;

/// Which tokens may come next (a grammar's), for [`Sampler::sample_allowed`].
pub(crate) trait Filter {
    /// Keeps the candidates that may come next.
    fn retain(&mut self, candidates: &mut Vec<(i32, f32)>);

    /// Puts every token of a vocabulary of `n` that may come next into `out` (emptied first).
    fn allowed(&mut self, n: usize, out: &mut Vec<i32>) {
        let mut all: Vec<(i32, f32)> = (0..n as i32).map(|t| (t, 0.0)).collect();
        self.retain(&mut all);
        out.clear();
        out.extend(all.iter().map(|c| c.0));
    }
}

/// A closure that keeps candidates is a filter.
impl<F: FnMut(&mut Vec<(i32, f32)>)> Filter for F {
    fn retain(&mut self, candidates: &mut Vec<(i32, f32)>) {
        self(candidates);
    }
}

/// How many recent tokens the repeat, presence and frequency penalties look at (LM Studio's 64).
pub(super) const PENALTY_LAST_N: i32 = 64;

/// How many of the best tokens a filter is asked about first: where it allows enough of them, the
/// rest of the vocabulary is not put to it.
const FEW_FIRST: usize = 64;

/// Under a filter with top-k off, how far down (in logits) each further ask about the tokens below
/// min-p's floor reaches, how many such asks at most, and how many tokens may be asked about in all
/// before the filter is asked for every token instead.
const ASK_STEP: f32 = 2.0;
const ASK_STEPS: usize = 16;
const ASK_AT_MOST: usize = 8192;
/// The share of the vocabulary's total mass added to its upper bound for the rounding of its sum.
const TOTAL_SLACK: f64 = 1e-5;

/// Per-prediction sampling state: settings, recent tokens for the penalties, and the RNG.
#[derive(Debug, Clone)]
pub(crate) struct Sampler {
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    repeat_penalty: f32,
    frequency_penalty: f32,
    presence_penalty: f32,
    recent: std::collections::VecDeque<i32>,
    rng: SplitMix64,
    /// Reused buffers.
    candidates: Vec<(i32, f32)>,
    allowed: Vec<i32>,
    chunk_maxima: Vec<f32>,
    counts: HashMap<i32, u32>,
    /// Tokens never picked (the end-of-generation tokens under `ignore_eos`).
    banned: Vec<i32>,
}

impl Sampler {
    pub(crate) fn new(c: &ValidConfig) -> Self {
        let seed = c.seed.map_or_else(random_seed, u64::from);
        Self {
            temperature: c.temperature,
            top_k: c.top_k as usize,
            top_p: c.top_p,
            min_p: c.min_p,
            repeat_penalty: c.repeat_penalty,
            frequency_penalty: c.frequency_penalty,
            presence_penalty: c.presence_penalty,
            recent: std::collections::VecDeque::with_capacity(PENALTY_LAST_N as usize),
            rng: SplitMix64(seed),
            candidates: Vec::new(),
            allowed: Vec::new(),
            chunk_maxima: Vec::new(),
            counts: HashMap::new(),
            banned: Vec::new(),
        }
    }

    /// Never picks `tokens` from now on.
    pub(crate) fn ban(&mut self, tokens: &[i32]) {
        self.banned.extend_from_slice(tokens);
    }

    /// Records a token of the prompt or of the output, for the penalties.
    pub(crate) fn accept(&mut self, token: i32) {
        if self.recent.len() == PENALTY_LAST_N as usize {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    /// Picks the next token from `logits` (one per vocabulary entry) and records it.
    pub(crate) fn sample(&mut self, logits: &[f32]) -> i32 {
        let token = self.pick(logits);
        self.accept(token);
        token
    }

    /// The log probability of `token`, and the `n` most likely tokens with theirs (most likely
    /// first), in the distribution the last [`Sampler::sample`] drew from: penalized logits,
    /// banned tokens out, at temperature 1, before top-k, top-p and min-p (OpenAI's definition).
    /// One pass over the vocabulary; only predictions that ask for log probabilities pay it.
    pub(crate) fn logprobs(&self, logits: &[f32], token: i32, n: usize) -> (f32, Vec<(i32, f32)>) {
        let special = self.special();
        let log_total = self.log_total(logits, &special, logits.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        let logprob = |t: i32| (f64::from(self.value(logits, t)) - log_total) as f32;
        let mut top = Vec::new();
        if n > 0 {
            top_k_into(logits, n + special.len(), &mut top);
            top.retain(|c| !special.contains(&c.0));
            top.extend(special.iter().filter(|t| !self.banned.contains(t)).map(|&t| (t, self.value(logits, t))));
            top.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            top.truncate(n);
        }
        (logprob(token), top.into_iter().map(|(t, _)| (t, logprob(t))).collect())
    }

    /// Tokens whose value is not their raw logit: the penalized and the banned ones, sorted.
    fn special(&self) -> Vec<i32> {
        let mut special: Vec<i32> = self.counts.keys().chain(&self.banned).copied().collect();
        special.sort_unstable();
        special.dedup();
        special
    }

    /// What `token` is drawn by: its logit after the penalties, or minus infinity when banned.
    fn value(&self, logits: &[f32], token: i32) -> f32 {
        let raw = logits.get(token as usize).copied().unwrap_or(f32::NEG_INFINITY);
        if self.banned.contains(&token) {
            f32::NEG_INFINITY
        } else {
            self.adjust(token, raw)
        }
    }

    /// The log of the softmax's denominator over the whole vocabulary at temperature 1, of the
    /// values (`special` as [`Sampler::special`] gives): one pass over the logits. `raw_max` is
    /// the largest logit (the caller has it).
    fn log_total(&self, logits: &[f32], special: &[i32], raw_max: f32) -> f64 {
        // Any bound at or above every value keeps the exponentials finite.
        let max = special.iter().map(|&t| self.value(logits, t)).fold(raw_max, f32::max);
        let mut sum = exp_sum(logits, max);
        for &t in special {
            let raw = logits.get(t as usize).copied().unwrap_or(f32::NEG_INFINITY);
            sum += f64::from(self.value(logits, t) - max).exp() - f64::from(raw - max).exp();
        }
        f64::from(max) + sum.max(f64::MIN_POSITIVE).ln()
    }

    fn penalized(&mut self) -> bool {
        let on = self.repeat_penalty != 1.0 || self.frequency_penalty != 0.0 || self.presence_penalty != 0.0;
        self.counts.clear();
        if on {
            for &t in &self.recent {
                *self.counts.entry(t).or_insert(0) += 1;
            }
        }
        on && !self.counts.is_empty()
    }

    fn adjust(&self, token: i32, logit: f32) -> f32 {
        match self.counts.get(&token) {
            None => logit,
            Some(&n) => {
                let l = if logit <= 0.0 { logit * self.repeat_penalty } else { logit / self.repeat_penalty };
                l - n as f32 * self.frequency_penalty - self.presence_penalty
            }
        }
    }

    fn pick(&mut self, logits: &[f32]) -> i32 {
        self.pick_from(logits, None).unwrap_or(0)
    }

    /// Like [`Sampler::sample`], over the tokens `allowed` keeps of the candidates it is given (a
    /// grammar's): exactly the distribution of the whole vocabulary with the others masked out.
    /// `None` when it allows none.
    pub(crate) fn sample_allowed(&mut self, logits: &[f32], allowed: &mut dyn Filter) -> Option<i32> {
        let token = self.pick_from(logits, Some(allowed))?;
        self.accept(token);
        Some(token)
    }

    fn pick_from(&mut self, logits: &[f32], mut allowed: Option<&mut dyn Filter>) -> Option<i32> {
        let penalized = self.penalized();
        let greedy = self.temperature <= 0.0;
        // Candidates: the top-k (top-1 when greedy), or the whole vocabulary when top-k is off.
        let k = if greedy {
            1
        } else if self.top_k == 0 {
            logits.len()
        } else {
            self.top_k.min(logits.len())
        };
        if k == logits.len() && self.min_p > 0.0 {
            match allowed.as_mut() {
                None => return self.draw_above_min_p(logits),
                Some(filter) => {
                    if let Some(token) = self.draw_allowed_above_min_p(logits, penalized, &mut **filter) {
                        return Some(token);
                    }
                }
            }
        }
        let mut cands = std::mem::take(&mut self.candidates);
        // With a filter, look at more than k, and at everything unless k plain (unpenalized)
        // candidates pass it: every token left out is then below k allowed ones, so the top-k
        // is exact.
        let mut want = if allowed.is_some() { (4 * k).max(FEW_FIRST).min(logits.len()) } else { k };
        loop {
            cands.clear();
            let Some(filter) = allowed.as_mut() else {
                self.candidates_into(logits, want, penalized, &mut cands);
                break;
            };
            if want == logits.len() {
                // The whole vocabulary: the filter names what it allows (a grammar walks its
                // prefix tree), and only those are valued.
                let mut ids = std::mem::take(&mut self.allowed);
                filter.allowed(logits.len(), &mut ids);
                cands.extend(ids.iter().map(|&t| (t, self.value(logits, t))).filter(|c| c.1 > f32::NEG_INFINITY));
                self.allowed = ids;
                break;
            }
            self.candidates_into(logits, want, penalized, &mut cands);
            filter.retain(&mut cands);
            let plain = cands.iter().filter(|c| !self.counts.contains_key(&c.0)).count();
            if plain >= k {
                break;
            }
            // Then the whole vocabulary: a filter that allowed few of the best tokens tends to
            // allow few at all, and names them in one go (the grammar's prefix tree).
            want = logits.len();
        }
        if cands.is_empty() {
            self.candidates = cands;
            return None;
        }
        cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        cands.truncate(k);
        let token = if greedy || cands.len() == 1 { cands[0].0 } else { self.draw(&mut cands, None) };
        self.candidates = cands;
        Some(token)
    }

    /// Top-k off with min-p on: only the tokens within min-p of the best can be drawn, so those few
    /// are sorted, not the vocabulary. Top-p's shares are then of the whole vocabulary's total (one
    /// more pass, when top-p is on). The same distribution as sorting every token.
    fn draw_above_min_p(&mut self, logits: &[f32]) -> Option<i32> {
        let special = self.special();
        let mut cands = std::mem::take(&mut self.candidates);
        // One pass for the maximum of each chunk; the second reads only the chunks that reach the
        // floor.
        let maxima = self.chunk_maxima_of(logits);
        // The best value: a special token's, or the best raw logit of the others.
        let mut max = special.iter().map(|&t| self.value(logits, t)).fold(f32::NEG_INFINITY, f32::max);
        for (c, &m) in maxima.iter().enumerate() {
            if m <= max {
                continue;
            }
            let range = (c * CHUNK) as i32..((c + 1) * CHUNK) as i32;
            if special.iter().any(|t| range.contains(t)) {
                let plain = (c * CHUNK..(c * CHUNK + CHUNK).min(logits.len()))
                    .filter(|&i| special.binary_search(&(i as i32)).is_err());
                max = plain.map(|i| logits[i]).fold(max, f32::max);
            } else {
                max = m;
            }
        }
        self.valued_within(logits, &special, &maxima, max + self.min_p.ln()..f32::INFINITY, &mut cands);
        if cands.is_empty() {
            self.chunk_maxima = maxima;
            self.candidates = cands;
            return None;
        }
        let token = if cands.len() == 1 {
            cands[0].0
        } else if self.top_p >= 1.0 {
            // Min-p alone: no order needed (many tokens pass it where the model is unsure).
            self.weighted(&cands, max)
        } else {
            cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let raw_max = maxima.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let log_total = self.log_total(logits, &special, raw_max);
            self.draw(&mut cands, Some(log_total))
        };
        self.chunk_maxima = maxima;
        self.candidates = cands;
        Some(token)
    }

    /// Top-k off with min-p on, under a filter: only allowed tokens within min-p of the best allowed
    /// one can be drawn. That one is nearly always among the best few tokens, and then only the
    /// tokens above its floor are put to the filter, not the vocabulary (a grammar inside a JSON
    /// string allows nearly all of it). Top-p's shares are of the allowed tokens' total: it lies
    /// between the allowed mass the filter was asked about and the vocabulary's total less what it
    /// refused, and tokens further down are asked about until those bounds settle where top-p cuts.
    /// The same distribution as masking every token and sorting them all (though where the grammar
    /// allows one token only, this draws for it, and the whole-vocabulary path does not: the same
    /// token, one random number more); `None` when that cannot
    /// be told cheaply (no allowed plain token among the few, or the bounds settle only after
    /// [`ASK_AT_MOST`] tokens): the caller then asks the filter for every token.
    fn draw_allowed_above_min_p(&mut self, logits: &[f32], penalized: bool, filter: &mut dyn Filter) -> Option<i32> {
        let mut cands = std::mem::take(&mut self.candidates);
        cands.clear();
        self.candidates_into(logits, FEW_FIRST.min(logits.len()), penalized, &mut cands);
        filter.retain(&mut cands);
        // The best allowed value, where it is sure: the candidates are the best plain tokens and
        // every penalized one, so an allowed plain one among them is above every token left out.
        let plain_allowed = cands.iter().any(|c| !self.counts.contains_key(&c.0));
        let best = cands.iter().map(|c| c.1).reduce(f32::max).filter(|m| plain_allowed && m.is_finite());
        let Some(max) = best else {
            self.candidates = cands;
            return None;
        };
        let floor = max + self.min_p.ln();
        let special = self.special();
        let maxima = self.chunk_maxima_of(logits);
        self.valued_within(logits, &special, &maxima, floor..f32::INFINITY, &mut cands);
        // Masses relative to e^max.
        let mass = |cands: &[(i32, f32)]| cands.iter().map(|c| f64::from(c.1 - max).exp()).sum::<f64>();
        let (mut asked, mut asked_mass) = (cands.len(), mass(&cands));
        if self.top_p < 1.0 && asked > ASK_AT_MOST {
            // The bounds would not be settled in the budget: one walk of the vocabulary, not two.
            self.chunk_maxima = maxima;
            self.candidates = cands;
            return None;
        }
        filter.retain(&mut cands);
        cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut keep = Some(cands.len());
        if self.top_p < 1.0 {
            let raw_max = maxima.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let total = (self.log_total(logits, &special, raw_max) - f64::from(max)).exp();
            // The total is summed in f32 lanes: its rounding, a few parts in 10^7 of it, is kept on
            // the high side (it matters where refused tokens far above the allowed ones hold most of
            // it).
            let high = |allowed: f64, asked_mass: f64| total * (1.0 + TOTAL_SLACK) - (asked_mass - allowed);
            let mut allowed = mass(&cands);
            // Every token valued at least `reached` has been put to the filter.
            let (mut reached, mut further) = (floor, Vec::new());
            keep = kept_by_top_p(&cands, max, self.top_p, allowed, high(allowed, asked_mass));
            for _ in 0..ASK_STEPS {
                if keep.is_some() {
                    break;
                }
                self.valued_within(logits, &special, &maxima, reached - ASK_STEP..reached, &mut further);
                reached -= ASK_STEP;
                asked += further.len();
                if asked > ASK_AT_MOST {
                    break;
                }
                asked_mass += mass(&further);
                filter.retain(&mut further);
                allowed += mass(&further);
                keep = kept_by_top_p(&cands, max, self.top_p, allowed, high(allowed, asked_mass));
            }
        }
        let token = keep.map(|n| {
            cands.truncate(n);
            self.weighted(&cands, max)
        });
        self.chunk_maxima = maxima;
        self.candidates = cands;
        token
    }

    /// The maximum of each [`CHUNK`] of `logits` (one pass; it vectorizes), in the reused buffer.
    fn chunk_maxima_of(&mut self, logits: &[f32]) -> Vec<f32> {
        let mut maxima = std::mem::take(&mut self.chunk_maxima);
        maxima.clear();
        maxima.extend(logits.chunks(CHUNK).map(chunk_max));
        maxima
    }

    /// Every token whose value (penalties applied, banned ones out) is in `values`, into `cands`
    /// (emptied first): only the chunks whose maximum (`maxima`) reaches the range are read.
    /// `special` as [`Sampler::special`] gives.
    fn valued_within(
        &self,
        logits: &[f32],
        special: &[i32],
        maxima: &[f32],
        values: std::ops::Range<f32>,
        cands: &mut Vec<(i32, f32)>,
    ) {
        cands.clear();
        for (c, &m) in maxima.iter().enumerate() {
            if m >= values.start {
                let chunk = logits[c * CHUNK..].iter().take(CHUNK).enumerate();
                let inside = chunk.filter(|(_, l)| values.contains(l));
                cands.extend(inside.map(|(j, &l)| ((c * CHUNK + j) as i32, l)));
            }
        }
        cands.retain(|c| special.binary_search(&c.0).is_err());
        cands.extend(special.iter().map(|&t| (t, self.value(logits, t))).filter(|c| values.contains(&c.1)));
    }

    /// The `k` best tokens after the penalties, banned ones out (more when penalties are on: the
    /// penalized tokens come along, adjusted).
    fn candidates_into(&self, logits: &[f32], k: usize, penalized: bool, cands: &mut Vec<(i32, f32)>) {
        if k == logits.len() {
            cands.extend(logits.iter().enumerate().map(|(i, &l)| (i as i32, l)));
            // Candidate `t` is at index `t`: only the penalized tokens change.
            if penalized {
                for &t in self.counts.keys() {
                    if let Some(c) = cands.get_mut(t as usize) {
                        c.1 = self.adjust(t, c.1);
                    }
                }
            }
            for &t in &self.banned {
                if let Some(c) = cands.get_mut(t as usize) {
                    c.1 = f32::NEG_INFINITY;
                }
            }
            // What cannot be drawn (banned) is no candidate.
            cands.retain(|c| c.1 > f32::NEG_INFINITY);
        } else if penalized || !self.banned.is_empty() {
            // Penalties may push tokens out of the top-k and let others in; banned tokens leave it.
            // Of the top k + n raw logits (n = penalized and banned tokens), at least k are neither:
            // the true top-k is among those plus the penalized tokens that are not banned.
            top_k_into(logits, k + self.counts.len() + self.banned.len(), cands);
            cands.retain(|c| !self.counts.contains_key(&c.0) && !self.banned.contains(&c.0));
            for &t in self.counts.keys().filter(|t| !self.banned.contains(t)) {
                if let Some(&l) = logits.get(t as usize) {
                    cands.push((t, self.adjust(t, l)));
                }
            }
        } else {
            top_k_into(logits, k, cands);
        }
    }

    /// top-p, min-p, temperature and the weighted draw over sorted candidates. Top-p's shares are
    /// of the candidates' total, or of `log_total` (the whole vocabulary's) when given.
    fn draw(&mut self, cands: &mut Vec<(i32, f32)>, log_total: Option<f64>) -> i32 {
        let max = cands[0].1;
        if self.top_p < 1.0 {
            let keep = match log_total {
                None => {
                    let total: f32 = cands.iter().map(|c| (c.1 - max).exp()).sum();
                    let mut cum = 0.0;
                    cands.iter().position(|c| {
                        cum += (c.1 - max).exp() / total;
                        cum >= self.top_p
                    })
                }
                Some(log_total) => {
                    let mut cum = 0.0;
                    cands.iter().position(|c| {
                        cum += (f64::from(c.1) - log_total).exp();
                        cum >= f64::from(self.top_p)
                    })
                }
            };
            cands.truncate(keep.map_or(cands.len(), |i| i + 1));
        }
        if self.min_p > 0.0 {
            let floor = max + self.min_p.ln();
            let keep = cands.iter().take_while(|c| c.1 >= floor).count();
            cands.truncate(keep.max(1));
        }
        self.weighted(cands, max)
    }

    /// The draw at temperature over `cands` (in any order; `max` is their best value).
    fn weighted(&mut self, cands: &[(i32, f32)], max: f32) -> i32 {
        let t = self.temperature;
        let weights: Vec<f32> = cands.iter().map(|c| ((c.1 - max) / t).exp()).collect();
        let total: f32 = weights.iter().sum();
        let mut r = self.rng.next_f32() * total;
        for (c, w) in cands.iter().zip(&weights) {
            if r < *w {
                return c.0;
            }
            r -= w;
        }
        cands[cands.len() - 1].0
    }
}

/// How many of `cands` (sorted, the best valued `max`) top-p keeps when the allowed tokens' total
/// mass (relative to e^max, `cands` are some of them) is anywhere between `low` and `high`; `None`
/// when the cut moves within those bounds.
fn kept_by_top_p(cands: &[(i32, f32)], max: f32, top_p: f32, low: f64, high: f64) -> Option<usize> {
    let kept = |total: f64| {
        let mut cum = 0.0;
        let cut = cands.iter().position(|c| {
            cum += f64::from(c.1 - max).exp();
            cum >= f64::from(top_p) * total
        });
        cut.map_or(cands.len(), |i| i + 1)
    };
    // A larger total cuts later.
    let earliest = kept(low);
    (earliest == cands.len() || (high >= low && kept(high) == earliest)).then_some(earliest)
}

/// The `k` largest logits, unordered, in one pass with a running threshold.
fn top_k_into(logits: &[f32], k: usize, out: &mut Vec<(i32, f32)>) {
    // Keep a buffer of up to 2k; when full, cut it to the k best and raise the threshold.
    // Most chunks hold nothing above the threshold: their max (which vectorizes) skips them.
    let mut threshold = f32::NEG_INFINITY;
    for (c, chunk) in logits.chunks(CHUNK).enumerate() {
        let max = chunk_max(chunk);
        if max <= threshold && out.len() >= k {
            continue;
        }
        for (j, &l) in chunk.iter().enumerate() {
            if l > threshold || out.len() < k {
                out.push(((c * CHUNK + j) as i32, l));
                if out.len() >= 2 * k.max(8) {
                    shrink(out, k);
                    threshold = out.iter().map(|c| c.1).fold(f32::INFINITY, f32::min);
                }
            }
        }
    }
    shrink(out, k);
}

/// Logits are scanned in chunks of this many: a chunk's maximum vectorizes and skips it whole.
const CHUNK: usize = 32;

/// The largest of `chunk` (NaN left out), in a form that vectorizes.
fn chunk_max(chunk: &[f32]) -> f32 {
    chunk.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// The sum of `exp(l - max)` over `logits` (every `l <= max`), in lanes that vectorize: f32
/// within a block, f64 across blocks.
fn exp_sum(logits: &[f32], max: f32) -> f64 {
    const LANES: usize = 16;
    let mut sum = 0f64;
    for block in logits.chunks(1024) {
        let mut acc = [0f32; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (a, &l) in acc.iter_mut().zip(chunk) {
                *a += exp_nonpositive(l - max);
            }
        }
        let rest: f32 = chunks.remainder().iter().map(|&l| exp_nonpositive(l - max)).sum();
        sum += acc.iter().map(|&a| f64::from(a)).sum::<f64>() + f64::from(rest);
    }
    sum
}

/// `e^x` for `x <= 0` within a few ulp, in plain arithmetic that vectorizes (libm's `expf` is a
/// call per element): 2^n · e^r with n the nearest integer to x / ln 2, e^r by its Taylor
/// polynomial. Below -87 (and for NaN) it gives about 2^-126, which a sum of terms up to 1 loses.
fn exp_nonpositive(x: f32) -> f32 {
    // 1.5 · 2^23: adding it rounds to an integer, which its low mantissa bits then hold.
    const ROUND: f32 = 12_582_912.0;
    const LN_2_HI: f32 = 0.693_145_75;
    const LN_2_LO: f32 = 1.428_606_8e-6;
    let x = x.max(-87.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN_2_HI - n * LN_2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let exponent = (t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) as u32;
    p * f32::from_bits(exponent << 23)
}

fn shrink(v: &mut Vec<(i32, f32)>, k: usize) {
    if v.len() > k {
        v.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(k);
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// SplitMix64: small, fast, and the same on every platform, so a seed always gives the same text.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::config::Config;

    fn sampler(c: Config) -> Sampler {
        Sampler::new(&c.validate().expect("valid"))
    }

    #[test]
    fn logprobs_are_a_distribution_whose_argmax_is_the_greedy_pick() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 / 10.0).collect();
        let mut s = sampler(Config { temperature: Some(0.0), repeat_penalty: Some(1.5), ..Default::default() });
        s.accept(100); // penalized: a top logit, pushed down
        s.ban(&[201]);
        let token = s.sample(&logits);
        let (lp, top) = s.logprobs(&logits, token, 5);
        assert_eq!(top[0], (token, lp), "greedy takes the most likely token");
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1), "{top:?}");
        assert!(top.iter().all(|(t, _)| *t != 201), "a banned token is listed");
        // Over the whole vocabulary the probabilities sum to 1.
        let total: f64 = (0..1000).map(|t| f64::from(s.logprobs(&logits, t, 0).0).exp()).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert_eq!(s.logprobs(&logits, 201, 0).0, f32::NEG_INFINITY);
    }

    /// Structured output's contract: sampling under a filter is sampling from the whole
    /// vocabulary with what the filter rejects masked out, even when the allowed tokens rank low.
    #[test]
    fn a_filter_masks_the_whole_vocabulary() {
        let logits: Vec<f32> = (0..5000).map(|i| (i % 997) as f32 / 100.0).collect();
        let allowed: Vec<i32> = (0..5000).filter(|t| t % 250 == 3).collect();
        let mut by_logit = allowed.clone();
        by_logit.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
        let filter = |c: &mut Vec<(i32, f32)>| c.retain(|&(t, _)| t % 250 == 3);
        let mut greedy = sampler(Config { temperature: Some(0.0), repeat_penalty: Some(1.0), ..Default::default() });
        assert_eq!(greedy.sample_allowed(&logits, &mut { filter }), Some(by_logit[0]));
        // A penalty pushes the best allowed token below the second.
        let mut penalized =
            sampler(Config { temperature: Some(0.0), repeat_penalty: Some(10.0), ..Default::default() });
        penalized.accept(by_logit[0]);
        assert_eq!(penalized.sample_allowed(&logits, &mut { filter }), Some(by_logit[1]));
        // Top-3 of the masked vocabulary, drawn: exactly the three best allowed tokens.
        let mut s = sampler(Config {
            seed: Some(5),
            top_k: Some(3),
            top_p: Some(1.0),
            min_p: Some(0.0),
            repeat_penalty: Some(1.0),
            temperature: Some(50.0),
            ..Default::default()
        });
        let drawn: std::collections::BTreeSet<i32> =
            (0..300).filter_map(|_| s.sample_allowed(&logits, &mut { filter })).collect();
        assert_eq!(drawn, by_logit[..3].iter().copied().collect());
        // Top-k off: the whole vocabulary, still only allowed tokens.
        let mut all = sampler(Config { top_k: Some(0), seed: Some(2), temperature: Some(50.0), ..Default::default() });
        assert!((0..50).all(|_| all.sample_allowed(&logits, &mut { filter }).is_some_and(|t| allowed.contains(&t))));
        assert_eq!(greedy.sample_allowed(&logits, &mut |c: &mut Vec<(i32, f32)>| c.clear()), None);
    }

    #[test]
    fn banned_tokens_are_never_picked() {
        let logits = [0.1, 3.0, -2.0, 2.9];
        let mut greedy = sampler(Config { temperature: Some(0.0), repeat_penalty: Some(1.0), ..Default::default() });
        greedy.ban(&[1]);
        assert_eq!(greedy.sample(&logits), 3);
        // Penalized and banned at once, and over the whole vocabulary (top-k off).
        let mut all = sampler(Config { top_k: Some(0), seed: Some(1), temperature: Some(5.0), ..Default::default() });
        all.accept(1);
        all.ban(&[1, 3]);
        assert!((0..50).all(|_| ![1, 3].contains(&all.sample(&logits))));
    }

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = sampler(Config { temperature: Some(0.0), repeat_penalty: Some(1.0), ..Default::default() });
        assert_eq!(s.sample(&[0.1, 3.0, -2.0, 2.9]), 1);
    }

    #[test]
    fn repeat_penalty_can_change_the_argmax() {
        let mut s = sampler(Config { temperature: Some(0.0), repeat_penalty: Some(2.0), ..Default::default() });
        s.accept(1);
        assert_eq!(s.sample(&[0.1, 3.0, -2.0, 2.9]), 3);
    }

    #[test]
    fn penalties_apply_before_top_k() {
        // Token 0 leads, token 1 is penalized from 2nd place to far below token 2.
        let mut s = sampler(Config {
            seed: Some(3),
            top_k: Some(2),
            top_p: Some(1.0),
            min_p: Some(0.0),
            repeat_penalty: Some(4.0),
            temperature: Some(1.0),
            ..Default::default()
        });
        s.accept(1);
        let logits = [10.0f32, 9.0, 8.0, -3.0];
        let drawn: std::collections::BTreeSet<i32> = (0..300).map(|_| s.pick(&logits)).collect();
        assert_eq!(drawn, [0, 2].into_iter().collect());
    }

    #[test]
    fn top_k_matches_a_full_sort() {
        let logits: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 1000) as f32 / 10.0 + (i as f32) * 1e-5).collect();
        let mut got = Vec::new();
        top_k_into(&logits, 40, &mut got);
        got.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut all: Vec<(i32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as i32, l)).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        assert_eq!(got, all[..40].to_vec());
    }

    #[test]
    fn seeded_draws_repeat_and_follow_the_distribution() {
        let logits = [0.0f32, 1.0, 2.0, 0.5];
        let config = || Config {
            seed: Some(9),
            temperature: Some(1.0),
            top_p: Some(1.0),
            min_p: Some(0.0),
            repeat_penalty: Some(1.0),
            ..Default::default()
        };
        let (mut a, mut b) = (sampler(config()), sampler(config()));
        let draws: Vec<i32> = (0..2000).map(|_| a.sample(&logits)).collect();
        assert_eq!(draws, (0..2000).map(|_| b.sample(&logits)).collect::<Vec<_>>());
        let share = draws.iter().filter(|&&t| t == 2).count() as f64 / 2000.0;
        // softmax([0, 1, 2, 0.5])[2] = 0.5745
        assert!((share - 0.5745).abs() < 0.04, "{share}");
    }

    /// Distinct logits from 0 to 30 over 20,000 tokens, few near the top as in a model's.
    fn model_like_logits() -> Vec<f32> {
        (0..20_000).map(|i| 30.0 * (((i * 7919) % 20_011) as f32 / 20_011.0).powi(16)).collect()
    }

    /// Top-k off, `top_p` and `min_p`, a repeat penalty of 3, at a temperature that spreads the
    /// draws over what they keep, `banned` never picked.
    fn top_k_off(seed: u32, top_p: f32, min_p: f32, banned: &[i32]) -> Sampler {
        let mut s = sampler(Config {
            seed: Some(seed),
            top_k: Some(0),
            top_p: Some(top_p),
            min_p: Some(min_p),
            repeat_penalty: Some(3.0),
            temperature: Some(20.0),
            ..Default::default()
        });
        s.ban(banned);
        s
    }

    /// What llama.cpp's chain keeps of the tokens `allowed` allows: the repeat penalty of 3 on
    /// `recent`, every token sorted, top-p, min-p.
    fn full_sort_keeps(
        logits: &[f32],
        allowed: impl Fn(i32) -> bool,
        recent: &[i32],
        top_p: f32,
        min_p: f32,
    ) -> std::collections::BTreeSet<i32> {
        let mut all: Vec<(i32, f64)> = (0..logits.len() as i32)
            .filter(|&t| allowed(t))
            .map(|t| {
                let l = logits[t as usize];
                (t, f64::from(if recent.contains(&t) { l / 3.0 } else { l }))
            })
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: f64 = all.iter().map(|c| (c.1 - all[0].1).exp()).sum();
        let mut cum = 0.0;
        let by_p = all.iter().position(|c| {
            cum += (c.1 - all[0].1).exp() / total;
            top_p < 1.0 && cum >= f64::from(top_p)
        });
        let by_min_p = all.iter().take_while(|c| c.1 >= all[0].1 + f64::from(min_p).ln()).count();
        all[..by_p.map_or(all.len(), |i| i + 1).min(by_min_p)].iter().map(|c| c.0).collect()
    }

    /// Top-k off with min-p (the tokens near the best sorted, top-p over the whole vocabulary's
    /// total) draws exactly the tokens a full sort keeps: penalized and banned tokens among them.
    #[test]
    fn top_k_off_draws_what_a_full_sort_keeps() {
        let logits = model_like_logits();
        let mut best: Vec<i32> = (0..logits.len() as i32).collect();
        best.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        // The three best are penalized out of reach, the fourth banned.
        let (recent, banned) = ([best[0], best[1], best[2]], [best[3]]);
        for (top_p, min_p) in [(1.0, 0.2), (0.5, 0.05), (0.9, 0.01)] {
            let mut s = top_k_off(7, top_p, min_p, &banned);
            let kept = full_sort_keeps(&logits, |t| !banned.contains(&t), &recent, top_p, min_p);
            assert!((2..300).contains(&kept.len()), "{top_p} {min_p}: {}", kept.len());
            assert!(kept.iter().all(|t| !recent.contains(t) && !banned.contains(t)));
            let drawn: std::collections::BTreeSet<i32> = (0..6000)
                .map(|_| {
                    s.recent.clear();
                    recent.iter().for_each(|&t| s.accept(t));
                    s.pick(&logits)
                })
                .collect();
            assert_eq!(drawn, kept, "top-p {top_p}, min-p {min_p}");
        }
    }

    /// A grammar's stand-in that keeps the odd tokens and counts the calls that name every token
    /// it allows (the whole vocabulary's walk).
    struct Odd {
        whole: usize,
    }

    impl Filter for Odd {
        fn retain(&mut self, candidates: &mut Vec<(i32, f32)>) {
            candidates.retain(|c| c.0 % 2 == 1);
        }

        fn allowed(&mut self, n: usize, out: &mut Vec<i32>) {
            self.whole += 1;
            out.clear();
            out.extend((0..n as i32).filter(|t| t % 2 == 1));
        }
    }

    /// Top-k off with min-p under a filter draws exactly the allowed tokens a full sort of them
    /// keeps (top-p over the allowed tokens' total, min-p below the best allowed one), penalized
    /// and banned tokens among them, without asking the filter for the whole vocabulary; where
    /// the best tokens allow none, it asks, and draws the same.
    #[test]
    fn top_k_off_under_a_filter_draws_what_masking_every_token_keeps() {
        let logits = model_like_logits();
        let mut best: Vec<i32> = (0..logits.len() as i32).filter(|t| t % 2 == 1).collect();
        best.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        // The best allowed token penalized out of reach, the second banned.
        let (recent, banned) = ([best[0]], [best[1]]);
        // The last cases lift 100 disallowed tokens above every allowed one: of the best tokens
        // and the penalized one, only the penalized one is allowed, and it is not the best allowed.
        let mut masked_top = logits.clone();
        (0..100).for_each(|i| masked_top[2 * i] = 40.0 + i as f32 * 0.01);
        let cases = [(1.0, 0.2, &logits, false), (0.5, 0.05, &logits, false), (0.9, 0.01, &logits, false)];
        let masked = [(0.9, 0.05, &masked_top, true), (1.0, 0.2, &masked_top, true)];
        for (top_p, min_p, logits, walks) in cases.into_iter().chain(masked) {
            let mut s = top_k_off(11, top_p, min_p, &banned);
            let kept = full_sort_keeps(logits, |t| t % 2 == 1 && !banned.contains(&t), &recent, top_p, min_p);
            assert!((2..300).contains(&kept.len()), "{top_p} {min_p}: {}", kept.len());
            let mut filter = Odd { whole: 0 };
            let drawn: std::collections::BTreeSet<i32> = (0..6000)
                .map(|_| {
                    s.recent.clear();
                    recent.iter().for_each(|&t| s.accept(t));
                    s.pick_from(logits, Some(&mut filter)).expect("an allowed token")
                })
                .collect();
            assert_eq!(drawn, kept, "top-p {top_p}, min-p {min_p}");
            assert_eq!(filter.whole > 0, walks, "top-p {top_p}, min-p {min_p}: {} walks", filter.whole);
        }
    }

    #[test]
    fn the_vectorized_exponential_is_exact_to_a_few_ulp() {
        for i in 0..=100_000 {
            let x = -(i as f32) * 0.00087;
            let (got, want) = (f64::from(exp_nonpositive(x)), f64::from(x).exp());
            assert!((got - want).abs() <= 4e-7 * want, "e^{x}: {got} vs {want}");
        }
        assert!(exp_nonpositive(f32::NEG_INFINITY) < 1e-37 && exp_nonpositive(f32::NAN) < 1e-37);
    }

    #[test]
    fn min_p_and_top_p_cut_the_tail() {
        let logits = [10.0f32, 9.9, 0.0, -5.0];
        let mut s =
            sampler(Config { seed: Some(1), min_p: Some(0.5), repeat_penalty: Some(1.0), ..Default::default() });
        assert!((0..200).all(|_| s.sample(&logits) < 2));
        let mut s =
            sampler(Config { seed: Some(1), top_p: Some(0.01), repeat_penalty: Some(1.0), ..Default::default() });
        assert!((0..200).all(|_| s.sample(&logits) == 0));
    }
}
