//! Token sampling over the logits llama.cpp returns, in the order of llama.cpp's sampler chain:
//! penalties, top-k, top-p, min-p, temperature, then a seeded draw (or argmax when greedy).
//!
//! Why not llama.cpp's own chain: it copies the whole vocabulary (262,144 entries for Gemma 3) into a
//! candidate array and sorts it for every token, which cost a quarter of decode speed here. This one
//! touches the logits once, keeps only the top-k, and does the rest on those few.

use std::collections::HashMap;

use crate::types::config::ValidConfig;

/// A filter on candidate tokens: keeps those that may come next.
pub(crate) type Allowed<'a> = &'a mut dyn FnMut(&mut Vec<(i32, f32)>);

/// How many recent tokens the repeat, presence and frequency penalties look at (LM Studio's 64).
const PENALTY_LAST_N: i32 = 64;

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
        let banned = |t: i32| self.banned.contains(&t);
        let raw = |t: i32| logits.get(t as usize).copied().unwrap_or(f32::NEG_INFINITY);
        let value = |t: i32| {
            if banned(t) {
                f32::NEG_INFINITY
            } else if self.counts.contains_key(&t) {
                self.adjust(t, raw(t))
            } else {
                raw(t)
            }
        };
        // Tokens whose value is not their raw logit: the penalized and the banned ones.
        let mut special: Vec<i32> = self.counts.keys().chain(&self.banned).copied().collect();
        special.sort_unstable();
        special.dedup();
        let max =
            special.iter().map(|&t| value(t)).fold(logits.iter().copied().fold(f32::NEG_INFINITY, f32::max), f32::max);
        let mut sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
        for &t in &special {
            sum += f64::from(value(t) - max).exp() - f64::from(raw(t) - max).exp();
        }
        let log_total = f64::from(max) + sum.max(f64::MIN_POSITIVE).ln();
        let logprob = |t: i32| (f64::from(value(t)) - log_total) as f32;
        let mut top = Vec::new();
        if n > 0 {
            top_k_into(logits, n + special.len(), &mut top);
            top.retain(|c| !special.contains(&c.0));
            top.extend(special.iter().filter(|&&t| !banned(t)).map(|&t| (t, value(t))));
            top.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            top.truncate(n);
        }
        (logprob(token), top.into_iter().map(|(t, _)| (t, logprob(t))).collect())
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
    pub(crate) fn sample_allowed(&mut self, logits: &[f32], allowed: Allowed<'_>) -> Option<i32> {
        let token = self.pick_from(logits, Some(allowed))?;
        self.accept(token);
        Some(token)
    }

    fn pick_from(&mut self, logits: &[f32], mut allowed: Option<Allowed<'_>>) -> Option<i32> {
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
        let mut cands = std::mem::take(&mut self.candidates);
        // With a filter, look at more than k, and at everything unless k plain (unpenalized)
        // candidates pass it: every token left out is then below k allowed ones, so the top-k
        // is exact.
        let mut want = if allowed.is_some() { (4 * k).max(64).min(logits.len()) } else { k };
        loop {
            cands.clear();
            self.candidates_into(logits, want, penalized, &mut cands);
            let Some(filter) = allowed.as_mut() else { break };
            filter(&mut cands);
            let plain = cands.iter().filter(|c| !self.counts.contains_key(&c.0)).count();
            if plain >= k || want == logits.len() {
                break;
            }
            // Then the whole vocabulary: a filter that allowed few of the best tokens tends to
            // allow few at all, and checks a long list in one go (the grammar's prefix tree).
            want = logits.len();
        }
        if cands.is_empty() {
            self.candidates = cands;
            return None;
        }
        cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        cands.truncate(k);
        let token = if greedy || cands.len() == 1 { cands[0].0 } else { self.draw(&mut cands) };
        self.candidates = cands;
        Some(token)
    }

    /// The `k` best tokens after the penalties, banned ones out (more when penalties are on: the
    /// penalized tokens come along, adjusted).
    fn candidates_into(&self, logits: &[f32], k: usize, penalized: bool, cands: &mut Vec<(i32, f32)>) {
        if k == logits.len() {
            cands.extend(logits.iter().enumerate().map(|(i, &l)| (i as i32, l)));
            if penalized {
                for c in cands.iter_mut() {
                    c.1 = self.adjust(c.0, c.1);
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

    /// top-p, min-p, temperature and the weighted draw over sorted candidates.
    fn draw(&mut self, cands: &mut Vec<(i32, f32)>) -> i32 {
        let max = cands[0].1;
        if self.top_p < 1.0 {
            let total: f32 = cands.iter().map(|c| (c.1 - max).exp()).sum();
            let mut cum = 0.0;
            let mut keep = cands.len();
            for (i, c) in cands.iter().enumerate() {
                cum += (c.1 - max).exp() / total;
                if cum >= self.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cands.truncate(keep.max(1));
        }
        if self.min_p > 0.0 {
            let floor = max + self.min_p.ln();
            let keep = cands.iter().take_while(|c| c.1 >= floor).count();
            cands.truncate(keep.max(1));
        }
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

/// The `k` largest logits, unordered, in one pass with a running threshold.
fn top_k_into(logits: &[f32], k: usize, out: &mut Vec<(i32, f32)>) {
    // Keep a buffer of up to 2k; when full, cut it to the k best and raise the threshold.
    // Most chunks hold nothing above the threshold: their max (which vectorizes) skips them.
    const CHUNK: usize = 32;
    let mut threshold = f32::NEG_INFINITY;
    for (c, chunk) in logits.chunks(CHUNK).enumerate() {
        let max = chunk.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
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
