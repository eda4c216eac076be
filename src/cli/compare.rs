//! `loopscale compare`: the replicate groups of a sweep and the verdict of each comparison at
//! the resolution of the seed noise (`analysis::groups`, `fit::noise`).

use anyhow::{Result, bail};

use super::CompareArgs;
use super::table::render;
use crate::analysis::frames::Frames;
use crate::analysis::groups::{Metric, pooled_seed_sd, rank_within_by, replicate_groups_of};
use crate::store::Store;

pub fn compare(args: &CompareArgs) -> Result<i32> {
    let source = crate::report::resolve(&args.source, &[])?;
    let store = Store::open_read_only(&source.db)?;
    let sweep = args.sweep.as_deref().or(source.sweep.as_deref());
    let frames = Frames::load(&store, sweep)?;
    let metric = Metric::from(args.metric);
    let groups = replicate_groups_of(&frames, metric)?;
    if groups.is_empty() {
        let of_sweep = sweep.map(|s| format!(" of sweep {s}")).unwrap_or_default();
        match metric {
            Metric::ValLoss => bail!(
                "{}: no finished runs{of_sweep}; train the sweep first (`loopscale run SWEEP.toml`)",
                source.db.display()
            ),
            Metric::Accuracy => bail!(
                "{}: no finished run{of_sweep} has an accuracy (only task runs, `data.task`, measure one); \
                 compare text runs by loss (`--metric loss`, the default)",
                source.db.display()
            ),
        }
    }
    let ranked = rank_within_by(&groups, &args.within, metric);
    let pooled = pooled_seed_sd(&groups);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "groups": ranked,
                "pooled_seed_sd": pooled.map(|p| p.0),
                "pooled_df": pooled.map(|p| p.1),
                "metric": metric.words(),
            }))?
        );
        return Ok(0);
    }
    let table = crate::report::tables::groups_table(&ranked, pooled, metric);
    println!(
        "{} replicate group(s) of {} finished run(s) in {}{}",
        groups.len(),
        groups.iter().map(|g| g.stats.n).sum::<usize>(),
        source.db.display(),
        sweep.map(|s| format!(" (sweep {s})")).unwrap_or_default()
    );
    print!("{}", render(&table.header, &table.rows));
    println!("{}", table.caption);
    Ok(0)
}
