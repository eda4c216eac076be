//! Progress of a running sweep: bars on a terminal, plain timestamped lines elsewhere (logs, CI).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use loopscale_store::{RunProgress, RunStatus};
use loopscale_train::RunCost;

/// The sweep bar counts FLOPs, so its ETA weighs big runs by their cost, not by their number.
/// FLOPs a run did before this session (up to its checkpoint) count as done from the start, so
/// a resumed sweep's ETA reflects only the work left. Every count is of a run's *own* FLOPs: a
/// WSD branch's cooldown, not its trunk's prefix (the trunk counts that once).
pub struct Progress {
    total_runs: usize,
    finished_runs: usize,
    /// Runs that will not train in this invocation because a run they build on failed: not
    /// finished, not done work.
    blocked_runs: usize,
    total_flops: f64,
    done_flops: f64,
    /// Each unfinished run with progress: its cost and the tokens its path has trained so far.
    partial: HashMap<String, (RunCost, u64)>,
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
            blocked_runs: 0,
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
            .map(|(cost, done)| cost.own_flops_done(*done))
            .sum();
        ((self.done_flops + partial) / self.total_flops).clamp(0.0, 1.0)
    }

    fn redraw(&mut self) {
        let runs = self.runs_line();
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

    /// `runs 3/10` (and `, 2 blocked` when some are).
    fn runs_line(&self) -> String {
        let mut line = format!("runs {}/{}", self.finished_runs, self.total_runs);
        if self.blocked_runs > 0 {
            line += &format!(", {} blocked", self.blocked_runs);
        }
        line
    }

    /// An unfinished run that will resume from a checkpoint its path reached after
    /// `done_tokens` tokens. Call before any run starts.
    pub fn resumable(&mut self, key: &str, cost: RunCost, done_tokens: u64) {
        self.partial.insert(key.to_string(), (cost, done_tokens));
        self.redraw();
        if let Some((_, sweep, _)) = &self.bars {
            // The ETA is a rate over this session's progress: the work done before is not part of it.
            sweep.reset_eta();
        }
    }

    /// A run started; until its first update it counts as having trained what its path
    /// inherited (a branch: its trunk's prefix), i.e. none of its own work.
    pub fn started(&mut self, key: &str, cost: RunCost) {
        self.partial
            .entry(key.to_string())
            .or_insert((cost, cost.tokens - cost.own_tokens));
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
        let Some((_, done)) = self.partial.get_mut(key) else {
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
        if status == RunStatus::Blocked {
            self.partial.remove(key);
            self.blocked_runs += 1;
        } else if !retrying && status != RunStatus::Interrupted {
            self.partial.remove(key);
            self.finished_runs += 1;
            self.done_flops += flops;
        }
        let loss = val_loss
            .map(|v| format!(", val loss {v:.4}"))
            .unwrap_or_default();
        let retry = if retrying { " — retrying" } else { "" };
        self.message(&format!(
            "run {key} {status}{loss}{retry} ({})",
            self.runs_line()
        ));
        self.redraw();
    }

    pub fn finish(&mut self) {
        if let Some((_, sweep, _)) = &self.bars {
            sweep.finish_and_clear();
        }
    }
}

/// A sweep's progress in its runs' own FLOPs, and the throughput its ETA divides by: what
/// `loopscale status` and the dashboard both report, added up run by run.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlopProgress {
    /// The FLOPs of every run listed.
    pub total: f64,
    /// The FLOPs done: finished and diverged runs whole, others up to their live or
    /// checkpointed step.
    pub done: f64,
    // Throughput from finished runs (and interrupted ones with a wall time), else from live ones.
    rate_flops: f64,
    rate_secs: f64,
    live_flops: f64,
    live_secs: f64,
}

