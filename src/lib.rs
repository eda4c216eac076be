//! loopscale: scaling-law sweeps for looped (Parcae) and baseline language models.
//!
//! Data flows one way: a sweep file ([`sweep`]) expands into runs; each run trains a model
//! ([`model`], [`train`]) under the [`engine`]; every number lands in the SQLite [`store`];
//! [`fit`] reads the store and fits scaling laws.

pub mod engine;
pub mod cli;
pub mod fit;
pub mod model;
pub mod store;
pub mod sweep;
pub mod table;
pub mod train;
