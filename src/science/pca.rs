//! PCA without scaling of mean-centred role vectors (docs/method.md, "Persona space").
//!
//! With n rows (roles, ~64) much fewer than dimensions (576..1536), the cheap exact route is
//! the n x n Gram matrix `G = Xc Xc^T` of the centred rows `Xc`: if `G v = lambda v`, then
//! `c = Xc^T v / sqrt(lambda)` is a unit principal axis with singular value `sqrt(lambda)`
//! and the rows' coordinates on it are `sqrt(lambda) v`. `G` is diagonalised in `f64` by
//! nalgebra's symmetric eigen-solver (a maintained one instead of our own Jacobi rotations:
//! ~60 fewer lines for +7 KB of the gzipped page).
//!
//! Conventions, matching numpy/scikit-learn: explained variance `lambda / (n - 1)`, its
//! ratio `lambda / trace(G)` (the share of the total variance). Sign: every component is
//! first made deterministic (its largest-magnitude loading positive); [`persona_pca`] then
//! flips PC1 so that the default vector's coordinate is positive.

use super::stats;
use super::vectors::PersonaVectors;
use super::{Error, Result};

/// A fitted PCA.
#[derive(Clone, Debug, PartialEq)]
pub struct Pca {
    pub n_rows: usize,
    pub dim: usize,
    /// `[dim]`: the mean that was subtracted.
    pub mean: Vec<f32>,
    /// `[k][dim]`: unit principal axes, by decreasing variance.
    pub components: Vec<f32>,
    /// `[k]`.
    pub singular_values: Vec<f32>,
    /// `[k]`: `singular_value^2 / (n_rows - 1)`.
    pub explained_variance: Vec<f32>,
    /// `[k]`: share of the total variance (all components, kept or not).
    pub explained_variance_ratio: Vec<f32>,
    /// `[n_rows][k]`: the input rows' coordinates.
    pub scores: Vec<f32>,
}

impl Pca {
    /// Fits a PCA of the `[n_rows][dim]` row-major matrix `rows`, keeping at most
    /// `max_components` components (fewer if the centred data has lower rank: at most
    /// `n_rows - 1`).
    pub fn fit(rows: &[f32], n_rows: usize, dim: usize, max_components: usize) -> Result<Self> {
        if n_rows < 2 || dim == 0 || rows.len() != n_rows * dim {
            return Err(Error::Invalid(format!(
                "PCA: need at least 2 rows of a positive dimension, got {} floats for {n_rows} x {dim}",
                rows.len()
            )));
        }
        if !rows.iter().all(|v| v.is_finite()) {
            return Err(Error::Invalid(
                "PCA: input contains a non-finite value".into(),
            ));
        }
        let mean = stats::mean_rows(rows.chunks_exact(dim), dim).expect("n_rows >= 2");
        let centred: Vec<f64> = rows
            .chunks_exact(dim)
            .flat_map(|r| r.iter().zip(&mean).map(|(&x, &m)| x as f64 - m as f64))
            .collect();
        let row = |i: usize| &centred[i * dim..(i + 1) * dim];
        let mut gram = vec![0f64; n_rows * n_rows];
        for i in 0..n_rows {
            for j in 0..=i {
                let g: f64 = row(i).iter().zip(row(j)).map(|(a, b)| a * b).sum();
                gram[i * n_rows + j] = g;
                gram[j * n_rows + i] = g;
            }
        }
        let total: f64 = (0..n_rows).map(|i| gram[i * n_rows + i]).sum();
        if total <= 0.0 {
            return Err(Error::Invalid(
                "PCA: all rows are identical, there is no variance".into(),
            ));
        }
        let (values, vectors) = symmetric_eigen(&gram, n_rows);
        let mut order: Vec<usize> = (0..n_rows).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        // Centred rows span at most n-1 dimensions; eigenvalues at rounding level are null
        // directions whose "components" would be noise.
        let floor = values[order[0]] * 1e-10;
        let keep: Vec<usize> = order
            .into_iter()
            .filter(|&i| values[i] > floor)
            .take(max_components)
            .collect();

        let k = keep.len();
        let mut components = vec![0f32; k * dim];
        let mut scores = vec![0f32; n_rows * k];
        let mut singular_values = Vec::with_capacity(k);
        for (c, &e) in keep.iter().enumerate() {
            let s = values[e].sqrt();
            // Eigenvector column e of the Gram matrix.
            let v: Vec<f64> = (0..n_rows).map(|i| vectors[i * n_rows + e]).collect();
            let mut comp = vec![0f64; dim];
            for (i, &vi) in v.iter().enumerate() {
                for (cd, &x) in comp.iter_mut().zip(row(i)) {
                    *cd += vi * x;
                }
            }
            // Deterministic sign: largest-magnitude loading positive.
            let big = comp
                .iter()
                .copied()
                .fold(0f64, |m, x| if x.abs() > m.abs() { x } else { m });
            let sign = if big < 0.0 { -1.0 } else { 1.0 };
            for (dst, x) in components[c * dim..(c + 1) * dim].iter_mut().zip(&comp) {
                *dst = (sign * x / s) as f32;
            }
            for (i, &vi) in v.iter().enumerate() {
                scores[i * k + c] = (sign * vi * s) as f32;
            }
            singular_values.push(s as f32);
        }
        let explained_variance = keep
            .iter()
            .map(|&e| (values[e] / (n_rows - 1) as f64) as f32)
            .collect();
        let explained_variance_ratio = keep.iter().map(|&e| (values[e] / total) as f32).collect();
        Ok(Self {
            n_rows,
            dim,
            mean,
            components,
            singular_values,
            explained_variance,
            explained_variance_ratio,
            scores,
        })
    }