impl FlopProgress {
    /// Adds one run: its cost, its status and wall time in the store, and its newest logged step
    /// when it is training now.
    pub fn add(
        &mut self,
        cost: &RunCost,
        status: RunStatus,
        wall_seconds: Option<f64>,
        steps_done: Option<u64>,
        live: Option<&RunProgress>,
    ) {
        // Each run's own FLOPs: a WSD branch's cooldown, not its trunk's prefix again.
        let flops = cost.own_flops;
        self.total += flops;
        match status {
            RunStatus::Done | RunStatus::Diverged => {
                self.done += flops;
                if let (RunStatus::Done, Some(s)) = (status, wall_seconds) {
                    self.rate_flops += flops;
                    self.rate_secs += s;
                }
            }
            _ => {
                if let Some(p) = live {
                    let f = cost.own_flops_done(p.tokens);
                    self.done += f;
                    self.live_flops += f;
                    self.live_secs += p.elapsed_seconds;
                } else if let Some(steps) = steps_done {
                    // An interrupted run resumes from its checkpoint; count what it has done.
                    let f = cost.own_flops_done(cost.tokens_at(steps));
                    self.done += f;
                    if let Some(s) = wall_seconds.filter(|&s| s > 0.0) {
                        self.rate_flops += f;
                        self.rate_secs += s;
                    }
                }
            }
        }
    }

    /// FLOP/s per worker: over finished runs where there are any, else over live ones; 0 when
    /// nothing has been measured.
    pub fn rate(&self) -> f64 {
        if self.rate_secs > 0.0 {
            self.rate_flops / self.rate_secs
        } else if self.live_secs > 0.0 {
            self.live_flops / self.live_secs
        } else {
            0.0
        }
    }

    /// FLOPs not yet done.
    pub fn left(&self) -> f64 {
        (self.total - self.done).max(0.0)
    }

    /// Seconds left with `workers` workers at [`FlopProgress::rate`]; `None` before any rate.
    pub fn eta_seconds(&self, workers: usize) -> Option<f64> {
        let rate = self.rate();
        (rate > 0.0).then(|| self.left() / rate / workers.max(1) as f64)
    }
}

/// A duration as `1h05m`, `3m20s`, `42s` (status lines, the dashboard's ETA).
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.round().max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A count with an SI prefix: 1234567 → `1.235M`, 2e12 → `2T`, 512 → `512`.
pub fn si(x: f64) -> String {
    let (v, unit) = match x.abs() {
        a if a >= 1e15 => (x / 1e15, "P"),
        a if a >= 1e12 => (x / 1e12, "T"),
        a if a >= 1e9 => (x / 1e9, "G"),
        a if a >= 1e6 => (x / 1e6, "M"),
        a if a >= 1e3 => (x / 1e3, "k"),
        _ => return format!("{x:.0}"),
    };
    format!("{v:.3}{unit}").replace(".000", "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopscale_config::{Lineage, Role, RunConfig};

    fn config(lineage: Option<Lineage>) -> RunConfig {
        RunConfig {
            data: Default::default(),
            train: Default::default(),
            model: Default::default(),
            seed: 0,
            lineage,
        }
    }

    #[test]
    fn a_blocked_run_is_not_counted_as_finished_nor_as_done_work() {
        let mut p = Progress::new(3, 0, 30.0, 0.0, true);
        p.finished("a", 10.0, RunStatus::Done, Some(1.0), false);
        p.finished("b", 10.0, RunStatus::Blocked, None, false);
        assert_eq!(p.finished_runs, 1);
        assert_eq!(p.runs_line(), "runs 1/3, 1 blocked");
        assert!((p.fraction() - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn a_resumed_branch_counts_only_its_own_progress() {
        let whole = RunCost::of(&config(None));
        let half = whole.steps / 2;
        let branch = RunCost::of(&config(Some(Lineage {
            role: Role::Branch,
            parent: Some("trunk".into()),
            parent_step: Some(half),
            branch_points: Vec::new(),
        })));
        let per_step = branch.tokens / branch.steps;
        let mut p = Progress::new(1, 0, branch.own_flops, 0.0, true);
        // Its checkpoint is at the trunk's branch point: none of its own work is done yet.
        p.resumable("branch", branch, half * per_step);
        assert_eq!(p.fraction(), 0.0);
        p.resumable("branch", branch, branch.tokens);
        assert!((p.fraction() - 1.0).abs() < 1e-12);
        // Started fresh, the same: zero, not the trunk's share.
        let mut q = Progress::new(1, 0, branch.own_flops, 0.0, true);
        q.started("branch", branch);
        assert_eq!(q.fraction(), 0.0);
    }
}
