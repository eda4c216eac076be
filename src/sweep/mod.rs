//! Sweep files: TOML spec → validated grid of runs, each with a stable key.

mod config;

pub use config::RunConfig;