    /// Number of components kept.
    pub fn n_components(&self) -> usize {
        self.singular_values.len()
    }

    /// Unit principal axis `i` (0 = PC1).
    pub fn component(&self, i: usize) -> &[f32] {
        &self.components[i * self.dim..(i + 1) * self.dim]
    }

    /// Input row `r`'s coordinates on every kept component.
    pub fn row_scores(&self, r: usize) -> &[f32] {
        let k = self.n_components();
        &self.scores[r * k..(r + 1) * k]
    }

    /// Coordinates of any vector: `(v - mean) . c_i` for every component.
    pub fn project(&self, v: &[f32]) -> Vec<f32> {
        let centred = stats::sub(v, &self.mean);
        (0..self.n_components())
            .map(|i| stats::dot(&centred, self.component(i)) as f32)
            .collect()
    }

    /// Flips component `i` (axis and scores); PCA components are defined up to sign.
    pub fn flip(&mut self, i: usize) {
        let (k, dim) = (self.n_components(), self.dim);
        self.components[i * dim..(i + 1) * dim]
            .iter_mut()
            .for_each(|x| *x = -*x);
        for r in 0..self.n_rows {
            self.scores[r * k + i] = -self.scores[r * k + i];
        }
    }
}

/// PCA of the role vectors at `layer` (centred on their mean, `mu_roles`), with PC1
/// oriented so the default vector projects positively; also returns the default's
/// coordinates.
pub fn persona_pca(
    pv: &PersonaVectors,
    layer: usize,
    max_components: usize,
) -> Result<(Pca, Vec<f32>)> {
    if layer >= pv.n_layers {
        return Err(Error::Invalid(format!(
            "PCA: layer {layer} out of range (n_layers {})",
            pv.n_layers
        )));
    }
    let mut pca = Pca::fit(
        &pv.role_matrix(layer),
        pv.n_roles(),
        pv.hidden,
        max_components,
    )?;
    let mut default = pca.project(pv.default_at(layer));
    if default[0] < 0.0 {
        pca.flip(0);
        default[0] = -default[0];
    }
    Ok((pca, default))
}

