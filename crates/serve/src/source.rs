//! What the dashboard shows: SOURCE (a sweep file or a database, as for `report`) resolved once,
//! the database opened afresh, read-only, for every look at it, and the run folders whose
//! files may be served.
//!
//! A fresh read-only open per request costs a millisecond and is what keeps the server right
//! when `collect` (or a new `run`) replaces the file: a connection held open would keep reading
//! the old, unlinked inode.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::Value;

use loopscale_analysis::is_database;
use loopscale_store::{RunRow, Store};
use loopscale_sweep::Sweep;

/// SOURCE, resolved.
pub struct Source {
    /// The database, its sweep and name, the tuned keys: exactly what `report` would read.
    pub report: loopscale_report::Source,
    /// A sweep file's planned runs and axes (`None` for a database: every run in it).
    pub sweep: Option<Sweep>,
}

/// A run as the overview lists it: its registered row if any, its label and axis values.
pub struct Listed {
    pub key: String,
    pub row: Option<RunRow>,
    /// Axis values in the order of [`Source::axes`].
    pub axes: Vec<String>,
    /// `variant d_model=64 …`: a short name for tables and legends.
    pub label: String,
}

impl Source {
    /// Resolves SOURCE as `report` does, except that a sweep file whose database does not exist
    /// yet is accepted (the page says so until the first `run` creates it); `db` replaces a
    /// sweep file's own database (as `run --db` and `status --db` do).
    pub fn resolve(path: &Path, db: Option<&Path>) -> Result<Source> {
        if !path.exists() {
            bail!(
                "{}: no such file (give a sweep file or its database)",
                path.display()
            );
        }
        if is_database(path) {
            if let Some(db) = db {
                bail!(
                    "{}: --db {} is for a sweep file; SOURCE is already a database",
                    path.display(),
                    db.display()
                );
            }
            return Ok(Source {
                report: loopscale_report::resolve(path, &[])?,
                sweep: None,
            });
        }
        let mut sweep = Sweep::load(path)?;
        if let Some(db) = db {
            sweep.db = db.to_path_buf();
        }
        let report = loopscale_report::Source {
            db: sweep.db.clone(),
            sweep: Some(sweep.name.clone()),
            name: sweep.name.clone(),
            tune: sweep.analysis.tune.clone(),
            current: Some(sweep.runs.iter().map(|r| r.key.clone()).collect()),
        };
        Ok(Source {
            report,
            sweep: Some(sweep),
        })
    }

    pub fn db(&self) -> &Path {
        &self.report.db
    }

    pub fn name(&self) -> &str {
        &self.report.name
    }

    /// The database, opened read-only (never a write lock; WAL readers wait on busy writers).
    pub fn open(&self) -> Result<Store> {
        if !self.db().exists() {
            bail!(
                "{}: no database yet; start the sweep (`loopscale run {}`) and this page fills in",
                self.db().display(),
                self.sweep.as_ref().map_or_else(
                    || self.db().display().to_string(),
                    |s| s.path.display().to_string()
                )
            );
        }
        Ok(Store::open_read_only(self.db())?)
    }

    /// `results/x.runs/<key>`: a run's folder (checkpoints, run store, final weights).
    pub fn run_dir(&self, key: &str) -> PathBuf {
        loopscale_engine::run_dir(self.db(), key)
    }

    /// The runs to show, in the sweep file's order (its runs not yet registered included, then
    /// registered runs that left the file), or, for a database, every run of every sweep in it
    /// in registration order; with the keys that vary across them.
    pub fn list(&self, store: &Store) -> Result<(Vec<String>, Vec<Listed>)> {
        let mut rows: Vec<RunRow> = match &self.sweep {
            Some(sweep) => store.runs(&sweep.name)?,
            None => {
                let mut all = Vec::new();
                for name in store.sweep_names()? {
                    all.extend(store.runs(&name)?);
                }
                all
            }
        };
        if let Some(sweep) = &self.sweep {
            let mut out = Vec::new();
            for run in &sweep.runs {
                let at = rows.iter().position(|r| r.key == run.key);
                out.push(Listed {
                    key: run.key.clone(),
                    row: at.map(|i| rows.swap_remove(i)),
                    axes: sweep
                        .axes
                        .iter()
                        .map(|a| {
                            run.varying
                                .iter()
                                .find(|(k, _)| k == a)
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default()
                        })
                        .collect(),
                    label: run.label(),
                });
            }
            // Runs of the sweep no longer in its file: kept in the database, shown last.
            for row in rows {
                out.push(Listed {
                    key: row.key.clone(),
                    label: format!("{} (no longer in the sweep file)", row.key),
                    axes: vec![String::new(); sweep.axes.len()],
                    row: Some(row),
                });
            }
            return Ok((sweep.axes.clone(), out));
        }
        let flat: Vec<Vec<(String, String)>> = rows
            .iter()
            .map(|r| flatten(&serde_json::to_value(&r.config).unwrap_or(Value::Null)))
            .collect();
        let axes = varying_keys(&flat);
        let out = rows
            .into_iter()
            .zip(flat)
            .map(|(row, flat)| {
                let value = |axis: &str| {
                    flat.iter()
                        .find(|(k, _)| k == axis)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_else(|| "-".into())
                };
                let axes_values: Vec<String> = axes.iter().map(|a| value(a)).collect();
                let mut label: Vec<String> = row.variant.iter().cloned().collect();
                label.extend(
                    axes.iter()
                        .zip(&axes_values)
                        .map(|(a, v)| format!("{}={v}", a.rsplit('.').next().unwrap_or(a))),
                );
                Listed {
                    key: row.key.clone(),
                    label: if label.is_empty() {
                        row.key.clone()
                    } else {
                        label.join(" ")
                    },
                    axes: axes_values,
                    row: Some(row),
                }
            })
            .collect();
        Ok((axes, out))
    }
}

/// A configuration's leaves as `dotted.key = value` (strings unquoted), in document order.
pub fn flatten(value: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            Value::String(s) => out.push((prefix.to_string(), s.clone())),
            Value::Null => {}
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

/// Keys whose values are not the same in every configuration, in first-seen order.
fn varying_keys(flat: &[Vec<(String, String)>]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    for config in flat {
        for (k, _) in config {
            if seen.insert(k.clone()) {
                order.push(k.clone());
            }
        }
    }
    order
        .into_iter()
        .filter(|k| {
            let values: BTreeSet<Option<&String>> = flat
                .iter()
                .map(|c| c.iter().find(|(key, _)| key == k).map(|(_, v)| v))
                .collect();
            values.len() > 1
        })
        // A WSD branch's parent key differs by construction; it is lineage, not an axis.
        .filter(|k| !k.starts_with("lineage."))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axes_of_a_database_are_the_keys_that_vary() {
        let configs = [
            serde_json::json!({"model": {"d_model": 16, "arch": "gpt"}, "seed": 0, "lineage": {"parent": "a"}}),
            serde_json::json!({"model": {"d_model": 32, "arch": "gpt"}, "seed": 0, "lineage": {"parent": "b"}}),
            serde_json::json!({"model": {"d_model": 32, "arch": "gpt", "looped": {"mean_recurrence": 4}}, "seed": 1}),
        ];
        let flat: Vec<_> = configs.iter().map(flatten).collect();
        assert_eq!(flat[0][1], ("model.arch".to_string(), "gpt".to_string()));
        assert_eq!(
            varying_keys(&flat),
            ["model.d_model", "seed", "model.looped.mean_recurrence"]
        );
    }
}
