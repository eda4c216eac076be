//! [`Problem`]: one thing wrong with one run, naming the keys involved. The run checks
//! (`validate`, `task_checks`) return them; `mod.rs` turns the first failing run's problems into
//! a located `SweepError`. Both checkers import this module, and it imports neither.

use super::error::ErrorKind;

/// One thing wrong with one run.
#[derive(Clone, Debug)]
pub(crate) struct Problem {
    pub kind: ErrorKind,
    /// Dotted keys involved, most relevant first (the error points at the first one set in the file).
    pub keys: Vec<&'static str>,
    pub message: String,
    pub help: String,
}

pub(crate) fn problem(keys: &[&'static str], message: String, help: impl Into<String>) -> Problem {
    Problem {
        kind: ErrorKind::InvalidRun,
        keys: keys.to_vec(),
        message,
        help: help.into(),
    }
}
