//! Resources before training: whether a run fits this machine's memory, and what to say when a
//! worker died of it anyway.
//!
//! The estimate is [`RunCost`]'s (weights, gradients, AdamW moments, activations). `run` refuses
//! a sweep with a run whose estimate exceeds the machine's memory, naming the run and the figure,
//! before anything trains; a worker checks again on the machine it lands on (a Slurm node may
//! differ from the machine that submitted). A worker killed by the kernel or aborted by a failed
//! allocation is recorded with that explanation, not with an empty log tail.

use std::process::ExitStatus;

use loopscale_config::RunConfig;
use loopscale_train::RunCost;

const GIB: f64 = (1u64 << 30) as f64;

/// This machine's memory in bytes (`MemTotal` of `/proc/meminfo`); `None` where unknown.
pub fn machine_memory_bytes() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// `x` bytes with sensible units and digits ("48 MiB", "2.31 GiB", "412 GiB", "3.7e5 GiB").
pub fn gib(bytes: f64) -> String {
    let g = bytes / GIB;
    match g {
        g if g < 1.0 => format!("{:.0} MiB", (g * 1024.0).max(1.0)),
        g if g < 10.0 => format!("{g:.2} GiB"),
        g if g < 1e4 => format!("{g:.0} GiB"),
        g => format!("{g:.1e} GiB"),
    }
}

/// Refuses the first run whose peak memory estimate exceeds this machine's memory.
pub fn check_fits<'a>(
    runs: impl IntoIterator<Item = (&'a String, &'a RunConfig)>,
    jobs: usize,
) -> anyhow::Result<()> {
    let Some(machine) = machine_memory_bytes() else {
        return Ok(());
    };
    let mut largest = 0.0f64;
    for (key, config) in runs {
        largest = largest.max(check_run_fits(key, config, machine)?);
    }
    if jobs > 1 && largest * jobs as f64 > machine {
        eprintln!(
            "warning: {jobs} workers of the largest run need about {} together, this machine \
             has {}; if workers are killed, run with fewer --jobs",
            gib(largest * jobs as f64),
            gib(machine)
        );
    }
    Ok(())
}

/// An error naming the run and both figures when its estimate exceeds `machine` bytes; else
/// the estimate (0 for a run another program trains).
pub fn check_run_fits(key: &str, config: &RunConfig, machine: f64) -> anyhow::Result<f64> {
    if !config.train.backend.is_builtin() {
        // Another program trains it, perhaps on a GPU: the estimate is the built-in trainer's.
        return Ok(0.0);
    }
    let cost = RunCost::of(config);
    if cost.peak_memory_bytes > machine {
        anyhow::bail!(
            "run {key} needs about {} of memory to train ({} parameters: weights, gradients and \
             AdamW state, plus activations at batch {} × seq_len {}), and this machine has {}; \
             make the model or the batch smaller, or train it on a larger machine \
             (`--executor slurm`). `loopscale plan` shows every run's estimate.",
            gib(cost.peak_memory_bytes),
            cost.params,
            config.train.batch_size,
            config.data.seq_len,
            gib(machine)
        );
    }
    Ok(cost.peak_memory_bytes)
}

/// What to record for a worker that ended without recording its run's end.
pub fn explain_exit(exit: ExitStatus, log_tail: &str, config: &RunConfig) -> String {
    use std::os::unix::process::ExitStatusExt;
    let estimate = || {
        let machine = machine_memory_bytes()
            .map(|m| format!(", this machine has {}", gib(m)))
            .unwrap_or_default();
        format!(
            "the run needs about {} by plan's estimate{machine}",
            gib(RunCost::of(config).peak_memory_bytes)
        )
    };
    let out_of_memory = log_tail.contains("memory allocation of");
    let cause = match exit.signal() {
        Some(libc::SIGABRT) if out_of_memory || log_tail.trim().is_empty() => Some(format!(
            "worker ran out of memory (a failed allocation aborted it); {}",
            estimate()
        )),
        Some(libc::SIGKILL) => Some(format!(
            "worker was killed (SIGKILL), most often by the kernel's out-of-memory killer; {}",
            estimate()
        )),
        _ => None,
    };
    match cause {
        Some(cause) => format!("{cause}; worker exited with {exit}; log tail:\n{log_tail}"),
        None => format!("worker exited with {exit}; log tail:\n{log_tail}"),
    }
}
