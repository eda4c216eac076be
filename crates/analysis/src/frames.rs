//! The frames of one database: finished runs, their training steps and validation evaluations,
//! the compute frontier and the test-time curves, each a polars DataFrame built from rows the
//! store reads ([`Store::read_table`]).

use anyhow::{Context, Result};
use polars::prelude::{Column, DataFrame};

use super::columns::{filter_rows, strs, to_frame};
use super::labels::run_labels;
use super::run_rows::{RunConfigs, finished_runs};
use super::tasks::{AccuracyPoint, IclPoint, accuracy_points, icl_points};
use loopscale_fit::compute_frontier;
use loopscale_store::{ColumnData, Columns, Store, Table};

/// Every frame the report and the fits use, for one sweep (or every sweep in the file).
#[derive(Clone, Debug)]
pub struct Frames {
    /// One row per finished run (the `final_runs` view) plus `label`: the values that tell
    /// this run from the others (e.g. `d_model=64 tokens=131k`).
    pub runs: DataFrame,
    /// One row per logged training step of a finished run (`metrics`), with the run's `label`.
    pub steps: DataFrame,
    /// Validation evaluations at the training depth, with the run's `label`.
    pub evals: DataFrame,
    /// The compute frontier (the `compute_frontier` view).
    pub frontier: DataFrame,
    /// Test-time curves (the `test_time_curves` view), with the run's `label`.
    pub test_time: DataFrame,
    /// Loss vs loop budget per looped run and schedule (the `budget_curves` view), with the
    /// run's `label`.
    pub budget: DataFrame,
    /// Per finished looped run: `run_key` and `unrolled_params`, N(μ) at its mean recurrence
    /// ([`super::unrolled::unrolled_params`], non-embedding), NULL when its stored configuration
    /// could not be read.
    pub unrolled: DataFrame,
    /// Runs built on runs (the `lineage` view: `run_key`, `role`, `parent_run_key`,
    /// `parent_step`, `status`, `tokens`, `final_val_loss`), trunks included; empty for a
    /// store older than runs built on runs.
    pub lineage: DataFrame,
    /// LoopUS early exit per finished run and confidence threshold (`run_key`, `threshold`,
    /// `max_loops`, `mean_loops`, `val_loss`); empty for a store without `exit_evals`.
    pub exits: DataFrame,
    /// Decoding through the KV cache per finished run and loop count (`run_key`, `kind`,
    /// `variant`, `loops`, `kv_bytes_per_token`, `peak_cache_bytes`, `tokens_per_s`,
    /// `val_loss`); empty for a store without `decode_evals`.
    pub decodes: DataFrame,
    /// Task runs (p_hop, addition): accuracy at the training depth and each test-time loop count.
    pub accuracy: Vec<AccuracyPoint>,
    /// Regression runs: in-context errors by number of examples, with the baselines'.
    pub icl: Vec<IclPoint>,
    /// Each finished run's resolved configuration (`run_key`, `config_json`).
    pub configs: DataFrame,
}

/// A frame with these columns and no rows (text-typed: nothing is ever read from them).
fn empty(names: &[&str]) -> Result<DataFrame> {
    to_frame(Columns {
        names: names.iter().map(|n| n.to_string()).collect(),
        data: names.iter().map(|_| ColumnData::Text(Vec::new())).collect(),
        rows: 0,
    })
}

impl Frames {
    /// Reads every frame of `sweep` (or of all sweeps) from the store.
    pub fn load(store: &Store, sweep: Option<&str>) -> Result<Frames> {
        let read = |t: Table| -> Result<DataFrame> {
            to_frame(
                store
                    .read_table(t, sweep)
                    .with_context(|| format!("reading {t:?}"))?,
            )
        };
        let mut runs = read(Table::FinalRuns)?;
        let labels = run_labels(&runs)?;
        runs.with_column(Column::new("label".into(), labels.clone()))?;
        let keys = strs(&runs, "run_key")?;
        let label_of = |df: &DataFrame| -> Result<Column> {
            let l: Vec<Option<String>> = strs(df, "run_key")?
                .iter()
                .map(|k| keys.iter().position(|x| x == k).map(|i| labels[i].clone()))
                .collect();
            Ok(Column::new("label".into(), l))
        };
        let mut steps = read(Table::TrainingSteps)?;
        steps.with_column(label_of(&steps)?)?;
        let mut evals = read(Table::ValidationEvals)?;
        evals.with_column(label_of(&evals)?)?;
        let mut test_time = read(Table::TestTimeCurves)?;
        test_time.with_column(label_of(&test_time)?)?;
        let mut budget = read(Table::BudgetCurves)?;
        budget.with_column(label_of(&budget)?)?;
        let frontier = read(Table::ComputeFrontier)?;
        let configs = read(Table::RunConfigs)?;
        let unrolled = unrolled_frame(&runs, &configs)?;
        // Stores made before these tables existed have none of their rows.
        let lineage = read(Table::Lineage).or_else(|_| {
            empty(&[
                "run_key",
                "role",
                "parent_run_key",
                "parent_step",
                "status",
                "tokens",
                "final_val_loss",
            ])
        })?;
        let exits = read(Table::ExitEvals).or_else(|_| {
            empty(&[
                "run_key",
                "threshold",
                "max_loops",
                "mean_loops",
                "val_loss",
            ])
        })?;
        let decodes = read(Table::DecodeEvals).or_else(|_| {
            empty(&[
                "run_key",
                "kind",
                "variant",
                "loops",
                "kv_bytes_per_token",
                "peak_cache_bytes",
                "tokens_per_s",
                "val_loss",
            ])
        })?;
        Ok(Frames {
            lineage,
            exits,
            decodes,
            runs,
            steps,
            evals,
            frontier,
            test_time,
            budget,
            unrolled,
            accuracy: accuracy_points(store, sweep)?,
            icl: icl_points(store, sweep)?,
            configs,
        })
    }

