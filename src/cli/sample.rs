//! `loopscale sample`: text from a finished run's final weights, a token at a time through the
//! model's KV caches (`model::generate`), at any loop count for a looped model.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::Device;

use super::SampleArgs;
use crate::analysis::source::is_database;
use crate::config::Task;
use crate::engine;
use crate::model::generate::{Sampling, generate};
use crate::model::recast::load_params;
use crate::store::{RunStatus, Store};
use crate::sweep::Sweep;
use crate::train::{build_model, checkpoint};

pub fn sample(args: &SampleArgs) -> anyhow::Result<i32> {
    let db = if is_database(&args.source) {
        args.source.clone()
    } else {
        Sweep::load(&args.source)?.db
    };
    let store = Store::open_read_only(&db)?;
    let key = resolve_key(&store, &db, &args.run)?;
    let row = store.run(&key)?.context("run vanished from the store")?;
    if row.status != RunStatus::Done {
        bail!(
            "run {key} is {}: sampling needs a finished (`done`) run; `loopscale run` trains it",
            row.status
        );
    }
    if row.config.data.task != Task::Lm {
        bail!(
            "run {key} trains on the task `{}`, not text: `sample` writes text (its accuracy is in the `evals` table)",
            row.config.data.task.name()
        );
    }
    let weights = checkpoint::final_weights_path(&engine::run_dir(&db, &key));
    if !weights.exists() {
        bail!(
            "{}: no final weights for run {key} (runs finished before loopscale kept them have none); \
             delete its row's directory and train it again to sample from it",
            weights.display()
        );
    }
    match (&row.config.model.looped, args.loops) {
        (_, Some(0)) => bail!("--loops must be at least 1"),
        (None, Some(_)) => bail!("run {key} is a GPT: it has no loops to set (leave out --loops)"),
        _ => {}
    }
    // The run's own tokenizer encodes the prompt and decodes the text (a tokenizer.json path is
    // resolved as the sweep resolved it, against its folder; the current one when unknown).
    let tokenizer = crate::train::Tokenizer::load(&row.config.data.tokenizer, Path::new("."))
        .with_context(|| format!("loading run {key}'s tokenizer"))?;
    let prompt: Vec<u32> = tokenizer.encode(&args.prompt);
    if prompt.is_empty() {
        bail!("--prompt is empty: give at least one character to continue");
    }
    // RoPE's tables are computed, not learned: a context past the training length extrapolates.
    let mut config = row.config.clone();
    config.data.seq_len = config.data.seq_len.max(prompt.len() + args.tokens);
    let device = Device::Cpu;
    let model = build_model(&config, config.data.io(), &device)?;
    let tensors = checkpoint::load_parent_params(&weights, &device)?;
    load_params(model.params(), &tensors)
        .with_context(|| format!("{}: not the weights of run {key}", weights.display()))?;
    let sampling = Sampling {
        temperature: args.temperature,
        top_k: args.top_k,
        seed: args.seed,
    };
    let started = Instant::now();
    let out = crate::model::grad::no_grad(|| {
        generate(
            model.as_ref(),
            &prompt,
            args.tokens,
            sampling,
            args.loops,
            &device,
        )
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let ids: Vec<u32> = prompt.iter().chain(&out).copied().collect();
    let bytes = tokenizer.decode(&ids);
    let mut stdout = std::io::stdout();
    stdout.write_all(String::from_utf8_lossy(&bytes).as_bytes())?;
    writeln!(stdout)?;
    let loops = match (&row.config.model.looped, args.loops) {
        (Some(l), None) => format!(" at {} loops", l.mean_recurrence),
        (Some(_), Some(t)) => format!(" at {t} loops"),
        (None, _) => String::new(),
    };
    eprintln!(
        "sample: {} tokens from run {key}{loops} in {seconds:.2} s ({:.0} tokens/s)",
        out.len(),
        out.len() as f64 / seconds.max(1e-9)
    );
    Ok(0)
}

/// The run `given` names: its key, or a prefix of exactly one run's key.
fn resolve_key(store: &Store, db: &Path, given: &str) -> anyhow::Result<String> {
    if store.run(given)?.is_some() {
        return Ok(given.to_string());
    }
    let table = store.query("SELECT run_key FROM runs ORDER BY run_key")?;
    let matches: Vec<&String> = table
        .rows
        .iter()
        .map(|r| &r[0])
        .filter(|k| k.starts_with(given))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!(
            "{}: no run `{given}`; `loopscale status SWEEP` or `loopscale sql {} \"SELECT run_key FROM runs\"` lists them",
            db.display(),
            db.display()
        ),
        many => bail!(
            "`{given}` is the start of {} runs' keys ({}, ...): give more of it",
            many.len(),
            many.iter()
                .take(3)
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
