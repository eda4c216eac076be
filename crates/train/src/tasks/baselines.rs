//! The reference estimators every in-context regression error is plotted against (Garg et al.
//! 2022): each predicts `y` at a query `x` from the `k` pairs before it, with no training.
//!
//! - `least_squares`: the minimum-norm least-squares `w` (the pseudo-inverse); exact once
//!   `k ≥ d` on noiseless prompts;
//! - `averaging`: `w = (1/k) Σ y_i x_i`, unbiased for `w` when `x ~ N(0, I)`;
//! - `knn3`: the mean `y` of the 3 nearest points (all of them while `k < 3`).
//!
//! Each predicts 0 with no pairs, so every error starts at the zero estimator's, `E[y²] = d`.

/// A reference estimator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Estimator {
    LeastSquares,
    Averaging,
    Knn3,
}

impl Estimator {
    pub const ALL: [Estimator; 3] = [
        Estimator::LeastSquares,
        Estimator::Averaging,
        Estimator::Knn3,
    ];

    /// The name stored in `icl_errors.estimator`.
    pub fn name(self) -> &'static str {
        match self {
            Estimator::LeastSquares => "least_squares",
            Estimator::Averaging => "averaging",
            Estimator::Knn3 => "knn3",
        }
    }

    /// The prediction at `query` from the pairs `(xs[i], ys[i])`.
    pub fn predict(self, xs: &[Vec<f64>], ys: &[f64], query: &[f64]) -> f64 {
        if xs.is_empty() {
            return 0.0;
        }
        match self {
            Estimator::LeastSquares => dot(&least_squares(xs, ys), query),
            Estimator::Averaging => {
                let k = xs.len() as f64;
                let w: Vec<f64> = (0..query.len())
                    .map(|c| xs.iter().zip(ys).map(|(x, y)| x[c] * y).sum::<f64>() / k)
                    .collect();
                dot(&w, query)
            }
            Estimator::Knn3 => {
                let mut by_distance: Vec<(f64, f64)> = xs
                    .iter()
                    .zip(ys)
                    .map(|(x, &y)| (x.iter().zip(query).map(|(a, b)| (a - b).powi(2)).sum(), y))
                    .collect();
                by_distance.sort_by(|a, b| a.0.total_cmp(&b.0));
                let near = &by_distance[..by_distance.len().min(3)];
                near.iter().map(|(_, y)| y).sum::<f64>() / near.len() as f64
            }
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The minimum-norm least-squares solution of `X w = y` (`X` is `k × d`): `Xᵀ (X Xᵀ)⁻¹ y` when
/// `k ≤ d`, `(XᵀX)⁻¹ Xᵀ y` otherwise; a singular system (repeated points) gets a 1e-10 ridge.
pub fn least_squares(xs: &[Vec<f64>], ys: &[f64]) -> Vec<f64> {
    let (k, d) = (xs.len(), xs[0].len());
    if k <= d {
        let gram: Vec<Vec<f64>> = xs
            .iter()
            .map(|a| xs.iter().map(|b| dot(a, b)).collect())
            .collect();
        let alpha = solve(gram, ys.to_vec());
        (0..d)
            .map(|c| xs.iter().zip(&alpha).map(|(x, a)| x[c] * a).sum())
            .collect()
    } else {
        let gram: Vec<Vec<f64>> = (0..d)
            .map(|i| {
                (0..d)
                    .map(|j| xs.iter().map(|x| x[i] * x[j]).sum())
                    .collect()
            })
            .collect();
        let rhs = (0..d)
            .map(|i| xs.iter().zip(ys).map(|(x, y)| x[i] * y).sum())
            .collect();
        solve(gram, rhs)
    }
}

/// Solves the symmetric positive (semi)definite system `a x = b` by LU with partial pivoting;
/// when a pivot vanishes (below 1e-12 of the largest diagonal entry, or 1), the system is solved
/// again with a 1e-10 ridge on the diagonal.
fn solve(a: Vec<Vec<f64>>, b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    let scale = (0..n).map(|i| a[i][i].abs()).fold(0.0, f64::max).max(1.0);
    let mut m = nalgebra::DMatrix::from_fn(n, n, |i, j| a[i][j]);
    let b = nalgebra::DVector::from_vec(b);
    let singular = |lu: &nalgebra::LU<f64, nalgebra::Dyn, nalgebra::Dyn>| {
        lu.u().diagonal().iter().any(|p| p.abs() < 1e-12 * scale)
    };
    let mut lu = m.clone().lu();
    if singular(&lu) {
        for i in 0..n {
            m[(i, i)] += 1e-10 * scale;
        }
        lu = m.lu();
    }
    match lu.solve(&b) {
        Some(x) => x.data.into(),
        None => vec![f64::NAN; n],
    }
}
