//! `loopscale serve`: a live, read-only dashboard of a sweep over HTTP (axum on tokio).
//!
//! Pages: the sweep overview (one line per run, the ETA and the workers, kept live by
//! server-sent events), the loss curves (SVG drawn here, coloured by an axis, replicate groups
//! as mean and band), a run's page (configuration, lineage, attempts and their errors, metric and
//! eval tables, its files), the report's charts and fitted laws (rebuilt in the background when
//! runs finish), and a box for one read-only SQL statement with a CSV download.
//!
//! Nothing here writes: the database is opened read-only for every look at it (never a write
//! lock, and a database replaced by `collect` is simply read again), there is no endpoint that
//! changes anything, only the files of the sweep's own run folders are served, and queries,
//! URLs and request bodies have size limits. docs/serve.md is the user's guide.
//!
//! Files: `source` (SOURCE and the read-only opens), `overview`, `curves` and `stream` (what the
//! live pages show), `fits` (the background report), `sql` (the box's rules), `pages` (HTML),
//! `server` (routes, limits, the runtime).

mod curves;
mod fits;
mod overview;
mod pages;
mod server;
mod source;
mod sql;
mod stream;

pub use server::{Options, Server};