    /// The frames of the runs `keep` only (a hyperparameter envelope's chosen runs): every frame
    /// filtered to them, the compute frontier recomputed among them, and labels recomputed
    /// without the columns `unlabelled` (the tuned keys, which no longer tell runs apart).
    pub fn restrict(&self, keep: &[String], unlabelled: &[&str]) -> Result<Frames> {
        let kept = |df: &DataFrame, column: &str| -> Result<DataFrame> {
            let Ok(keys) = strs(df, column) else {
                return Ok(df.clone());
            };
            let mask: Vec<bool> = keys.iter().map(|k| keep.contains(k)).collect();
            filter_rows(df, &mask)
        };
        let mut runs = kept(&self.runs, "run_key")?.drop("label")?;
        let mut for_labels = runs.clone();
        for c in unlabelled {
            if for_labels.column(c).is_ok() {
                for_labels = for_labels.drop(c)?;
            }
        }
        let labels = run_labels(&for_labels)?;
        runs.with_column(Column::new("label".into(), labels.clone()))?;
        let keys = strs(&runs, "run_key")?;
        let relabel = |df: &DataFrame| -> Result<DataFrame> {
            let mut df = kept(df, "run_key")?;
            if df.column("label").is_err() {
                return Ok(df);
            }
            let l: Vec<Option<String>> = strs(&df, "run_key")?
                .iter()
                .map(|k| keys.iter().position(|x| x == k).map(|i| labels[i].clone()))
                .collect();
            df.with_column(Column::new("label".into(), l))?;
            Ok(df)
        };
        // The frontier among the kept runs, per sweep: the runs no kept run of the same sweep
        // beats with the same or fewer FLOPs.
        let sweeps = strs(&runs, "sweep")?;
        let rows = finished_runs(&runs)?;
        let mut on_frontier = vec![false; runs.height()];
        let mut names = sweeps.clone();
        names.sort();
        names.dedup();
        for name in names {
            let idx: Vec<usize> = (0..sweeps.len()).filter(|&i| sweeps[i] == name).collect();
            let c: Vec<f64> = idx.iter().map(|&i| rows[i].flops).collect();
            let l: Vec<f64> = idx.iter().map(|&i| rows[i].loss).collect();
            for j in compute_frontier(&c, &l) {
                on_frontier[idx[j]] = true;
            }
        }
        let cols: Vec<String> = self
            .frontier
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .collect();
        let frontier = filter_rows(&runs, &on_frontier)?
            .select(cols)?
            .sort(["sweep", "flops"], Default::default())?;
        Ok(Frames {
            runs,
            steps: relabel(&self.steps)?,
            evals: relabel(&self.evals)?,
            frontier,
            test_time: relabel(&self.test_time)?,
            budget: relabel(&self.budget)?,
            unrolled: kept(&self.unrolled, "run_key")?,
            lineage: self.lineage.clone(),
            exits: kept(&self.exits, "run_key")?,
            decodes: kept(&self.decodes, "run_key")?,
            accuracy: self
                .accuracy
                .iter()
                .filter(|a| keep.contains(&a.run_key))
                .cloned()
                .collect(),
            icl: self
                .icl
                .iter()
                .filter(|a| keep.contains(&a.run_key))
                .cloned()
                .collect(),
            configs: kept(&self.configs, "run_key")?,
        })
    }

    /// Run keys in the order of the `runs` frame (increasing FLOPs).
    pub fn run_keys(&self) -> Result<Vec<String>> {
        strs(&self.runs, "run_key")
    }
}

/// N(μ) of every looped run of `runs`, from the stored configurations (see [`Frames::unrolled`]).
fn unrolled_frame(runs: &DataFrame, configs: &DataFrame) -> Result<DataFrame> {
    let configs = RunConfigs::of(configs)?;
    let mut out_keys = Vec::new();
    let mut out_n: Vec<Option<f64>> = Vec::new();
    for run in finished_runs(runs)? {
        let Some(mu) = run.mean_recurrence else {
            continue;
        };
        let n = configs
            .get(&run.key)
            .and_then(|json| super::unrolled::model_config(json).ok())
            .filter(|m| m.arch == loopscale_model::Arch::Looped)
            .map(|m| {
                super::unrolled::unrolled_params(
                    &m,
                    mu,
                    0.0,
                    super::unrolled::ParamCount::NonEmbedding,
                )
            });
        out_keys.push(run.key);
        out_n.push(n);
    }
    Ok(DataFrame::new(
        out_keys.len(),
        vec![
            Column::new("run_key".into(), out_keys),
            Column::new("unrolled_params".into(), out_n),
        ],
    )?)
}
