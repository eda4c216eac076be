//! What a run trains on: a corpus ([`super::data`]) or a synthetic task ([`super::tasks`]),
//! owned ([`Dataset`]) or borrowed by the trainer ([`Data`]). Data flows one way: this module
//! uses both sources, and neither knows of it.

use std::path::Path;

use super::data::Corpus;
use super::tasks::TaskSet;
use loopscale_config::RunConfig;
use loopscale_model::Io;

/// What a run trains on: text (`data.task = "lm"`) or a synthetic task.
pub enum Dataset {
    Text(Corpus),
    Task(TaskSet),
}

impl Dataset {
    /// The corpus of `cfg.data` (resolved against `base_dir`), or its task with
    /// `ceil(train.eval_tokens / seq_len)` evaluation examples.
    pub fn load(cfg: &RunConfig, base_dir: &Path) -> anyhow::Result<Dataset> {
        Ok(if cfg.data.task.is_lm() {
            Dataset::Text(Corpus::load(&cfg.data, base_dir)?)
        } else {
            let examples = (cfg.train.eval_tokens as usize).div_ceil(cfg.data.seq_len.max(1));
            Dataset::Task(TaskSet::new(&cfg.data, examples)?)
        })
    }
}

/// A borrowed [`Dataset`]: what the trainer takes (`&Corpus`, `&TaskSet` or `&Dataset`).
#[derive(Clone, Copy)]
pub enum Data<'a> {
    Text(&'a Corpus),
    Task(&'a TaskSet),
}

impl<'a> From<&'a Corpus> for Data<'a> {
    fn from(c: &'a Corpus) -> Self {
        Data::Text(c)
    }
}

impl<'a> From<&'a TaskSet> for Data<'a> {
    fn from(t: &'a TaskSet) -> Self {
        Data::Task(t)
    }
}

impl<'a> From<&'a Dataset> for Data<'a> {
    fn from(d: &'a Dataset) -> Self {
        match d {
            Dataset::Text(c) => Data::Text(c),
            Dataset::Task(t) => Data::Task(t),
        }
    }
}

impl Data<'_> {
    /// The model's ends: the byte vocabulary, or the task's.
    pub fn io(&self) -> Io {
        match self {
            Data::Text(c) => Io::Tokens {
                vocab: c.vocab_size(),
            },
            Data::Task(t) => t.io(),
        }
    }

    /// The loss of knowing nothing: a uniform guess over the vocabulary (ln V), or for
    /// regression the zero predictor's (`d + σ²`); the divergence rule's floor.
    pub fn trivial_loss(&self) -> f64 {
        match self {
            Data::Text(c) => (c.vocab_size() as f64).ln(),
            Data::Task(t) => t.trivial_loss(),
        }
    }
}
