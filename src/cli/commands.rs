//! What each command does and prints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::corpora::{Corpora, check_max_passes, corpus_id, load_corpora, text_passes};
use super::table::{render, si};
use super::{Cli, Command, Executor, RunArgs};
use crate::analysis::export;
use crate::engine::progress::{FlopProgress, human_duration};
use crate::engine::resources::gib;
use crate::engine::{self, RunOptions};
use crate::store::{RunProgress, RunRow, RunStatus, Store};
use crate::sweep::Sweep;
use crate::train::{RunCost, TimeSplit, checkpoint};

/// Runs a parsed command line; returns the process exit code. `interrupts` counts the stop
/// requests (Ctrl-C, SIGTERM) the program's signal handler received: `run` and `worker` stop
/// cleanly on the first and at once on the second (see [`Command::handles_interrupts`]).
pub fn execute(cli: Cli, interrupts: &engine::Interrupts) -> anyhow::Result<i32> {
    match cli.command {
        Command::Plan { file } => plan(&file),
        Command::Run(args) => run(&args, interrupts),
        Command::Status { file, db } => status(&file, db),
        Command::Cancel { file, db } => super::slurm_commands::cancel(&file, db),
        Command::Collect { file, db } => super::slurm_commands::collect(&file, db),
        Command::Sql {
            db,
            query,
            csv,
            parquet: None,
        } => sql(&db, &query, csv),
        Command::Sql {
            db,
            query,
            parquet: Some(to),
            ..
        } => export(&db, Exported::Query(&query), &to),
        Command::Export { db, table, to } => export(&db, Exported::Table(&table), &to),
        Command::Gc { file, db, dry_run } => gc(&file, db, dry_run),
        Command::Tokenize {
            text,
            out,
            tokenizer,
            val_fraction,
        } => tokenize(&text, &out, &tokenizer, val_fraction),
        Command::Fit(args) => super::fit::fit(&args),
        Command::Compare(args) => super::compare::compare(&args),
        Command::Report(args) => report(&args),
        Command::Serve(args) => serve(&args),
        Command::Sample(args) => super::sample::sample(&args),
        Command::Suggest(args) => super::suggest::suggest(&args),
        Command::DesignBench(args) => super::design_bench::design_bench(&args),
        Command::Worker(args) => {
            let task = engine::WorkerTask {
                db: args.db,
                run_key: args.run,
                base_dir: args.base_dir,
                log_path: args.log,
            };
            let mut attempt = 0;
            let status = loop {
                match engine::run_worker(&task, interrupts) {
                    Ok(status) => break status,
                    // A stop request is not a failure to retry.
                    Err(e) if attempt < args.retries && interrupts.count() == 0 => {
                        attempt += 1;
                        eprintln!(
                            "worker: run {} failed: {e:#}; retrying ({attempt} of {})",
                            task.run_key, args.retries
                        );
                    }
                    Err(e) => return Err(e),
                }
            };
            Ok(if status == RunStatus::Interrupted {
                130
            } else {
                0
            })
        }
    }
}

fn load(file: &Path) -> anyhow::Result<Sweep> {
    let sweep = Sweep::load(file)?;
    for warning in &sweep.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(sweep)
}

fn fmt_loss(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.4}")).unwrap_or_default()
}

/// `loopscale tokenize`: a text file into a training and a validation llm.c shard, split as
/// `Corpus` splits text (by bytes, at a character boundary).
fn tokenize(text: &Path, out: &Path, tokenizer: &str, val_fraction: f64) -> anyhow::Result<i32> {
    use anyhow::Context;
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        anyhow::bail!("--val-fraction {val_fraction} must lie strictly between 0 and 1");
    }
    let tok = crate::train::Tokenizer::load(tokenizer, Path::new("."))?;
    let body = std::fs::read_to_string(text)
        .with_context(|| format!("reading {} (UTF-8 text)", text.display()))?;
    let mut cut = body.len() - (body.len() as f64 * val_fraction).floor() as usize;
    while !body.is_char_boundary(cut) {
        cut += 1;
    }
    let name = text.display().to_string();
    for (file, part) in [
        ("train_000.bin", &body[..cut]),
        ("val_000.bin", &body[cut..]),
    ] {
        let ids = tok.encode_with_progress(part, &name);
        let path = out.join(file);
        crate::train::shards::write_llmc(&path, &ids)?;
        println!(
            "{}: {} tokens ({} bytes of text, {:.3} bytes/token)",
            path.display(),
            ids.len(),
            part.len(),
            part.len() as f64 / ids.len().max(1) as f64
        );
    }
    Ok(0)
}

