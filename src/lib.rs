//! loopscale: scaling-law sweeps for looped (Parcae) and baseline language models.
//!
//! Data flows one way: a sweep file ([`sweep`]) expands into runs; each run trains a model
//! ([`model`], [`train`]) under the [`engine`]; every number lands in the SQLite [`store`];
//! [`analysis`] reads the store into polars frames; [`fit`] fits scaling laws to them; [`plot`]
//! draws the charts and [`report`] writes them with the tables as a self-contained report.

pub mod analysis;
pub mod cli;
pub mod config;
pub mod engine;
pub mod fit;
pub mod model;
pub mod plot;
pub mod report;
pub mod store;
pub mod sweep;
pub mod table;
pub mod train;
