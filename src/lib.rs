//! loopscale: scaling-law sweeps for looped (Parcae) and baseline language models.
//!
//! Data flows one way: a sweep file ([`sweep`]) expands into runs, each a resolved
//! [`config::RunConfig`]; each run trains a model ([`model`], [`train`]) under the [`engine`];
//! every number lands in the SQLite [`store`]; [`analysis`] reads the store (or a CSV file) into
//! frames and points; [`fit`] fits scaling laws to points; [`plot`] draws the charts and
//! [`report`] writes them with the tables as a self-contained report; [`serve`] shows a sweep
//! live in the browser; [`cli`] is the commands.
//!
//! Each layer is a crate of the workspace (`crates/`), re-exported here under its module name,
//! and each crate depends only on the crates below it, so the compiler forbids an import
//! upwards (ARCHITECTURE.md):
//!
//! | layer | crates |
//! |---|---|
//! | presentation | `loopscale` ([`cli`]) → [`serve`] → [`report`] → [`plot`] |
//! | reading results | [`analysis`] → [`fit`] (pure mathematics: no candle, no SQLite) |
//! | executing | [`engine`] → [`sweep`] → [`store`] → [`train`] |
//! | foundations | [`config`] → [`model`] (depends on no other loopscale crate) |

pub use loopscale_analysis as analysis;
pub use loopscale_chart as chart;
pub use loopscale_config as config;
pub use loopscale_engine as engine;
pub use loopscale_fit as fit;
pub use loopscale_model as model;
pub use loopscale_plot as plot;
pub use loopscale_report as report;
pub use loopscale_serve as serve;
pub use loopscale_store as store;
pub use loopscale_sweep as sweep;
pub use loopscale_train as train;

pub mod cli;