fn plan(file: &Path) -> anyhow::Result<i32> {
    let sweep = load(file)?;
    let corpora = load_corpora(&sweep);
    let mut columns: Vec<String> = vec!["run_key".into()];
    let has_variants = sweep.runs.iter().any(|r| r.variant.is_some());
    if has_variants {
        columns.push("variant".into());
    }
    let has_budgets = sweep.runs.iter().any(|r| r.config.train.flops.is_some());
    columns.extend(sweep.axes.iter().cloned());
    columns.extend(["params".into(), "non_emb".into()]);
    if has_budgets {
        columns.push("budget".into());
    }
    columns.extend([
        "tokens".into(),
        "flops".into(),
        "passes".into(),
        "memory".into(),
    ]);
    let mut rows = Vec::new();
    let (mut total_tokens, mut total_flops) = (0u64, 0f64);
    let (mut peak_memory, mut checkpoint_disk) = (0f64, 0f64);
    let mut repeating = Vec::new();
    for run in &sweep.runs {
        let b = RunCost::of(&run.config);
        // What training the sweep costs: a branch's shared trunk prefix is counted once, in
        // its trunk (the table lists each run's whole path).
        total_tokens += b.own_tokens;
        total_flops += b.own_flops;
        peak_memory = peak_memory.max(b.peak_memory_bytes);
        checkpoint_disk += b.checkpoint_bytes;
        let mut row = vec![run.key.clone()];
        if has_variants {
            row.push(run.variant.clone().unwrap_or_default());
        }
        for axis in &sweep.axes {
            row.push(
                run.varying
                    .iter()
                    .find(|(k, _)| k == axis)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
            );
        }
        row.extend([b.params.to_string(), b.non_embedding_params.to_string()]);
        if has_budgets {
            row.push(
                run.config
                    .train
                    .flops
                    .map(|f| format!("{f:.3e}"))
                    .unwrap_or_default(),
            );
        }
        let passes = text_passes(&corpora, &run.config);
        if passes.is_some_and(|e| e > 1.0) {
            repeating.push((run.key.clone(), passes.unwrap_or_default()));
        }
        row.extend([
            b.tokens.to_string(),
            format!("{:.3e}", b.flops),
            passes.map(|e| format!("{e:.2}")).unwrap_or_default(),
            gib(b.peak_memory_bytes),
        ]);
        rows.push(row);
    }
    println!(
        "sweep {} ({}): {} runs",
        sweep.name,
        sweep.path.display(),
        sweep.runs.len()
    );
    if !sweep.description.is_empty() {
        println!("{}", sweep.description);
    }
    println!();
    print!("{}", render(&columns, &rows));
    println!();
    println!(
        "total: {} runs, {} training tokens, {:.3e} training FLOPs",
        sweep.runs.len(),
        si(total_tokens as f64),
        total_flops
    );
    if has_budgets {
        println!(
            "budgets: a run with `train.flops` trains the whole steps nearest its budget (flops: what they cost)"
        );
    }
    let machine = engine::resources::machine_memory_bytes()
        .map(|m| format!(" (this machine: {})", gib(m)))
        .unwrap_or_default();
    println!(
        "memory: the largest run needs about {} to train{machine}; checkpoints take up to {} on disk until `loopscale gc`",
        gib(peak_memory),
        gib(checkpoint_disk)
    );
    print_lineage(&sweep);
    if sweep.collapsed > 0 {
        println!(
            "({} grid points were identical to another run once irrelevant keys were dropped, and are listed once)",
            sweep.collapsed
        );
    }
    println!("database: {}", sweep.db.display());
    print_corpora(&sweep, &corpora);
    if !repeating.is_empty() {
        let worst = repeating
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("non-empty");
        eprintln!(
            "warning: {} run(s) pass over their training text more than once (run {} {:.1} times); \
             repetition bends data-scaling exponents: use a larger corpus or smaller budgets",
            repeating.len(),
            worst.0,
            worst.1
        );
    }
    check_max_passes(&sweep, &corpora)?;
    if let Some(rate) = measured_flop_rate(&sweep.db, &sweep.name) {
        println!(
            "estimated training time at this database's measured {:.2} GFLOP/s: {} (one worker)",
            rate / 1e9,
            human_duration(total_flops / rate)
        );
    }
    Ok(0)
}