/// Eigen-decomposition of the symmetric `n x n` row-major matrix `a` (nalgebra's
/// symmetric QR). Returns `(eigenvalues, eigenvectors)` with eigenvector `j` in column `j` of
/// the row-major `n x n` matrix; eigenvalues are unsorted.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n, "symmetric_eigen: not n x n");
    let eig = nalgebra::DMatrix::from_row_slice(n, n, a).symmetric_eigen();
    // nalgebra stores column-major: the transpose's storage is the row-major matrix.
    (
        eig.eigenvalues.as_slice().to_vec(),
        eig.eigenvectors.transpose().as_slice().to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Fixture {
        n_rows: usize,
        n_cols: usize,
        x: Vec<f32>,
        mean: Vec<f64>,
        singular_values: Vec<f64>,
        explained_variance: Vec<f64>,
        explained_variance_ratio: Vec<f64>,
        components: Vec<f64>,
        scores: Vec<f64>,
    }

    #[test]
    fn eigen_of_a_known_matrix() {
        // [[2,1],[1,2]]: eigenvalues 1 and 3, eigenvectors (1,-1)/sqrt2 and (1,1)/sqrt2.
        let (vals, vecs) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        let mut pairs: Vec<(f64, [f64; 2])> =
            (0..2).map(|j| (vals[j], [vecs[j], vecs[2 + j]])).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!((pairs[0].0 - 1.0).abs() < 1e-14 && (pairs[1].0 - 3.0).abs() < 1e-14);
        let h = 0.5f64.sqrt();
        assert!(
            (pairs[1].1[0].abs() - h).abs() < 1e-14
                && (pairs[1].1[0] - pairs[1].1[1]).abs() < 1e-14
        );
        assert!((pairs[0].1[0] + pairs[0].1[1]).abs() < 1e-14);
    }

    #[test]
    fn eigen_of_a_rank_deficient_gram() {
        // The persona case: 64 centred rows (rank 63) of dimension 576.
        let (n, dim) = (64, 576);
        let mut seed = 99u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32
        };
        let rows: Vec<f32> = (0..n * dim).map(|_| next()).collect();
        let mean = stats::mean_rows(rows.chunks_exact(dim), dim).unwrap();
        let c: Vec<Vec<f32>> = rows
            .chunks_exact(dim)
            .map(|r| stats::sub(r, &mean))
            .collect();
        let gram: Vec<f64> = (0..n * n)
            .map(|ij| stats::dot(&c[ij / n], &c[ij % n]))
            .collect();
        let (w, _) = symmetric_eigen(&gram, n);
        let trace: f64 = (0..n).map(|i| gram[i * n + i]).sum();
        assert!((w.iter().sum::<f64>() - trace).abs() < 1e-9 * trace);
        // One null direction (the centring), at rounding level.
        let min = w.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(min.abs() < 1e-10 * trace, "{min}");
    }

    #[test]
    fn eigen_reconstructs_a_random_symmetric_matrix() {
        // A = V diag(w) V^T must hold and V must be orthogonal.
        let n = 9;
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..=i {
                let x = next();
                a[i * n + j] = x;
                a[j * n + i] = x;
            }
        }
        let (w, v) = symmetric_eigen(&a, n);
        for i in 0..n {
            for j in 0..n {
                let rec: f64 = (0..n).map(|k| v[i * n + k] * w[k] * v[j * n + k]).sum();
                assert!((rec - a[i * n + j]).abs() < 1e-13, "A[{i}][{j}]");
                let dotv: f64 = (0..n).map(|k| v[k * n + i] * v[k * n + j]).sum();
                assert!(
                    (dotv - if i == j { 1.0 } else { 0.0 }).abs() < 1e-13,
                    "V^T V [{i}][{j}]"
                );
            }
        }
    }

    /// numpy's centred SVD (scripts/make_pca_fixture.py) against our Gram + eigen route.
    /// Tolerances: the input is f32 and our outputs are f32, so agreement is to f32 rounding
    /// of O(1..15) quantities: 1e-5 relative on singular values and variances, 1e-5 absolute
    /// on unit components, 1e-4 absolute on scores (which reach ~10).
    #[test]
    fn pca_matches_numpy_svd() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/science_pca.json"
        ))
        .expect("fixture: run scripts/make_pca_fixture.py");
        let f: Fixture = serde_json::from_str(&text).unwrap();
        let k = f.singular_values.len();
        let pca = Pca::fit(&f.x, f.n_rows, f.n_cols, 64).unwrap();
        assert_eq!(pca.n_components(), k, "rank of centred 12 rows is 11");
        for (g, w) in pca.mean.iter().zip(&f.mean) {
            assert!((*g as f64 - w).abs() < 1e-6);
        }
        for i in 0..k {
            let rel = |g: f32, w: f64| ((g as f64 - w) / w).abs();
            assert!(
                rel(pca.singular_values[i], f.singular_values[i]) < 1e-5,
                "s[{i}]"
            );
            assert!(
                rel(pca.explained_variance[i], f.explained_variance[i]) < 1e-5,
                "var[{i}]"
            );
            assert!(
                rel(
                    pca.explained_variance_ratio[i],
                    f.explained_variance_ratio[i]
                ) < 1e-5,
                "ratio[{i}]"
            );
            let want = &f.components[i * f.n_cols..(i + 1) * f.n_cols];
            let got = pca.component(i);
            // Same axis up to sign: align on the dot product's sign.
            let sign = if stats::dot(got, &want.iter().map(|&x| x as f32).collect::<Vec<_>>()) < 0.0
            {
                -1.0
            } else {
                1.0
            };
            for (g, w) in got.iter().zip(want) {
                assert!((sign * *g as f64 - w).abs() < 1e-5, "component {i}");
            }
            for r in 0..f.n_rows {
                let (g, w) = (pca.row_scores(r)[i] as f64, f.scores[r * k + i]);
                assert!((sign * g - w).abs() < 1e-4, "score[{r}][{i}]");
            }
        }
        // Projecting the inputs reproduces their scores.
        let p = pca.project(&f.x[..f.n_cols]);
        for (a, b) in p.iter().zip(pca.row_scores(0)) {
            assert!((a - b).abs() < 1e-4);
        }
    }

    #[test]
    fn points_on_a_line_have_one_component() {
        // Rows c + t_i d with d = (1,2,2)/3: PC1 = ±d, ratio 1, no second component.
        let d = [1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0];
        let ts = [-2.0f32, 0.5, 1.0, 4.0, -1.5];
        let rows: Vec<f32> = ts
            .iter()
            .flat_map(|&t| {
                d.iter()
                    .enumerate()
                    .map(move |(j, &dj)| 10.0 * j as f32 + t * dj)
            })
            .collect();
        let pca = Pca::fit(&rows, ts.len(), 3, 5).unwrap();
        assert_eq!(pca.n_components(), 1);
        assert!((pca.explained_variance_ratio[0] - 1.0).abs() < 1e-6);
        assert!((stats::cosine(pca.component(0), &d).abs() - 1.0).abs() < 1e-6);
        // Largest loading positive -> +d exactly, so scores are t - mean(t).
        let tm = ts.iter().sum::<f32>() / ts.len() as f32;
        for (i, &t) in ts.iter().enumerate() {
            assert!((pca.row_scores(i)[0] - (t - tm)).abs() < 1e-5);
        }
        // variance of t with ddof 1
        let var = ts.iter().map(|t| (t - tm).powi(2)).sum::<f32>() / 4.0;
        assert!((pca.explained_variance[0] - var).abs() < 1e-4);
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        assert!(Pca::fit(&[1.0, 2.0], 1, 2, 3).is_err());
        assert!(Pca::fit(&[1.0, 2.0, 1.0, 2.0], 2, 2, 3).is_err());
        assert!(Pca::fit(&[1.0, 2.0, 3.0], 2, 2, 3).is_err());
        assert!(Pca::fit(&[1.0, f32::INFINITY, 3.0, 4.0], 2, 2, 3).is_err());
    }
}
