//! One run's fully resolved configuration and its stable key: what a sweep expands into and
//! what training, the store and the engine consume.
//!
//! This crate sits below `sweep` and `train`, so that both build on it without either
//! importing the other: the `[data]` and `[train]` tables are in [`tables`], the `[model]` table
//! is the model's own [`ModelConfig`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod tables;

pub use loopscale_model::{ModelConfig, Precision};
pub use tables::{
    BUILTIN_TOKENIZERS, Backend, COMMAND_PLACEHOLDERS, CooldownShape, DEFAULT_DIVERGENCE_FACTOR,
    DEFAULT_SHORTCUT_LAMBDA, DataConfig, DataOrder, DeepSupervision, OptimizerKind,
    SHIPPED_CORPORA, SHIPPED_CORPUS, Schedule, Targets, Task, TrainConfig, builtin_vocab, data_dir,
    resolve_corpus_path,
};

/// Everything that determines a run's result. Two runs with equal `RunConfig`s are the same run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub data: DataConfig,
    pub train: TrainConfig,
    pub model: ModelConfig,
    pub seed: u64,
    /// Where the run starts when not from scratch: another run of the sweep (set by the sweep,
    /// never written in a sweep file). Part of the key, so changing a parent retrains its
    /// children; absent from the canonical form for a run that stands alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Lineage>,
}

/// A run's place in a tree of runs built on runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    pub role: Role,
    /// The run this one starts from (none for a trunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The parent's step whose checkpoint it starts from; none = the parent's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_step: Option<u64>,
    /// A trunk's branch points: the steps whose checkpoints its branches start from. In the
    /// key, so a family that gains a member gets a new trunk (one that keeps the checkpoint the
    /// new branch needs) instead of finding the finished one without it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branch_points: Vec<u64>,
}

/// What a run is in its tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The shared constant-learning-rate prefix of WSD branches: not a result of its own (its
    /// learning rate never cooled down), so fits and charts leave it out.
    Trunk,
    /// A WSD cooldown started from its trunk's checkpoint.
    Branch,
    /// A looped model recast from a finished GPT (LoopUS).
    Recast,
    /// A looped model post-trained from a finished looped one into a shared KV cache (MELT).
    Melt,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Trunk => "trunk",
            Role::Branch => "branch",
            Role::Recast => "recast",
            Role::Melt => "melt",
        }
    }
}

impl RunConfig {
    /// The run this one starts from, if any.
    pub fn parent(&self) -> Option<&str> {
        self.lineage.as_ref()?.parent.as_deref()
    }

    /// Whether this run is a WSD trunk (a means to its branches, not a result).
    pub fn is_trunk(&self) -> bool {
        self.lineage.as_ref().is_some_and(|l| l.role == Role::Trunk)
    }
}

impl RunConfig {
    /// Training FLOPs per token of this run: the model's count for the data's ends
    /// ([`DataConfig::io`]), with the short trajectory added under
    /// `train.shortcut_consistency` (`model::counts`).
    /// Under `train.loss_last_loops = T` each of the last `T − 1` loops also decodes its output
    /// (readout, coda, final norm, head), forward and backward.
    pub fn train_flops_per_token(&self) -> f64 {
        let (m, seq, io) = (&self.model, self.data.seq_len, self.data.io());
        let extra_decodes = match (self.train.loss_last_loops, &m.looped) {
            (Some(t), Some(_)) if m.arch == loopscale_model::Arch::Looped => {
                t.saturating_sub(1) as f64
                    * loopscale_model::decode_train_flops_per_token(m, io, seq)
            }
            _ => 0.0,
        };
        extra_decodes
            + if self.train.shortcut_consistency {
                loopscale_model::shortcut_train_flops_per_token(m, io, seq)
            } else {
                loopscale_model::train_flops_per_token(m, io, seq)
            }
    }

    /// The canonical form: compact JSON with fields in declaration order and absent options
    /// omitted. Its hash is the run key.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("RunConfig always serialises")
    }

    /// Stable 16-hex-digit key: the first 64 bits of SHA-256 of the canonical form, leaving
    /// out the settings that cannot change a result ([`OPERATIONAL_KEYS`]), so that checkpointing
    /// more or less often never turns a finished run into a new one.
    pub fn key(&self) -> String {
        let mut value = serde_json::to_value(self).expect("RunConfig always serialises");
        if let Some(train) = value.get_mut("train").and_then(|t| t.as_object_mut()) {
            for key in OPERATIONAL_KEYS {
                train.remove(*key);
            }
        }
        let canonical = serde_json::to_string(&value).expect("a JSON value always serialises");
        let digest = Sha256::digest(canonical.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `[train]` keys that say how a run is executed, not what it computes: they are stored with the
/// run but are not part of its key. Training is bit-identical whatever their value (random draws
/// are keyed by step, and a resumed run continues from exactly the saved state).
pub const OPERATIONAL_KEYS: &[&str] = &["checkpoint_every", "keep_checkpoints"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_frequency_does_not_change_the_key_but_the_learning_rate_does() {
        let base = RunConfig {
            data: DataConfig::default(),
            train: TrainConfig::default(),
            model: ModelConfig::default(),
            seed: 0,
            lineage: None,
        };
        let mut other = base.clone();
        other.train.checkpoint_every += 7;
        assert_eq!(base.key(), other.key());
        other.train.lr *= 2.0;
        assert_ne!(base.key(), other.key());
    }
}