/// Each corpus the sweep trains on, with the bar a model has to clear: the entropy of its byte
/// frequencies (the loss of the best model that ignores context).
fn print_corpora(sweep: &Sweep, corpora: &Corpora) {
    let mut seen = std::collections::HashSet::new();
    for run in sweep.runs.iter().filter(|r| r.config.data.task.is_lm()) {
        let data = &run.config.data;
        let id = corpus_id(data);
        if !seen.insert(id.clone()) {
            continue;
        }
        match &corpora[&id] {
            Ok(c) => println!(
                "corpus {} ({}): {} train / {} validation tokens; unigram entropy {:.3} nats/token ({:.3} bits/byte)",
                data.tokens.as_deref().unwrap_or(&data.corpus),
                data.tokenizer,
                si(c.train_tokens().len() as f64),
                si(c.val_tokens().len() as f64),
                c.unigram_entropy_nats(),
                c.unigram_entropy_nats() / std::f64::consts::LN_2 / c.bytes_per_token()
            ),
            Err(e) => println!("corpus {}: cannot be read: {e:#}", data.corpus),
        }
    }
}

/// FLOP/s achieved by the finished runs in an existing database, if any.
fn measured_flop_rate(db: &Path, sweep: &str) -> Option<f64> {
    let store = Store::open_read_only(db).ok()?;
    let runs = store.runs(sweep).ok()?;
    let (flops, secs) = runs
        .iter()
        .filter(|r| r.status == RunStatus::Done)
        .filter_map(|r| r.wall_seconds.map(|s| (r.flops, s)))
        .fold((0.0, 0.0), |(f, s), (rf, rs)| (f + rf, s + rs));
    (secs > 0.0).then(|| flops / secs)
}

fn run(args: &RunArgs, interrupts: &engine::Interrupts) -> anyhow::Result<i32> {
    if args.jobs == 0 {
        anyhow::bail!("--jobs must be at least 1");
    }
    let sweep = load(&args.file)?;
    let db = args.db.clone().unwrap_or_else(|| sweep.db.clone());
    if args.executor == Executor::Slurm {
        return super::slurm_commands::run(&sweep, &db, args);
    }
    let a = &args.slurm;
    let slurm_only = a.partition.is_some()
        || a.time.is_some()
        || a.gpus_per_run.is_some()
        || a.cpus_per_run.is_some()
        || a.max_parallel.is_some()
        || !a.sbatch_args.is_empty();
    if args.dry_run || args.wait || slurm_only {
        anyhow::bail!(
            "--dry-run, --wait and the Slurm options (--partition, --time, --gpus-per-run, --cpus-per-run, \
             --max-parallel, --sbatch-arg) go with --executor slurm"
        );
    }
    // A bad LOOPSCALE_DEVICE is refused before any run starts (every worker would fail on it).
    crate::train::check_device_request()?;
    if sweep.max_passes.is_some() {
        check_max_passes(&sweep, &load_corpora(&sweep))?;
    }
    let options = RunOptions {
        db: db.clone(),
        jobs: args.jobs,
        retries: args.retries.unwrap_or(sweep.retries),
        plain: args.plain,
        interrupts: interrupts.clone(),
    };
    let time_before = recorded_time_split(&db, &sweep.name);
    let started = std::time::Instant::now();
    let summary = engine::run_sweep(&sweep, &options)?;
    let wall = started.elapsed().as_secs_f64();
    println!();
    print!(
        "{}",
        runs_table(&sweep, &summary.runs, &HashMap::new(), None, None)
    );
    if let Some((now, attempts)) = recorded_time_split(&db, &sweep.name) {
        let (earlier, attempts_before) = time_before.unwrap_or_default();
        if attempts > attempts_before {
            println!();
            for line in time_split_lines(&now.since(&earlier), wall, args.jobs) {
                println!("{line}");
            }
        }
    }
    let count = |s: RunStatus| summary.runs.iter().filter(|r| r.status == s).count();
    println!();
    println!(
        "{} runs: {} done ({} trained now), {} diverged, {} failed, {} unfinished",
        summary.runs.len(),
        count(RunStatus::Done),
        summary.trained,
        count(RunStatus::Diverged),
        count(RunStatus::Failed),
        count(RunStatus::Pending) + count(RunStatus::Interrupted) + count(RunStatus::Running),
    );
    println!(
        "results: {}  (query with `loopscale sql {} \"SELECT ...\"`)",
        db.display(),
        db.display()
    );
    if summary.interrupted {
        println!("interrupted: run the same command again to finish the remaining runs");
        return Ok(130);
    }
    Ok(if count(RunStatus::Failed) > 0 { 1 } else { 0 })
}

