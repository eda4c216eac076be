//! Stop requests (Ctrl-C, SIGTERM), counted.
//!
//! A process has one signal handler, and it belongs to the program, not to a library: the
//! `loopscale` binary installs one that calls [`Interrupts::request`] (`src/main.rs`), and the
//! coordinator and the worker only read the count. So the engine can run inside any program, or
//! twice in one process, and a program that wants Ctrl-C to simply kill it keeps that.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A shared count of stop requests; clones see the same count.
#[derive(Clone, Debug, Default)]
pub struct Interrupts(Arc<AtomicUsize>);

impl Interrupts {
    /// No request yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one more request (call it from the signal handler); returns how many there have
    /// been, this one included.
    pub fn request(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Requests so far: 0 = keep going, 1 = stop cleanly, 2 or more = stop at once.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_count() {
        let a = Interrupts::new();
        let b = a.clone();
        assert_eq!(a.count(), 0);
        assert_eq!(b.request(), 1);
        assert_eq!(a.request(), 2);
        assert_eq!(b.count(), 2);
    }
}
