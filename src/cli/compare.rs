//! `loopscale compare`: the replicate groups of a sweep and the verdict of each comparison at
//! the resolution of the seed noise (`analysis::groups`, `fit::noise`).

use anyhow::{Result, bail};

use super::CompareArgs;
use super::table::render;
use crate::analysis::frames::Frames;
use crate::analysis::groups::{pooled_seed_sd, rank_within, replicate_groups};
use crate::store::Store;

pub fn compare(args: &CompareArgs) -> Result<i32> {
    let source = crate::report::resolve(&args.source, &[])?;
    let store = Store::open_read_only(&source.db)?;
    let sweep = args.sweep.as_deref().or(source.sweep.as_deref());
    let frames = Frames::load(&store, sweep)?;
    let groups = replicate_groups(&frames)?;
    if groups.is_empty() {
        bail!(
            "{}: no finished runs{}; train the sweep first (`loopscale run SWEEP.toml`)",
            source.db.display(),
            sweep.map(|s| format!(" of sweep {s}")).unwrap_or_default()
        );
    }
    let ranked = rank_within(&groups, &args.within);
    let pooled = pooled_seed_sd(&groups);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "groups": ranked,
                "pooled_seed_sd": pooled.map(|p| p.0),
                "pooled_df": pooled.map(|p| p.1),
            }))?
        );
        return Ok(0);
    }
    let table = crate::report::tables::groups_table(&ranked, pooled);
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