/// The sweep's summed time split and how many attempts recorded one (`None` before any has,
/// or when the database cannot be read: the split is a report, never a reason to fail).
fn recorded_time_split(db: &Path, sweep: &str) -> Option<(TimeSplit, u64)> {
    if !db.exists() {
        return None;
    }
    Store::open_read_only(db)
        .ok()?
        .sweep_time_split(Some(sweep))
        .ok()?
}

/// Where this `run`'s time went: the attempts' time by part, as shares of the time spent in
/// attempts, and the part of the workers' wall time spent outside any attempt (starting
/// workers, loading corpora, building models, merging run stores).
fn time_split_lines(t: &TimeSplit, wall: f64, jobs: usize) -> Vec<String> {
    let share = |x: f64| t.percent(x).unwrap_or(0.0);
    let parts = t.parts();
    let listed: Vec<String> = parts
        .iter()
        .map(|(what, x)| format!("{what} {:.1}%", share(*x)))
        .collect();
    // Workers' capacity over the command's wall time: what the attempts did not fill.
    let capacity = wall * jobs as f64;
    let outside_attempts = (capacity - t.total).max(0.0);
    vec![
        format!(
            "time in training attempts: {} ({}); outside training steps: {:.1}%",
            human_duration(t.total),
            listed.join(", "),
            share(t.total - t.steps)
        ),
        format!(
            "time outside attempts: {:.1}% of {} × {jobs} job(s) (worker start-up, corpora, model \
             builds, merging, idle slots)",
            if capacity > 0.0 {
                100.0 * outside_attempts / capacity
            } else {
                0.0
            },
            human_duration(wall)
        ),
    ]
}

/// One row per run with its outcome, in the sweep file's order.
/// `live` holds the newest logged step of runs still training, shown instead of `steps_done`;
/// `db` (when given) adds each run's newest checkpoint step; `slurm` (when given) a column of
/// Slurm states beside the database's.
fn runs_table(
    sweep: &Sweep,
    rows: &[RunRow],
    live: &HashMap<String, u64>,
    db: Option<&Path>,
    slurm: Option<&HashMap<String, String>>,
) -> String {
    let mut columns: Vec<String> = vec!["run_key".into()];
    columns.extend(sweep.axes.iter().cloned());
    columns.extend(["status", "attempts", "steps"].map(String::from));
    if db.is_some() {
        columns.push("ckpt".into());
    }
    columns.extend(["val_loss", "val_bpb", "wall_s", "tok/s", "error"].map(String::from));
    if slurm.is_some() {
        columns.push("slurm".into());
    }
    let mut out = Vec::new();
    for run in &sweep.runs {
        let Some(row) = rows.iter().find(|r| r.key == run.key) else {
            continue;
        };
        let mut line = vec![run.key.clone()];
        for axis in &sweep.axes {
            line.push(
                run.varying
                    .iter()
                    .find(|(k, _)| k == axis)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
            );
        }
        let steps = RunCost::of(&run.config).steps;
        let done = live.get(&row.key).copied().or(row.steps_done).unwrap_or(0);
        line.extend([
            row.status.to_string(),
            row.attempts.to_string(),
            format!("{done}/{steps}"),
        ]);
        if let Some(db) = db {
            let newest = checkpoint::list(&engine::run_dir(db, &row.key))
                .first()
                .map(|c| c.step.to_string());
            line.push(newest.unwrap_or_default());
        }
        line.extend([
            fmt_loss(row.final_val_loss),
            fmt_loss(row.final_val_bpb),
            row.wall_seconds
                .map(|s| format!("{s:.1}"))
                .unwrap_or_default(),
            row.tokens_per_second
                .map(|s| format!("{s:.0}"))
                .unwrap_or_default(),
            row.error
                .as_deref()
                .map(|e| e.lines().next().unwrap_or("").chars().take(60).collect())
                .unwrap_or_default(),
        ]);
        if let Some(states) = slurm {
            line.push(states.get(&run.key).cloned().unwrap_or_default());
        }
        out.push(line);
    }
    render(&columns, &out)
}

