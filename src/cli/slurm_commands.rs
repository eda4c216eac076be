//! What `run --executor slurm`, `cancel` and the Slurm part of `status` print.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{RunArgs, SlurmArgs};
use crate::engine::slurm_executor::{self as slurm, SlurmOptions, TaskState};
use crate::sweep::{SlurmSettings, Sweep, is_slurm_time};

fn settings(args: &SlurmArgs) -> anyhow::Result<SlurmSettings> {
    if let Some(t) = args.time.as_ref().filter(|t| !is_slurm_time(t)) {
        anyhow::bail!(
            "--time {t:?} is not a Slurm time limit: use MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
        );
    }
    for (name, v) in [
        ("--cpus-per-run", args.cpus_per_run),
        ("--max-parallel", args.max_parallel),
    ] {
        if v == Some(0) {
            anyhow::bail!("{name} must be at least 1");
        }
    }
    Ok(SlurmSettings {
        partition: args.partition.clone(),
        time: args.time.clone(),
        gpus_per_run: args.gpus_per_run,
        cpus_per_run: args.cpus_per_run,
        max_parallel: args.max_parallel,
        sbatch_args: args.sbatch_args.clone(),
    })
}

/// `loopscale run FILE --executor slurm`.
pub fn run(sweep: &Sweep, db: &Path, args: &RunArgs) -> anyhow::Result<i32> {
    let mut options = SlurmOptions::resolve(&sweep.slurm, &settings(&args.slurm)?);
    options.retries = args.retries.unwrap_or(sweep.retries);
    let submission = slurm::submit(sweep, db, &options, args.dry_run)?;
    if args.dry_run {
        for (path, script, _) in &submission.arrays {
            println!("# {} (not written: --dry-run)", path.display());
            print!("{script}");
        }
        eprintln!(
            "dry run: {} run(s) would be submitted in {} array(s); {} finished, {} already queued",
            submission.keys.len(),
            submission.arrays.len(),
            submission.finished,
            submission.already_queued
        );
        return Ok(0);
    }
    if submission.keys.is_empty() {
        println!(
            "nothing to submit: {} run(s) finished, {} held by tasks still in the queue",
            submission.finished, submission.already_queued
        );
    } else {
        for (path, _, id) in &submission.arrays {
            println!(
                "submitted job array {} ({})",
                id.as_deref().unwrap_or("?"),
                path.display()
            );
        }
        println!(
            "{} run(s) submitted; {} finished and {} already queued were left alone",
            submission.keys.len(),
            submission.finished,
            submission.already_queued
        );
        println!(
            "follow with `loopscale status {}`; stop with `loopscale cancel {}`",
            sweep.path.display(),
            sweep.path.display()
        );
    }
    if args.wait {
        let mut last = usize::MAX;
        slurm::wait(db, |active| {
            if active.len() != last {
                last = active.len();
                eprintln!("slurm: {} task(s) queued or running", active.len());
            }
        })?;
        print_collected(&slurm::collect(sweep, db)?);
    }
    Ok(0)
}

fn print_collected(report: &slurm::CollectReport) {
    let c = &report.collected;
    println!(
        "collected {} run store(s): {} run(s) updated, {} row(s) changed",
        c.run_stores, c.runs, c.rows
    );
    if report.released > 0 {
        println!(
            "{} run(s) left the queue without recording an end; now interrupted (submit again to finish them)",
            report.released
        );
    }
    if let Some(why) = &report.queue_unreadable {
        println!(
            "note: the Slurm queue could not be read, so runs still marked running were left as they are: {why}"
        );
    }
}

/// `loopscale collect FILE`.
pub fn collect(file: &Path, db: Option<PathBuf>) -> anyhow::Result<i32> {
    let sweep = Sweep::load(file)?;
    let db = db.unwrap_or_else(|| sweep.db.clone());
    if !db.exists() {
        anyhow::bail!(
            "{}: no database yet; `loopscale run {}` creates it",
            db.display(),
            file.display()
        );
    }
    print_collected(&slurm::collect(&sweep, &db)?);
    Ok(0)
}

/// Before `status` shows a sweep that was submitted to Slurm, merge what its workers wrote.
/// Skipped (silently) while a local `run` holds the database: that coordinator merges itself.
pub fn collect_quietly(sweep: &Sweep, db: &Path) {
    if slurm::submitted_arrays(db).is_ok_and(|a| !a.is_empty())
        && let Err(e) = slurm::collect(sweep, db)
    {
        eprintln!("note: run stores not collected: {e:#}");
    }
}

/// `loopscale cancel FILE`.
pub fn cancel(file: &Path, db: Option<PathBuf>) -> anyhow::Result<i32> {
    let sweep = Sweep::load(file)?;
    let db = db.unwrap_or_else(|| sweep.db.clone());
    let ids = slurm::cancel(&db)?;
    if ids.is_empty() {
        println!("no Slurm task of sweep {} is queued or running", sweep.name);
    } else {
        println!(
            "cancelled job array(s) {} of sweep {}",
            ids.join(", "),
            sweep.name
        );
        println!(
            "`loopscale run {} --executor slurm` submits what is not done",
            file.display()
        );
    }
    Ok(0)
}

/// Slurm's view of each run (`RUNNING`, `PENDING (Resources)`), for `status`; empty when the
/// sweep was never submitted. The second value says where the states came from.
pub fn states(db: &Path) -> (HashMap<String, String>, Option<String>) {
    match slurm::submitted_arrays(db) {
        Ok(a) if a.is_empty() => return (HashMap::new(), None),
        Err(e) => return (HashMap::new(), Some(format!("slurm: {e:#}"))),
        Ok(_) => {}
    }
    match slurm::queue_state(db) {
        Ok(report) => {
            let mut out = HashMap::new();
            // A requeued run appears in two arrays; the live task wins.
            let mut tasks: Vec<&TaskState> = report.tasks.iter().collect();
            tasks.sort_by_key(|t| t.active());
            for t in tasks {
                let shown = if t.reason.is_empty() || t.reason == "None" {
                    format!("{} ({}_{})", t.state, t.job_id, t.task)
                } else {
                    format!("{} ({}_{}: {})", t.state, t.job_id, t.task, t.reason)
                };
                out.insert(t.key.clone(), shown);
            }
            let note = match report.sacct_unavailable {
                None => "slurm: states from squeue and sacct".to_string(),
                Some(why) => format!(
                    "slurm: states from squeue only (sacct unavailable: {}); a task that has left the queue shows its database state",
                    why.rsplit("): ").next().unwrap_or("").trim()
                ),
            };
            (out, Some(note))
        }
        Err(e) => (
            HashMap::new(),
            Some(format!("slurm: cannot read the queue: {e:#}")),
        ),
    }
}
