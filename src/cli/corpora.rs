//! The corpora a sweep's runs read, loaded once per distinct source (text or shards, tokenizer,
//! vocabulary, split), and the training tokens a run's epochs are counted against: shared by
//! `plan` and `suggest`.

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

/// Tokens in the training split of a run's corpus: what its epochs are counted against. `None`
/// for a task (its examples are drawn afresh: it has no epochs) or a corpus that did not load.
pub(super) fn train_tokens(corpora: &Corpora, config: &crate::config::RunConfig) -> Option<f64> {
    (config.data.task.is_lm())
        .then(|| corpora.get(&corpus_id(&config.data)))
        .flatten()
        .and_then(|c| c.as_ref().ok())
        .map(|c| c.train_tokens().len() as f64)
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