/// Runs built on runs, as a tree (which run starts from which, at which step), and what
/// sharing saves: the sweep's FLOPs as trained against those of the same runs trained alone.
fn print_lineage(sweep: &Sweep) {
    let children = |parent: &str| -> Vec<&crate::sweep::PlannedRun> {
        sweep
            .runs
            .iter()
            .filter(|r| r.config.parent() == Some(parent))
            .collect()
    };
    let roots: Vec<_> = sweep
        .runs
        .iter()
        .filter(|r| r.config.parent().is_none() && !children(&r.key).is_empty())
        .collect();
    if roots.is_empty() {
        return;
    }
    println!();
    println!(
        "runs built on runs (each child starts from its parent's checkpoint at the step shown):"
    );
    fn describe(run: &crate::sweep::PlannedRun) -> String {
        let steps = RunCost::of(&run.config).steps;
        let role = run
            .config
            .lineage
            .as_ref()
            .map(|l| l.role.as_str())
            .unwrap_or("run");
        format!("{} {role} {} ({steps} steps)", run.key, run.label())
    }
    fn walk<'a>(
        run: &'a crate::sweep::PlannedRun,
        prefix: &str,
        children: &dyn Fn(&str) -> Vec<&'a crate::sweep::PlannedRun>,
    ) {
        let kids = children(&run.key);
        for (i, kid) in kids.iter().enumerate() {
            let last = i + 1 == kids.len();
            let at = match kid.config.lineage.as_ref().and_then(|l| l.parent_step) {
                Some(step) => format!("from step {step}"),
                None => "from its end".into(),
            };
            println!(
                "{prefix}{} {at}: {}",
                if last { "└─" } else { "├─" },
                describe(kid)
            );
            walk(
                kid,
                &format!("{prefix}{}", if last { "   " } else { "│  " }),
                children,
            );
        }
    }
    for root in roots {
        println!("  {}", describe(root));
        walk(root, "  ", &children);
    }
    if !sweep.runs.iter().any(|r| r.config.is_trunk()) {
        return;
    }
    let shared: f64 = sweep
        .runs
        .iter()
        .map(|r| RunCost::of(&r.config).own_flops)
        .sum();
    let alone: f64 = sweep
        .runs
        .iter()
        .filter(|r| !r.config.is_trunk())
        .map(|r| RunCost::of(&r.config).flops)
        .sum();
    println!(
        "compute: {shared:.3e} training FLOPs with the trunks shared, {alone:.3e} if every run trained alone \
         ({:.2}x, {:.0}% saved)",
        alone / shared.max(f64::MIN_POSITIVE),
        100.0 * (1.0 - shared / alone.max(f64::MIN_POSITIVE))
    );
}

