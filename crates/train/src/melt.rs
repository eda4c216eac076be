//! Starting a MELT run from its parent (`model.melt_from`): the parent looped run's final
//! checkpoint in, the student (the same model with a shared, gated KV cache per core block,
//! `model::melt`) initialised from it and the frozen teacher (the parent itself) out. The
//! two-phase objective is `super::objectives::melt_loss`.

use std::path::Path;

use anyhow::Context;
use candle_core::{Device, Result, Tensor};

use super::trainer::TRAIN_DTYPE;
use loopscale_config::RunConfig;
use loopscale_model::melt::init_from_parent;
use loopscale_model::recast::load_params;
use loopscale_model::{Arch, CausalLm, Looped, ParamStore};

/// A MELT student with its teacher: what the trainer drives (the student's parameters, its
/// logits) and what the objective distils from.
pub struct MeltTraining {
    pub student: Looped,
    pub teacher: Looped,
}

impl CausalLm for MeltTraining {
    fn logits(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.student.logits(input_ids)
    }

    fn as_looped(&self) -> Option<&Looped> {
        Some(&self.student)
    }

    fn melt_teacher(&self) -> Option<&Looped> {
        Some(&self.teacher)
    }

    fn params(&self) -> &ParamStore {
        self.student.params()
    }
}

/// The student and teacher of MELT run `cfg` from its parent looped run `parent_cfg`'s final
/// checkpoint `parent_ckpt`, for a vocabulary of `vocab`. Train the result with
/// [`super::train_model_resumable`] under `cfg`; a resumed run loads its own checkpoint over
/// the student, so building again on resume is harmless.
pub fn build_melt_model(
    cfg: &RunConfig,
    parent_cfg: &RunConfig,
    parent_ckpt: &Path,
    vocab: usize,
    device: &Device,
) -> anyhow::Result<MeltTraining> {
    anyhow::ensure!(
        parent_cfg.model.arch == Arch::Looped && parent_cfg.model.melt_from.is_none(),
        "a MELT run starts from a looped model; its parent is {:?}{}",
        parent_cfg.model.arch,
        if parent_cfg.model.melt_from.is_some() {
            " (a MELT run itself)"
        } else {
            ""
        }
    );
    anyhow::ensure!(
        cfg.model.arch == Arch::Looped && cfg.model.melt_from.is_some(),
        "a MELT run is a looped model with model.melt_from set"
    );
    let parent = super::checkpoint::load_parent_params(parent_ckpt, device)?;
    let teacher = Looped::new(
        &parent_cfg.model,
        vocab,
        parent_cfg.data.seq_len,
        parent_cfg.seed,
        TRAIN_DTYPE,
        device,
    )?;
    load_params(teacher.params(), &parent).context("loading the parent looped model")?;
    let student = Looped::new(
        &cfg.model,
        vocab,
        cfg.data.seq_len,
        cfg.seed,
        TRAIN_DTYPE,
        device,
    )?;
    init_from_parent(student.params(), &parent)
        .with_context(|| format!("MELT from {}", parent_ckpt.display()))?;
    Ok(MeltTraining { student, teacher })
}
