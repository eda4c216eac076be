//! One run's fully resolved configuration and its stable key.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::ModelConfig;
use crate::train::{DataConfig, TrainConfig};

/// Everything that determines a run's result. Two runs with equal `RunConfig`s are the same run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub data: DataConfig,
    pub train: TrainConfig,
    pub model: ModelConfig,
    pub seed: u64,
}

impl RunConfig {
    /// The canonical form: compact JSON with fields in declaration order and absent options
    /// omitted. Its hash is the run key.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("RunConfig always serialises")
    }

    /// Stable 16-hex-digit key: the first 64 bits of SHA-256 of the canonical form.
    pub fn key(&self) -> String {
        let digest = Sha256::digest(self.canonical_json().as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}
