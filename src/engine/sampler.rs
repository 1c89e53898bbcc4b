//! Next-token choice: greedy, or temperature then top-k then top-p (the order of Hugging Face
//! and vLLM, which the paper's rollouts used), after a repetition penalty. Seeded and portable:
//! the same seed gives the same tokens natively and in the browser.

use crate::engine::exp::exp_nonpositive;
use crate::engine::quant::float::max_of;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplerConfig {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 means off.
    pub top_k: usize,
    /// 1.0 means off.
    pub top_p: f32,
    /// 1.0 means off; llama.cpp's rule: positive logits divided, negative multiplied.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_k: 0,
            top_p: 0.9,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repeat_penalty: 1.0,
            ..Self::default()
        }
    }
}

/// FNV-1a: a hash of bytes that is the same on every platform and build (unlike std's
/// hasher), to turn names into seeds and an adapter's description into a cache key.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64: tiny, well distributed, identical on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub struct Sampler {
    pub cfg: SamplerConfig,
    rng: Rng,
}

pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Self {
        let rng = Rng::new(cfg.seed);
        Self { cfg, rng }
    }

    /// Picks the next token; `history` is every token so far (prompt and reply).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let c = &self.cfg;
        if c.repeat_penalty != 1.0 && c.repeat_last_n > 0 {
            let window = &history[history.len().saturating_sub(c.repeat_last_n)..];
            let mut seen = std::collections::HashSet::new();
            for &t in window {
                if let Some(l) = logits.get_mut(t as usize).filter(|_| seen.insert(t)) {
                    *l = if *l > 0.0 {
                        *l / c.repeat_penalty
                    } else {
                        *l * c.repeat_penalty
                    };
                }
            }
        }
        if c.temperature <= 0.0 {
            return argmax(logits);
        }
        let scaled: Vec<f32> = logits.iter().map(|&l| l / c.temperature).collect();
        let (cand, weights) = if c.top_k > 0 {
            let mut cand = sorted_descending(&scaled);
            cand.truncate(c.top_k);
            let max = cand[0].1;
            let w: Vec<f64> = cand
                .iter()
                .map(|&(_, l)| exp_nonpositive((l - max) as f64))
                .collect();
            let keep = nucleus_len(&w, w.iter().sum(), c.top_p);
            (cand[..keep].to_vec(), w[..keep].to_vec())
        } else {
            nucleus(&scaled, c.top_p)
        };
        let total: f64 = weights.iter().sum();
        let mut r = self.rng.next_f64() * total;
        for (&(id, _), &w) in cand.iter().zip(&weights) {
            if r < w {
                return id;
            }
            r -= w;
        }
        cand[cand.len() - 1].0
    }
}

/// The smallest number of leading `weights` (largest first) holding `top_p` of `total`: all of
/// them when `top_p` is 1 or more.
fn nucleus_len(weights: &[f64], total: f64, top_p: f32) -> usize {
    if top_p >= 1.0 {
        return weights.len();
    }
    let need = top_p as f64 * total;
    let mut acc = 0.0;
    weights
        .iter()
        .position(|&w| {
            acc += w;
            acc >= need
        })
        .map_or(weights.len(), |i| i + 1)
}

/// The top-p nucleus of `scaled` (logits over the temperature): its tokens largest first
/// (ties by index) with their weights `exp(l - max)`. Only the tokens that can be in it are
/// sorted: those whose weight is at least a cutoff, lowered until their mass covers `top_p` of
/// the whole (a sort of the 49,152 logits and an exponential each were a tenth of a build).
fn nucleus(scaled: &[f32], top_p: f32) -> (Vec<(u32, f32)>, Vec<f64>) {
    let max = scaled.iter().copied().fold(f32::NEG_INFINITY, max_of);
    let weights: Vec<f64> = scaled
        .iter()
        .map(|&l| exp_nonpositive((l - max) as f64))
        .collect();
    let total: f64 = weights.iter().sum();
    // The largest weight is 1: the first cutoff keeps the tokens within ~9 nats of the top.
    let mut cutoff = 1e-4;
    loop {
        let mut cand: Vec<(u32, f32)> = (0..scaled.len())
            .filter(|&i| weights[i] >= cutoff)
            .map(|i| (i as u32, scaled[i]))
            .collect();
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let w: Vec<f64> = cand.iter().map(|&(i, _)| weights[i as usize]).collect();
        let keep = nucleus_len(&w, total, top_p);
        // Inside the candidates unless the walk ran off their end (then lower tokens may
        // belong, unless there are none).
        if keep < cand.len() || cand.len() == scaled.len() || cutoff == 0.0 {
            return (cand[..keep].to_vec(), w[..keep].to_vec());
        }
        cutoff = if cutoff > 1e-300 { cutoff * 1e-8 } else { 0.0 };
    }
}

