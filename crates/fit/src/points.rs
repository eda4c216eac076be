//! The observations a fit consumes: one row per trained (or evaluated) model, with the
//! optional columns each law needs, and the row selections the procedures apply
//! (Epoch's drop of the highest-loss points, subsets, the compute frontier).

use anyhow::{Result, anyhow, bail};
use serde::Serialize;

/// Column-oriented points. `loss` is required; every other column is optional because
/// each law reads a different subset (N, D for chinchilla; C for compute; T for test-time).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Points {
    /// Parameters N.
    pub n: Option<Vec<f64>>,
    /// Training tokens D.
    pub d: Option<Vec<f64>>,
    /// Training FLOPs C.
    pub c: Option<Vec<f64>>,
    pub loss: Vec<f64>,
    /// Training loop count (mean recurrence μ_rec).
    pub loops: Option<Vec<f64>>,
    /// Test-time loop count T.
    pub test_loops: Option<Vec<f64>>,
    /// FLOP-budget label (iso-FLOP grouping).
    pub group: Option<Vec<String>>,
    /// Curve id (test-time fits).
    pub curve: Option<Vec<String>>,
}

fn pick<T: Clone>(col: &Option<Vec<T>>, idx: &[usize]) -> Option<Vec<T>> {
    col.as_ref()
        .map(|v| idx.iter().map(|&i| v[i].clone()).collect())
}

impl Points {
    pub fn len(&self) -> usize {
        self.loss.len()
    }
    pub fn is_empty(&self) -> bool {
        self.loss.is_empty()
    }

    /// Fail early on ragged columns rather than index out of bounds inside a fit.
    pub fn validate(&self) -> Result<()> {
        let n = self.len();
        let lens = [
            ("n", self.n.as_ref().map(Vec::len)),
            ("d", self.d.as_ref().map(Vec::len)),
            ("c", self.c.as_ref().map(Vec::len)),
            ("loops", self.loops.as_ref().map(Vec::len)),
            ("test_loops", self.test_loops.as_ref().map(Vec::len)),
            ("group", self.group.as_ref().map(Vec::len)),
            ("curve", self.curve.as_ref().map(Vec::len)),
        ];
        for (name, len) in lens {
            if let Some(len) = len
                && len != n
            {
                bail!("column {name} has {len} values, loss has {n}");
            }
        }
        Ok(())
    }

    /// The rows `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Points {
        Points {
            n: pick(&self.n, idx),
            d: pick(&self.d, idx),
            c: pick(&self.c, idx),
            loss: idx.iter().map(|&i| self.loss[i]).collect(),
            loops: pick(&self.loops, idx),
            test_loops: pick(&self.test_loops, idx),
            group: pick(&self.group, idx),
            curve: pick(&self.curve, idx),
        }
    }

    /// Remove the `k` highest-loss points. Epoch AI dropped the five highest-loss points
    /// of the Chinchilla data (small, badly-undertrained runs the law is not meant to fit).
    pub fn drop_top_loss(&self, k: usize) -> Points {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.sort_by(|&i, &j| self.loss[i].total_cmp(&self.loss[j]).then(i.cmp(&j)));
        idx.truncate(self.len().saturating_sub(k));
        idx.sort_unstable();
        self.subset(&idx)
    }

    /// N, required.
    pub fn params(&self) -> Result<Vec<f64>> {
        self.n
            .clone()
            .ok_or_else(|| anyhow!("this law needs a parameter-count (N) column"))
    }

    /// D, or C/(6N) when only N and C were recorded (the Chinchilla convention C ≈ 6ND).
    pub fn tokens(&self) -> Result<Vec<f64>> {
        match (&self.d, &self.n, &self.c) {
            (Some(d), _, _) => Ok(d.clone()),
            (None, Some(n), Some(c)) => Ok(n.iter().zip(c).map(|(n, c)| c / (6.0 * n)).collect()),
            _ => bail!("this law needs a token (D) column, or N and C to derive D = C/(6N)"),
        }
    }

    /// C, or 6ND when only N and D were recorded. Looped models should record C: their
    /// FLOPs are not 6ND (see `model::counts`).
    pub fn compute(&self) -> Result<Vec<f64>> {
        match (&self.c, &self.n, &self.d) {
            (Some(c), _, _) => Ok(c.clone()),
            (None, Some(n), Some(d)) => Ok(n.iter().zip(d).map(|(n, d)| 6.0 * n * d).collect()),
            _ => bail!("this law needs a compute (C) column, or N and D to derive C = 6ND"),
        }
    }

    /// Curve ids for test-time fits: the `curve` column, else the `group` column.
    pub fn curve_ids(&self) -> Result<&Vec<String>> {
        self.curve
            .as_ref()
            .or(self.group.as_ref())
            .ok_or_else(|| anyhow!("pooled test-time fits need a curve (or group) column"))
    }

    /// The points on the compute frontier (see [`compute_frontier`]).
    pub fn frontier(&self) -> Result<Points> {
        Ok(self.subset(&compute_frontier(&self.compute()?, &self.loss)))
    }
}

/// Indices of the compute frontier, in increasing C: the points no other point beats with
/// at most the same compute, i.e. the lower envelope of loss against C. A point is kept
/// when its loss is strictly below every loss at smaller C (ties in C keep the lowest loss).
pub fn compute_frontier(c: &[f64], loss: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..c.len()).collect();
    idx.sort_by(|&i, &j| c[i].total_cmp(&c[j]).then(loss[i].total_cmp(&loss[j])));
    let mut best = f64::INFINITY;
    let mut out = Vec::new();
    for i in idx {
        if loss[i] < best {
            best = loss[i];
            out.push(i);
        }
    }
    out
}
