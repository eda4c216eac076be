//! Task results of a database (`data.task`): accuracy by effective depth and by test-time loops
//! for p-hop and addition, and in-context regression errors by number of examples. Plain rows
//! for the depth fit, the report's tables and its charts.
//!
//! Effective depth is the number of blocks a token passes through: `n_prelude + n_core·L +
//! n_coda` for a looped model at L loops (k⊗L = k·L), `n_layers` for a GPT. A store older than
//! schema version 6 has no task results: it reads as none.

use anyhow::Result;

use super::columns::{f64s, opt_f64s, strs, to_frame};
use loopscale_store::{Store, Table};

/// A model family of the depth law: looped (k⊗L) or plain (kL⊗1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Looped,
    Gpt,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Looped => "looped",
            Family::Gpt => "gpt",
        }
    }
}

/// A finished task run's accuracy at one depth.
#[derive(Clone, Debug, PartialEq)]
pub struct AccuracyPoint {
    pub run_key: String,
    pub family: Family,
    /// Blocks in the looped core, or the GPT's layers.
    pub block: usize,
    /// Loops the run trained at (1 for a GPT).
    pub trained_loops: usize,
    /// `None`: the training depth; else the test-time loop count evaluated at.
    pub test_loops: Option<usize>,
    /// Blocks a token passes through at this evaluation.
    pub effective_depth: f64,
    pub accuracy: f64,
}

/// Every finished task run's accuracy at its last evaluated step, at the training depth and
/// at each test-time loop count.
pub fn accuracy_points(store: &Store, sweep: Option<&str>) -> Result<Vec<AccuracyPoint>> {
    let Ok(columns) = store.read_table(Table::TaskAccuracy, sweep) else {
        return Ok(Vec::new()); // older than schema version 6
    };
    let f = to_frame(columns)?;
    if f.height() == 0 {
        return Ok(Vec::new());
    }
    let keys = strs(&f, "run_key")?;
    let arch = strs(&f, "arch")?;
    let n_layers = opt_f64s(&f, "n_layers")?;
    let (pre, core, coda) = (
        opt_f64s(&f, "n_prelude")?,
        opt_f64s(&f, "n_core")?,
        opt_f64s(&f, "n_coda")?,
    );
    let mu = opt_f64s(&f, "mean_recurrence")?;
    let test_loops = opt_f64s(&f, "test_loops")?;
    let accuracy = f64s(&f, "accuracy")?;
    Ok((0..f.height())
        .map(|i| {
            let looped = arch[i] == "looped";
            let test = test_loops[i].map(|t| t as usize);
            let (block, trained) = if looped {
                (
                    core[i].unwrap_or(1.0) as usize,
                    mu[i].unwrap_or(1.0) as usize,
                )
            } else {
                (n_layers[i].unwrap_or(1.0) as usize, 1)
            };
            let loops = test.unwrap_or(trained);
            let once = pre[i].unwrap_or(0.0) + coda[i].unwrap_or(0.0);
            AccuracyPoint {
                run_key: keys[i].clone(),
                family: if looped { Family::Looped } else { Family::Gpt },
                block,
                trained_loops: trained,
                test_loops: test,
                effective_depth: if looped {
                    once + (block * loops) as f64
                } else {
                    block as f64
                },
                accuracy: accuracy[i],
            }
        })
        .collect())
}

/// The points of the depth law: each run at its training depth, `(family, depth, accuracy)`.
pub fn depth_points(points: &[AccuracyPoint]) -> Vec<(Family, f64, f64)> {
    points
        .iter()
        .filter(|p| p.test_loops.is_none())
        .map(|p| (p.family, p.effective_depth, p.accuracy))
        .collect()
}

/// One in-context regression error.
#[derive(Clone, Debug, PartialEq)]
pub struct IclPoint {
    pub run_key: String,
    /// `gpt L=4`, `looped 1⊗8` (prefixed by the run's variant, if any).
    pub model: String,
    /// `model`, `least_squares`, `averaging`, `knn3`.
    pub estimator: String,
    pub test_loops: Option<usize>,
    pub n_examples: usize,
    pub error: f64,
}

/// Every finished regression run's errors, the model's and the baselines'.
pub fn icl_points(store: &Store, sweep: Option<&str>) -> Result<Vec<IclPoint>> {
    let Ok(columns) = store.read_table(Table::IclErrors, sweep) else {
        return Ok(Vec::new()); // older than schema version 6
    };
    let f = to_frame(columns)?;
    if f.height() == 0 {
        return Ok(Vec::new());
    }
    let keys = strs(&f, "run_key")?;
    let arch = strs(&f, "arch")?;
    // Empty for runs outside a [[variants]] entry.
    let variant = strs(&f, "variant")?;
    let n_layers = opt_f64s(&f, "n_layers")?;
    let mu = opt_f64s(&f, "mean_recurrence")?;
    let estimator = strs(&f, "estimator")?;
    let test_loops = opt_f64s(&f, "test_loops")?;
    let n_examples = f64s(&f, "n_examples")?;
    let error = opt_f64s(&f, "error")?;
    Ok((0..f.height())
        .filter_map(|i| {
            let shape = match arch[i].as_str() {
                "looped" => format!(
                    "looped {}⊗{}",
                    n_layers[i].unwrap_or(1.0),
                    mu[i].unwrap_or(1.0)
                ),
                _ => format!("gpt L={}", n_layers[i].unwrap_or(1.0)),
            };
            // Two variants of one shape (e.g. two training losses) stay apart.
            let model = match variant[i].as_str() {
                "" => shape,
                v => format!("{v}: {shape}"),
            };
            Some(IclPoint {
                run_key: keys[i].clone(),
                model,
                estimator: estimator[i].clone(),
                test_loops: test_loops[i].map(|t| t as usize),
                n_examples: n_examples[i] as usize,
                error: error[i]?,
            })
        })
        .collect())
}
