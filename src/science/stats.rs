//! Small vector statistics on `f32` slices, accumulating in `f64`.
//!
//! Residual-stream vectors are a few hundred to a few thousand `f32`s and the means run over
//! thousands of tokens, so every sum here is carried in `f64` and rounded to `f32` once at
//! the end. Functions that take two slices require equal lengths: callers validate shapes
//! of outside data first (and return [`super::Error`]), so a mismatch here is a bug and
//! panics like `copy_from_slice` does.

/// `a . b`, summed in `f64`.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot: length mismatch");
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Euclidean norm `|a|`, summed in `f64`.
pub fn norm(a: &[f32]) -> f64 {
    a.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt()
}

/// Cosine similarity `a.b / (|a| |b|)`. Returns 0 when either vector is zero, so that a
/// degenerate input reads as "no agreement" in reports instead of a NaN (JSON has no NaN).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot(a, b) / (na * nb)
}

/// `a - b` element-wise.
pub fn sub(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "sub: length mismatch");
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// `a / |a|`, or `None` for the zero vector (or one whose norm is not finite).
pub fn normalized(a: &[f32]) -> Option<Vec<f32>> {
    let n = norm(a);
    if n == 0.0 || !n.is_finite() {
        return None;
    }
    Some(a.iter().map(|&x| (x as f64 / n) as f32).collect())
}

/// Streaming mean of equal-length vectors with `f64` accumulators.
#[derive(Clone, Debug)]
pub struct RunningMean {
    sum: Vec<f64>,
    weight: f64,
}

impl RunningMean {
    pub fn new(len: usize) -> Self {
        Self {
            sum: vec![0.0; len],
            weight: 0.0,
        }
    }

    /// Total weight added so far (the count, when every sample has weight 1).
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// Adds one vector with weight 1.
    pub fn add(&mut self, v: &[f32]) {
        self.add_weighted(v, 1.0);
    }

    /// Adds one vector with weight `w` (e.g. a per-rollout mean weighted by its token count).
    pub fn add_weighted(&mut self, v: &[f32], w: f64) {
        assert_eq!(v.len(), self.sum.len(), "RunningMean: length mismatch");
        for (s, &x) in self.sum.iter_mut().zip(v) {
            *s += w * x as f64;
        }
        self.weight += w;
    }

    /// The weighted mean, or `None` if nothing (or only zero weight) was added.
    pub fn mean(&self) -> Option<Vec<f32>> {
        if self.weight <= 0.0 {
            return None;
        }
        Some(self.sum.iter().map(|&s| (s / self.weight) as f32).collect())
    }
}

/// Mean of the rows of a row-major `[rows][len]` matrix, or `None` when there are no rows.
pub fn mean_rows<'a>(rows: impl IntoIterator<Item = &'a [f32]>, len: usize) -> Option<Vec<f32>> {
    let mut m = RunningMean::new(len);
    for r in rows {
        m.add(r);
    }
    m.mean()
}

/// Percentile `q` (0..=100) of `values` with numpy's default rule (`method="linear"`):
/// sort, take the fractional index `q/100 * (n-1)` and interpolate linearly between the two
/// neighbouring order statistics. `None` for an empty input, a NaN value or `q` outside 0..=100.
pub fn percentile(values: &[f32], q: f64) -> Option<f32> {
    percentiles(values, &[q]).map(|v| v[0])
}

/// Several percentiles of the same values (sorted once); same rule as [`percentile`].
pub fn percentiles(values: &[f32], qs: &[f64]) -> Option<Vec<f32>> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    if qs.iter().any(|q| !(0.0..=100.0).contains(q)) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let last = (sorted.len() - 1) as f64;
    Some(
        qs.iter()
            .map(|&q| {
                let pos = q / 100.0 * last;
                let lo = pos.floor() as usize;
                let hi = pos.ceil() as usize;
                let frac = pos - lo as f64;
                let (a, b) = (sorted[lo] as f64, sorted[hi] as f64);
                (a + (b - a) * frac) as f32
            })
            .collect(),
    )
}