fn status(file: &Path, db: Option<PathBuf>) -> anyhow::Result<i32> {
    let sweep = load(file)?;
    let db = db.unwrap_or_else(|| sweep.db.clone());
    if !db.exists() {
        println!(
            "sweep {}: {} runs, none started (no database at {} yet; `loopscale run {}` starts it)",
            sweep.name,
            sweep.runs.len(),
            db.display(),
            file.display()
        );
        return Ok(0);
    }
    super::slurm_commands::collect_quietly(&sweep, &db);
    let store = Store::open_read_only(&db)?;
    let rows = store
        .runs(&sweep.name)
        .with_context(|| format!("reading {}", db.display()))?;
    let mut live = HashMap::new();
    for r in rows.iter().filter(|r| r.status == RunStatus::Running) {
        if let Some(p) = store.progress(&r.key)? {
            live.insert(r.key.clone(), p);
        }
    }
    let live_steps = live.iter().map(|(k, p)| (k.clone(), p.step)).collect();
    let (slurm_states, slurm_note) = super::slurm_commands::states(&db);
    print!(
        "{}",
        runs_table(
            &sweep,
            &rows,
            &live_steps,
            Some(&db),
            slurm_note.is_some().then_some(&slurm_states)
        )
    );
    let planned: std::collections::HashSet<&str> =
        sweep.runs.iter().map(|r| r.key.as_str()).collect();
    let known: std::collections::HashSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let not_started = sweep
        .runs
        .iter()
        .filter(|r| !known.contains(r.key.as_str()))
        .count();
    let orphaned: Vec<&RunRow> = rows
        .iter()
        .filter(|r| !planned.contains(r.key.as_str()))
        .collect();
    let count = |s: RunStatus| {
        rows.iter()
            .filter(|r| planned.contains(r.key.as_str()) && r.status == s)
            .count()
    };
    println!();
    println!(
        "{} runs: {} done, {} running, {} pending, {} interrupted, {} failed, {} diverged, {} blocked, {} not yet registered",
        sweep.runs.len(),
        count(RunStatus::Done),
        count(RunStatus::Running),
        count(RunStatus::Pending),
        count(RunStatus::Interrupted),
        count(RunStatus::Failed),
        count(RunStatus::Diverged),
        count(RunStatus::Blocked),
        not_started
    );
    println!("{}", eta_line(&sweep, &rows, &live));
    if let Some(note) = slurm_note {
        println!("{note}");
    }
    if !orphaned.is_empty() {
        println!(
            "{} run(s) in the database are no longer in the sweep file (kept, never deleted): {}",
            orphaned.len(),
            orphaned
                .iter()
                .map(|r| r.key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(0)
}

/// The sweep's progress in FLOPs and its ETA: [`FlopProgress`], the computation the dashboard
/// makes, over the FLOP rate one worker has achieved so far (finished runs, else the running
/// ones), with one worker and with the workers running now (runs whose status is running, as
/// the dashboard counts them).
fn eta_line(sweep: &Sweep, rows: &[RunRow], live: &HashMap<String, RunProgress>) -> String {
    let by_key: HashMap<&str, &RunRow> = rows.iter().map(|r| (r.key.as_str(), r)).collect();
    let mut progress = FlopProgress::default();
    let mut workers = 0;
    for run in &sweep.runs {
        let cost = RunCost::of(&run.config);
        match by_key.get(run.key.as_str()) {
            Some(row) => {
                if row.status == RunStatus::Running {
                    workers += 1;
                }
                progress.add(
                    &cost,
                    row.status,
                    row.wall_seconds,
                    row.steps_done,
                    live.get(&row.key),
                )
            }
            // Not registered yet: all of it is still to do.
            None => progress.total += cost.own_flops,
        }
    }
    let (total, done) = (progress.total, progress.done);
    let mut line = format!(
        "progress: {:.0}% of the sweep's FLOPs ({} of {})",
        100.0 * done / total.max(1.0),
        si(done),
        si(total)
    );
    if progress.left() == 0.0 {
        return line;
    }
    match (progress.eta_seconds(1), progress.eta_seconds(workers)) {
        (Some(one), Some(all)) => {
            line += &format!(
                "; {} FLOP/s per worker so far → ETA {} with one worker",
                si(progress.rate()),
                human_duration(one)
            );
            if workers > 1 {
                line += &format!(
                    ", {} with the {workers} workers running now",
                    human_duration(all)
                );
            }
        }
        _ => line += "; no throughput measured yet, so no ETA",
    }
    line
}

fn gc(file: &Path, db: Option<PathBuf>, dry_run: bool) -> anyhow::Result<i32> {
    let sweep = load(file)?;
    let db = db.unwrap_or_else(|| sweep.db.clone());
    let report = engine::collect_garbage(&db, &sweep.name, dry_run)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for (key, files, bytes) in &report.removed {
        println!(
            "{key}: {verb} {} checkpoint file(s), {}B",
            files.len(),
            si(*bytes as f64)
        );
    }
    println!(
        "{verb} the checkpoints of {} finished run(s): {}B {}",
        report.removed.len(),
        si(report.bytes_removed() as f64),
        if dry_run {
            "would be freed (dry run: nothing deleted)"
        } else {
            "freed"
        }
    );
    if !report.kept.is_empty() {
        println!(
            "kept the checkpoints of {} unfinished run(s) ({}B): they resume from them",
            report.kept.len(),
            si(report.kept.iter().map(|(_, b)| *b as f64).sum())
        );
    }
    Ok(0)
}

fn sql(db: &Path, query: &str, csv: bool) -> anyhow::Result<i32> {
    let store = Store::open_read_only(db)?;
    let result = store.query(query)?;
    if csv {
        print!("{}", result.to_csv());
    } else {
        print!("{}", render(&result.columns, &result.rows));
        println!(
            "({} row{})",
            result.rows.len(),
            if result.rows.len() == 1 { "" } else { "s" }
        );
    }
    Ok(0)
}

/// What `export` writes: a query's rows (`sql --parquet`) or a whole table or view (`export`).
enum Exported<'a> {
    Query(&'a str),
    Table(&'a str),
}

/// `loopscale sql --parquet` and `loopscale export`: the destination is checked before the
/// database is read, so a wrong path costs no query and writes nothing.
fn export(db: &Path, what: Exported, to: &Path) -> anyhow::Result<i32> {
    let flag = match what {
        Exported::Query(_) => "--parquet",
        Exported::Table(_) => "--to",
    };
    let format = export::Format::of_path(to, flag)?;
    if matches!(what, Exported::Query(_)) && format != export::Format::Parquet {
        anyhow::bail!(
            "--parquet {}: expected a file ending in .parquet (for CSV, print it with --csv)",
            to.display()
        );
    }
    export::check_destination(to, flag)?;
    let store = Store::open_read_only(db)?;
    let query = match what {
        Exported::Query(q) => q.to_string(),
        Exported::Table(t) => export::whole_relation(&store, t)?,
    };
    let rows = export::export_query(&store, &query, to, format)?;
    eprintln!(
        "wrote {rows} row{} to {}",
        if rows == 1 { "" } else { "s" },
        to.display()
    );
    Ok(0)
}

/// `loopscale report`: progress on stderr, the report's path on stdout.
fn report(args: &super::ReportArgs) -> anyhow::Result<i32> {
    let started = std::time::Instant::now();
    let source = crate::report::resolve(&args.source, &args.tune)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::report::default_out(&source));
    eprintln!("report: reading {}", source.db.display());
    let path = crate::report::write(&source, &out, args.format.into())?;
    eprintln!(
        "report: written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("{}", path.display());
    Ok(0)
}

/// `loopscale serve`: the URL on stdout, the warnings on stderr, then serve until Ctrl-C.
fn serve(args: &super::ServeArgs) -> anyhow::Result<i32> {
    let server = crate::serve::Server::start(&crate::serve::Options {
        source: args.source.clone(),
        db: args.db.clone(),
        bind: args.bind,
        port: args.port,
    })?;
    if !args.bind.is_loopback() {
        eprintln!(
            "serve: WARNING: listening on {}, not only on this machine: the pages have no \
             authentication, and anyone who can reach this address can read every run and query \
             the database. Use the default --bind 127.0.0.1 (and `ssh -L`) unless the network is yours.",
            args.bind
        );
    }
    eprintln!(
        "serve: reading {} (read-only); Ctrl-C stops",
        server.db().display()
    );
    println!("{}", server.url());
    server.wait();
    Ok(0)
}
