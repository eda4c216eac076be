//! Analysis frames: polars DataFrames of a sweep database, shared by the report, the plots and
//! `fit`, so each question is answered once.
//!
//! Rows come from the store ([`loopscale_store::Table`]; only the store writes SQL) and become
//! frames here ([`frames`]); the derived views the science needs are computed on the frames:
//! run labels that name what varies ([`labels`]), FLOP budgets for iso-FLOP analysis
//! ([`budgets`]), and pivot tables for the report ([`pivot`]). Small column helpers
//! ([`columns`]) turn frame columns back into plain vectors for plotting and fitting.
//!
//! This is also where `loopscale_fit` meets the data: [`source`] reads a fit's points from a
//! database and [`csv`] from a CSV file; [`record`] turns a fit's result into the plain
//! record the store writes; [`law_fit`] is the one way from a source and a law (built in or
//! written) to a fit and its records, for `loopscale fit`, `suggest` and [`fits`], the report's
//! fits. [`envelope`] keeps the best run
//! of each configuration of a tuned sweep (`--tune train.lr`) for every law and chart.
//!
//! Data flows one way through these files (`tests/layering.rs` checks it): [`columns`],
//! [`labels`], [`unrolled`], [`tasks`] and [`budgets`] use no other analysis file; [`run_rows`]
//! (the runs frame's columns read once into typed rows) and [`csv`] (a CSV file as a typed
//! frame, and its points) use [`columns`]; [`frames`] uses those; [`envelope`] the frames; [`source`] the envelope; [`written`] (laws
//! written as expressions: their specs and columns) the sources; [`law_fit`] the sources, the
//! written laws and the record; [`fits`] the sources and the orchestrator. [`export`] (a query,
//! table or view written as Parquet or CSV) uses [`columns`] only. [`group_points`] (charts'
//! points as replicate-group means with their standard errors) uses the groups and the frames.
//! [`chart_data`] is the chart-data stage: every chart's series computed from the frames and the
//! fits as a `loopscale_chart::Figure` (the plot crate only draws them) and the report tables
//! that show a chart's numbers; it uses the fits, the group points, the groups, the pivots and
//! the frames, and nothing here uses it.

pub mod budgets;
pub mod chart_data;
pub mod columns;
pub mod csv;
pub mod envelope;
pub mod export;
pub mod fits;
pub mod frames;
pub mod group_points;
pub mod groups;
pub mod labels;
pub mod law_fit;
pub mod pivot;
pub mod record;
pub mod run_rows;
pub mod source;
pub mod tasks;
pub mod unrolled;
pub mod written;

pub use budgets::{BUDGET_TOLERANCE, with_budgets};
pub use columns::{f64s, filter_rows, opt_f64s, strs};
pub use csv::{CsvColumns, read_points};
pub use frames::Frames;
pub use pivot::pivot_mean;
pub use record::fit_record;
pub use source::is_database;
pub use unrolled::ParamCount;