/// The pooled within-group standard deviation: how far one value strays from its own
/// group's mean, each group's mean taken out (n - groups degrees of freedom; groups of one
/// add none). `None` without a degree of freedom.
pub fn pooled_sd<'a>(groups: impl IntoIterator<Item = &'a [f64]>) -> Option<f64> {
    let (mut ss, mut dof) = (0f64, 0usize);
    for v in groups.into_iter().filter(|v| v.len() > 1) {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        ss += v.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
        dof += v.len() - 1;
    }
    (dof > 0).then(|| (ss / dof as f64).sqrt())
}

/// The sample standard deviation (n - 1); `None` under two values.
pub fn sd(values: &[f64]) -> Option<f64> {
    pooled_sd([values])
}

/// Seeded draws for resampling: the engine's splitmix64 generator (the same on every
/// platform), with a uniform in (0, 1) so logarithms never see 0.
#[derive(Clone, Debug)]
pub struct SplitMix(crate::engine::sampler::Rng);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(crate::engine::sampler::Rng::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n
    }

    /// A standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_norm_cosine_by_hand() {
        let a = [1.0, 2.0, 2.0];
        let b = [2.0, 0.0, -1.0];
        assert_eq!(dot(&a, &b), 0.0);
        assert_eq!(norm(&a), 3.0);
        assert_eq!(cosine(&a, &b), 0.0);
        assert!((cosine(&a, &[2.0, 4.0, 4.0]) - 1.0).abs() < 1e-15);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-15);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
        assert_eq!(sub(&a, &b), vec![-1.0, 2.0, 3.0]);
        assert_eq!(normalized(&[3.0, 4.0]).unwrap(), vec![0.6, 0.8]);
        assert!(normalized(&[0.0, 0.0]).is_none());
    }

    #[test]
    fn f64_accumulation_survives_cancellation() {
        // 1e8 + 1 - 1e8 in f32 loses the 1; the f64 sum keeps it.
        assert_eq!(dot(&[1e8, 1.0, -1e8], &[1.0, 1.0, 1.0]), 1.0);
    }

    #[test]
    fn running_mean_plain_and_weighted() {
        let mut m = RunningMean::new(2);
        assert!(m.mean().is_none());
        m.add(&[1.0, 10.0]);
        m.add(&[3.0, 20.0]);
        assert_eq!(m.mean().unwrap(), vec![2.0, 15.0]);
        m.add_weighted(&[8.0, 0.0], 2.0);
        // (1 + 3 + 16) / 4 = 5, (10 + 20 + 0) / 4 = 7.5
        assert_eq!(m.mean().unwrap(), vec![5.0, 7.5]);
        assert_eq!(m.weight(), 4.0);
        let rows: [&[f32]; 2] = [&[1.0, 2.0], &[3.0, 6.0]];
        assert_eq!(mean_rows(rows, 2).unwrap(), vec![2.0, 4.0]);
    }

    #[test]
    fn standard_deviations_by_hand() {
        // np.std([2, 4, 4, 4, 5, 5, 7, 9], ddof=1) = 2.138...
        let v = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert!((sd(&v).unwrap() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(sd(&[3.0]), None);
        // Groups 1, 3 (ss 2) and 10, 14, 12 (ss 8) and 50 alone: sqrt(10 / 3).
        let groups: [&[f64]; 3] = [&[1.0, 3.0], &[10.0, 14.0, 12.0], &[50.0]];
        assert!((pooled_sd(groups).unwrap() - (10.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(pooled_sd([&[1.0][..], &[2.0][..]]), None);
    }

    #[test]
    fn percentiles_match_numpy_linear() {
        // np.percentile([3, 1, 4, 1, 5], [0, 25, 50, 75, 90, 100]) = [1, 1, 3, 4, 4.6, 5]
        let v = [3.0, 1.0, 4.0, 1.0, 5.0];
        let p = percentiles(&v, &[0.0, 25.0, 50.0, 75.0, 90.0, 100.0]).unwrap();
        let want = [1.0, 1.0, 3.0, 4.0, 4.6, 5.0];
        for (g, w) in p.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{p:?}");
        }
        // np.percentile([10, 20], 33) = 13.3
        assert!((percentile(&[20.0, 10.0], 33.0).unwrap() - 13.3).abs() < 1e-5);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0, f32::NAN], 50.0), None);
        assert_eq!(percentile(&[1.0], 101.0), None);
    }
}