/// `(index, value)` by value, largest first (`f32::total_cmp`), equal values by index: the one
/// order a comparison sort with that rule gives, by a stable radix sort (three passes of 11
/// bits over 49152 logits cost a fraction of a comparison sort, which was 8 % of a build's time).
fn sorted_descending(values: &[f32]) -> Vec<(u32, f32)> {
    // `total_cmp`'s order as unsigned keys (its own definition), flipped for largest first.
    let key = |v: f32| {
        let b = v.to_bits();
        !(if b >> 31 == 1 { !b } else { b | 1 << 31 })
    };
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    let mut cur: Vec<(u32, u32)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (key(v), i as u32))
        .collect();
    let mut next = vec![(0u32, 0u32); cur.len()];
    for shift in (0..32).step_by(BITS as usize) {
        let digit = |k: u32| ((k >> shift) as usize) & (BUCKETS - 1);
        let mut start = [0usize; BUCKETS];
        for &(k, _) in &cur {
            start[digit(k)] += 1;
        }
        let mut sum = 0;
        for s in start.iter_mut() {
            (*s, sum) = (sum, sum + *s);
        }
        // Stable: equal digits keep their order, so equal values stay in index order.
        for &(k, i) in &cur {
            let d = digit(k);
            next[start[d]] = (k, i);
            start[d] += 1;
        }
        std::mem::swap(&mut cur, &mut next);
    }
    cur.into_iter()
        .map(|(_, i)| (i, values[i as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_radix_order_is_the_comparison_order() {
        let mut rng = Rng::new(7);
        let mut values: Vec<f32> = (0..5000)
            .map(|_| ((rng.next_f64() - 0.5) * 80.0) as f32)
            .collect();
        // Ties, both zeros, infinities, subnormals, a NaN: every case of total_cmp.
        values.extend([
            3.5,
            3.5,
            0.0,
            -0.0,
            0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-40,
            -1e-40,
            f32::NAN,
            f32::MAX,
            f32::MIN,
        ]);
        values.extend_from_slice(&values.clone()[..100]);
        let mut want: Vec<(u32, f32)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32, v))
            .collect();
        want.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let got = sorted_descending(&values);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((g.0, g.1.to_bits()), (w.0, w.1.to_bits()));
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&mut [0.1, 2.0, 2.0, -1.0], &[]), 1);
    }

    #[test]
    fn repetition_penalty_follows_llama_cpp_rule() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            ..SamplerConfig::greedy()
        });
        let mut logits = [3.0, 2.0, -1.0];
        // Token 0 seen twice is penalised once: 3.0 / 2 = 1.5 < 2.0, so token 1 wins.
        assert_eq!(s.sample(&mut logits, &[0, 0, 2]), 1);
        assert_eq!(logits, [1.5, 2.0, -2.0]);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus_and_seed_reproduces() {
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_p: 0.5,
            repeat_penalty: 1.0,
            seed: 7,
            ..SamplerConfig::default()
        };
        // Token 2 alone holds > 50% of the mass: it is the whole nucleus.
        for _ in 0..20 {
            let mut s = Sampler::new(cfg.clone());
            assert_eq!(s.sample(&mut [0.0, 0.0, 3.0, 0.0], &[]), 2);
        }
        let draw = |seed| {
            let mut s = Sampler::new(SamplerConfig {
                temperature: 1.0,
                top_p: 1.0,
                repeat_penalty: 1.0,
                seed,
                ..SamplerConfig::default()
            });
            (0..32)
                .map(|_| s.sample(&mut [0.0; 8], &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    /// The nucleus from the cutoff search is the one a full sort finds: the same tokens in
    /// the same order with the same weights, for wide and narrow distributions and every
    /// top-p, including off (1.0) and ties.
    #[test]
    fn the_nucleus_is_the_full_sorts() {
        let mut rng = Rng::new(3);
        for spread in [0.5, 4.0, 40.0, 400.0] {
            let mut scaled: Vec<f32> = (0..3000)
                .map(|_| ((rng.next_f64() - 0.5) * spread) as f32)
                .collect();
            scaled[17] = scaled[5];
            for top_p in [0.05, 0.5, 0.9, 0.999_999, 1.0] {
                let (cand, w) = nucleus(&scaled, top_p);
                let all = sorted_descending(&scaled);
                let max = all[0].1;
                let wa: Vec<f64> = all
                    .iter()
                    .map(|&(_, l)| exp_nonpositive((l - max) as f64))
                    .collect();
                // The whole mass summed in index order, as `nucleus` sums it.
                let total = scaled
                    .iter()
                    .map(|&l| exp_nonpositive((l - max) as f64))
                    .sum();
                let keep = nucleus_len(&wa, total, top_p);
                assert_eq!(cand, all[..keep], "spread {spread}, top-p {top_p}");
                assert_eq!(w, wa[..keep], "spread {spread}, top-p {top_p}");
            }
        }
    }
}
