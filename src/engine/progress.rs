//! Progress of a running sweep: bars on a terminal, plain timestamped lines elsewhere (logs, CI).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::store::{RunProgress, RunStatus};

/// The sweep bar counts FLOPs, so its ETA weighs big runs by their cost, not by their number.
/// FLOPs a run did before this session (up to its checkpoint) count as done from the start, so
/// a resumed sweep's ETA reflects only the work left.
pub struct Progress {
    total_runs: usize,
    finished_runs: usize,
    total_flops: f64,
    done_flops: f64,
    /// Each unfinished run with progress: its FLOPs, its token budget, and tokens trained so far.
    partial: HashMap<String, (f64, u64, u64)>,
    start: Instant,
    last_line: Instant,
    bars: Option<(MultiProgress, ProgressBar, HashMap<String, ProgressBar>)>,
}

/// Resolution of the sweep bar.
const TICKS: u64 = 10_000;

impl Progress {
    pub fn new(
        total_runs: usize,
        finished_runs: usize,
        total_flops: f64,
        done_flops: f64,
        plain: bool,
    ) -> Progress {
        let bars = (!plain && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let sweep = multi.add(ProgressBar::new(TICKS));
            sweep.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30}] {percent:>3}% of FLOPs · {msg} · ETA {eta}",
                )
                .unwrap()
                .progress_chars("=> "),
            );
            sweep.set_prefix("sweep");
            (multi, sweep, HashMap::new())
        });
        let mut p = Progress {
            total_runs,
            finished_runs,
            total_flops: total_flops.max(1.0),
            done_flops,
            partial: HashMap::new(),
            start: Instant::now(),
            last_line: Instant::now(),
            bars,
        };
        p.message(&format!(
            "{} runs, {} already finished",
            total_runs, finished_runs
        ));
        p.redraw();
        p
    }

    fn fraction(&self) -> f64 {
        let partial: f64 = self
            .partial
            .values()
            .map(|&(f, total, done)| f * done as f64 / total.max(1) as f64)
            .sum();
        ((self.done_flops + partial) / self.total_flops).clamp(0.0, 1.0)
    }

    fn redraw(&mut self) {
        let runs = format!("runs {}/{}", self.finished_runs, self.total_runs);
        let fraction = self.fraction();
        if let Some((_, sweep, _)) = &self.bars {
            sweep.set_position((fraction * TICKS as f64) as u64);
            sweep.set_message(runs);
        }
    }

    /// A line that stays, above the bars or on its own.
    pub fn message(&self, line: &str) {
        match &self.bars {
            Some((multi, _, _)) => {
                let _ = multi.println(line);
            }
            None => eprintln!("[{:>7.1}s] {line}", self.start.elapsed().as_secs_f64()),
        }
    }

    /// An unfinished run that will resume from a checkpoint after `done_tokens` tokens. Call
    /// before any run starts.
    pub fn resumable(&mut self, key: &str, flops: f64, tokens: u64, done_tokens: u64) {
        self.partial
            .insert(key.to_string(), (flops, tokens, done_tokens.min(tokens)));
        self.redraw();
        if let Some((_, sweep, _)) = &self.bars {
            // The ETA is a rate over this session's progress: the work done before is not part of it.
            sweep.reset_eta();
        }
    }

    pub fn started(&mut self, key: &str, flops: f64, tokens: u64) {
        self.partial
            .entry(key.to_string())
            .or_insert((flops, tokens, 0));
        if let Some((multi, _, lines)) = &mut self.bars {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template("  {spinner} {prefix} {msg}").unwrap());
            bar.set_prefix(key.to_string());
            bar.set_message("starting");
            bar.enable_steady_tick(Duration::from_millis(200));
            lines.insert(key.to_string(), bar);
        } else {
            self.message(&format!("run {key} started"));
        }
        self.redraw();
    }

    pub fn update(&mut self, key: &str, p: &RunProgress) {
        let Some((_, _, done)) = self.partial.get_mut(key) else {
            return;
        };
        *done = p.tokens;
        let tokens_per_second = p.tokens as f64 / p.elapsed_seconds.max(1e-9);
        let line = format!(
            "step {} · loss {:.4} · {:.0} tok/s",
            p.step, p.train_loss, tokens_per_second
        );
        if let Some((_, _, lines)) = &self.bars {
            if let Some(bar) = lines.get(key) {
                bar.set_message(line);
            }
        } else if self.last_line.elapsed() >= Duration::from_secs(30) {
            self.last_line = Instant::now();
            self.message(&format!("run {key}: {line}"));
        }
        self.redraw();
    }

    pub fn finished(
        &mut self,
        key: &str,
        flops: f64,
        status: RunStatus,
        val_loss: Option<f64>,
        retrying: bool,
    ) {
        if let Some((_, _, lines)) = &mut self.bars
            && let Some(bar) = lines.remove(key)
        {
            bar.finish_and_clear();
        }
        // An interrupted run, or one about to be retried, is not finished: it keeps its partial
        // progress (to its checkpoint; the next update corrects it).
        if !retrying && status != RunStatus::Interrupted {
            self.partial.remove(key);
            self.finished_runs += 1;
            self.done_flops += flops;
        }
        let loss = val_loss
            .map(|v| format!(", val loss {v:.4}"))
            .unwrap_or_default();
        let retry = if retrying { " — retrying" } else { "" };
        self.message(&format!(
            "run {key} {status}{loss}{retry} ({}/{})",
            self.finished_runs, self.total_runs
        ));
        self.redraw();
    }

    pub fn finish(&mut self) {
        if let Some((_, sweep, _)) = &self.bars {
            sweep.finish_and_clear();
        }
    }
}
