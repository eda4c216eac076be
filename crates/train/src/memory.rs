//! Keeping freed activation memory inside the process between training steps, and the
//! process's peak resident memory (recorded with each run, so memory claims are measured).
//!
//! A training step allocates and frees the same few hundred activation and gradient buffers,
//! many of them megabytes. glibc's malloc serves blocks above its mmap threshold with a fresh
//! `mmap` and returns them with `munmap`, and trims the heap top back to the kernel: every step
//! then page-faults its whole working set in again (kernel zeroing, TLB shootdowns). Measured on
//! the bench's GPT this was about a quarter of the step in kernel time. Raising the thresholds
//! once lets freed blocks be reused; the process keeps its peak step footprint, which it needs
//! again at the next step anyway.

use std::sync::Once;

/// Largest mmap threshold glibc accepts on 64-bit targets (`DEFAULT_MMAP_THRESHOLD_MAX`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_MAX: libc::c_int = 32 << 20;

/// Tells the allocator to keep freed memory; once per process, later calls do nothing.
pub fn keep_freed_memory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator parameters; it is called before training's
        // threads allocate and each call is checked.
        unsafe {
            let ok = libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
                && libc::mallopt(libc::M_TOP_PAD, 64 << 20) == 1;
            if !ok {
                eprintln!("warning: could not tune malloc; training runs, but slower");
            }
        }
    });
}

/// This process's peak resident set size in bytes (`VmHWM` of `/proc/self/status`): heap and
/// the pages of memory-mapped shards it touched; `None` where unknown.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
