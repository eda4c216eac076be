//! The integration tests, as one test binary: each file beside this one is a module, so the
//! suite links loopscale (and polars, candle) once instead of once per file.
//!
//! Run one file's tests with a filter: `cargo test --test suite fit_synthetic::`. `make test`
//! runs everything, the `engine_faults::` and `slurm::` tests last and alone
//! (`--test-threads=1`): they kill workers of running sweeps (at steps read from the workers'
//! run stores) and wait on a real Slurm, with time limits that assume the machine is theirs.
//! Slurm tests (`slurm::`) need a one-node Slurm (`scripts/slurm-one-node.sh start`, as root);
//! where it cannot start they fail, unless `LOOPSCALE_SKIP_SLURM=1` says to skip them.

mod common;

mod branches;
mod candle_backprop;
mod command_backend;
mod compare;
mod data_order;
mod data_tokens;
mod engine_faults;
mod engine_run;
mod export;
mod fit_chinchilla;
mod fit_cli;
mod fit_data;
mod fit_gradients;
mod fit_parcae;
mod fit_synthetic;
mod fit_tune;
mod fit_written;
mod fused_ops;
mod generate;
mod layering;
mod loopformer;
mod melt;
mod model_counts;
mod model_gradcheck;
mod model_init;
mod model_looped;
mod model_mup;
mod precision;
mod recast;
mod report;
mod run_store;
mod serve;
mod slurm;
mod store;
mod store_concurrency;
mod suggest;
mod suggest_pool;
mod suggest_written;
mod sweep_errors;
mod sweep_grid;
mod sweep_mup;
mod tasks;
mod train_looped;
mod train_optimizer;
mod train_resume;
mod train_run;
