//! The networks: a pre-norm GPT and the looped (Parcae) model built from the same block,
//! plus their parameter and FLOP counts.

mod config;

pub use config::{Arch, DepthSampling, Injection, LoopedConfig, Mlp, ModelConfig, StateInit};
