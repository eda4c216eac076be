//! Exports of a query, a table or a view to a file, for pandas and polars users: Parquet through
//! the same polars frame the analysis reads ([`to_frame`] of the store's typed [`Columns`]:
//! integers stay integers, reals f64, text strings, NULLs null), CSV as the exact bytes
//! `loopscale sql --csv` prints ([`QueryResult::to_csv`], the one CSV writer).
//!
//! Every check that can fail runs before anything is written, and the file is written beside
//! its destination and renamed into place, so a failed export leaves no file behind.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use polars::prelude::ParquetWriter;

use super::columns::to_frame;
use loopscale_store::{Columns, QueryResult, Store};

/// What an export writes, chosen by the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
}

impl Format {
    /// The format a path's extension names (`.parquet` or `.csv`); `flag` is the option the path
    /// came from, for the error.
    pub fn of_path(path: &Path, flag: &str) -> Result<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("parquet") => Ok(Format::Parquet),
            Some(e) if e.eq_ignore_ascii_case("csv") => Ok(Format::Csv),
            _ => bail!(
                "{flag} {}: expected a file ending in .parquet or .csv (the extension picks the format)",
                path.display()
            ),
        }
    }
}

/// Checks that `path` can be written before any query runs: its directory exists and it is
/// not a directory itself.
pub fn check_destination(path: &Path, flag: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "{flag} {}: the directory {} does not exist; create it first (mkdir -p {})",
            path.display(),
            dir.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        bail!(
            "{flag} {}: is a directory; give a file name",
            path.display()
        );
    }
    Ok(())
}

/// Runs `query` (read-only) on `store` and writes its rows to `path` in `format`; returns the
/// number of rows written.
pub fn export_query(store: &Store, query: &str, path: &Path, format: Format) -> Result<usize> {
    match format {
        Format::Parquet => {
            let columns = store.query_columns(query)?;
            let rows = columns.rows;
            write_parquet(columns, path)?;
            Ok(rows)
        }
        Format::Csv => {
            let result = store.query(query)?;
            write_csv(&result, path)?;
            Ok(result.rows.len())
        }
    }
}

/// The query that reads a whole table or view, after checking that `store` has one named
/// `name` (the error lists those it has).
pub fn whole_relation(store: &Store, name: &str) -> Result<String> {
    let names = store.relations()?;
    if !names.iter().any(|n| n == name) {
        bail!(
            "{}: no table or view named `{name}`; expected one of: {} (docs/schema.md describes each)",
            store.path().display(),
            names.join(", ")
        );
    }
    Ok(format!("SELECT * FROM \"{}\"", name.replace('"', "\"\"")))
}

/// Writes typed columns as Parquet, through the analysis's polars frame.
pub fn write_parquet(columns: Columns, path: &Path) -> Result<()> {
    let mut frame = to_frame(columns)?;
    write_beside(path, |file| {
        ParquetWriter::new(file).finish(&mut frame)?;
        Ok(())
    })
}

/// Writes a query's rows as the CSV `loopscale sql --csv` prints.
pub fn write_csv(result: &QueryResult, path: &Path) -> Result<()> {
    let text = result.to_csv();
    write_beside(path, |file| {
        use std::io::Write;
        file.write_all(text.as_bytes())?;
        Ok(())
    })
}

/// Writes to a hidden file beside `path` and renames it into place: a reader never sees half a
/// file, and an error leaves nothing behind.
fn write_beside(path: &Path, write: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let partial: PathBuf = path.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    let result = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))
        .and_then(|mut file| {
            write(&mut file)?;
            file.sync_all()?;
            Ok(())
        })
        .and_then(|()| {
            std::fs::rename(&partial, path)
                .with_context(|| format!("moving {} to {}", partial.display(), path.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result.with_context(|| format!("writing {}", path.display()))
}
