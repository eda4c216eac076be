//! The corpora a sweep's runs read, loaded once per distinct source (text or shards, tokenizer,
//! vocabulary, split), and the passes over its training text each run makes: shared by `plan`,
//! `run` (which refuse runs past `[sweep] max_passes`) and `suggest` (which leaves out
//! candidates that would repeat text).

use std::collections::HashMap;

use crate::sweep::Sweep;
use crate::train::Corpus;

/// A corpus as the runs read it: its text or shards, tokenizer, vocabulary and validation split.
pub(super) fn corpus_id(data: &crate::config::DataConfig) -> (String, u64) {
    let source = format!(
        "{} {} {:?} {:?} {:?}",
        data.corpus, data.tokenizer, data.tokens, data.val_tokens, data.vocab_size
    );
    (source, data.val_fraction.to_bits())
}

pub(super) type Corpora = HashMap<(String, u64), anyhow::Result<Corpus>>;

/// Passes over its training text that a run's steps make, as the trainer reads them
/// (`train::text_passes`: exact for `data.order = "epochs"`). `None` for a task or a corpus
/// that did not load.
pub(super) fn text_passes(corpora: &Corpora, config: &crate::config::RunConfig) -> Option<f64> {
    let corpus = (config.data.task.is_lm())
        .then(|| corpora.get(&corpus_id(&config.data)))
        .flatten()
        .and_then(|c| c.as_ref().ok())?;
    Some(crate::train::text_passes(
        corpus.train_tokens(),
        config.data.seq_len,
        config.train.batch_size,
        crate::train::RunCost::of(config).steps,
        config.data.order,
    ))
}

/// Refuses a sweep with a run past its `[sweep] max_passes`, naming each such run.
pub(super) fn check_max_passes(sweep: &Sweep, corpora: &Corpora) -> anyhow::Result<()> {
    let Some(limit) = sweep.max_passes else {
        return Ok(());
    };
    let over: Vec<String> = sweep
        .runs
        .iter()
        .filter_map(|run| {
            let passes = text_passes(corpora, &run.config)?;
            (passes > limit).then(|| format!("  {} reads its text {passes:.2} times", run.key))
        })
        .collect();
    if over.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{}: {} run(s) pass over their training text more than `sweep.max_passes = {limit}` allows:\n{}\n\
         Lower their budgets (train.tokens or train.flops), train on a larger corpus, or raise max_passes.",
        sweep.path.display(),
        over.len(),
        over.join("\n")
    )
}

/// Each corpus the sweep trains on, loaded once.
pub(super) fn load_corpora(sweep: &Sweep) -> Corpora {
    let mut corpora = Corpora::new();
    // A task run draws its examples; no corpus is read.
    for run in sweep.runs.iter().filter(|r| r.config.data.task.is_lm()) {
        let data = &run.config.data;
        corpora
            .entry(corpus_id(data))
            .or_insert_with(|| Corpus::load(data, &sweep.base_dir));
    }
    corpora
}
