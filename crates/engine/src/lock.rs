//! The sweep lock: one coordinator per database at a time, so no run is ever trained twice.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// An exclusive advisory lock on `<db>.lock`, held for the coordinator's lifetime. The OS drops
/// it when the process ends, however it ends, so a crash never leaves a sweep locked.
pub struct SweepLock {
    _file: File,
    pub path: PathBuf,
}

impl SweepLock {
    pub fn acquire(db: &Path) -> anyhow::Result<SweepLock> {
        let path = lock_path(db);
        // The database's folder may not exist yet (a `db` in a new results folder).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("{}: cannot open the sweep lock: {e}", path.display()))?;
        if file.try_lock().is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            anyhow::bail!(
                "{}: another `loopscale run` is already running on this database ({}). \
                 Wait for it to finish, or stop it (Ctrl-C) and run again.",
                db.display(),
                holder.trim()
            );
        }
        // Record who holds it, for the message above.
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        let _ = write!(file, "pid {}", std::process::id());
        let _ = file.flush();
        Ok(SweepLock { _file: file, path })
    }
}

pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    db.with_file_name(name)
}
