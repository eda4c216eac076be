//! loopscale: scaling-law sweeps for looped (Parcae) and baseline language models.
//!
//! Data flows one way: a sweep file ([`sweep`]) expands into runs, each a resolved
//! [`config::RunConfig`]; each run trains a model ([`model`], [`train`]) under the [`engine`];
//! every number lands in the SQLite [`store`]; [`analysis`] reads the store (or a CSV file) into
//! frames and points; [`fit`] fits scaling laws to points; [`plot`] draws the charts and
//! [`report`] writes them with the tables as a self-contained report; [`cli`] is the commands.
//!
//! Modules are layered: each imports only modules below it in this list (README, "Layout").
//!
//! | layer | modules |
//! |---|---|
//! | presentation | [`cli`] → [`report`] → [`plot`] |
//! | reading results | [`analysis`] → [`fit`] (pure mathematics: imports no other module) |
//! | executing | [`engine`] → [`sweep`] → [`store`] → [`train`] |
//! | foundations | [`config`] → [`model`] (imports no other module) |
//!
//! `scripts/check-layers.sh` (run by CI) fails on an import that breaks this order.

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
pub mod train;
