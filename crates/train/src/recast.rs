//! Starting a run from a recast parent (LoopUS): the parent GPT's checkpoint in, a looped model
//! initialised from it out, with the split it used. The mapping, the initialisation and the
//! split criterion are `model::recast`'s; this module reads the checkpoint and the validation
//! data they need.

use std::path::Path;

use anyhow::Context;
use candle_core::Device;

use super::data::Corpus;
use super::trainer::TRAIN_DTYPE;
use loopscale_config::RunConfig;
use loopscale_model::grad::no_grad;
use loopscale_model::recast::{
    Split, SplitChoice, block_dynamics, choose_core, init_from_gpt, load_params, recast_config,
};
use loopscale_model::{Arch, Gpt, Looped, RecastSplit};

/// Builds the looped model of run `cfg` from its parent GPT's finished checkpoint
/// `parent_ckpt` (a `ckpt-<s>.safetensors` of the run `parent_cfg`): resolves the split
/// (`model.recast_split`, or `"auto"`: the parent's representation dynamics on the
/// validation split of `corpus`), builds the looped model with the GPT's widths and that split
/// (seeded by `cfg.seed` for the looped-only parts), and copies the GPT's weights in.
///
/// Train the result with [`super::train_model_resumable`] under `cfg`: with an automatic split
/// the model's `n_prelude`/`n_coda` may differ from `cfg`'s, but their sum (and so every
/// parameter and FLOP count) does not. A resumed child loads its own checkpoint over these
/// weights, so calling this again on resume is harmless (and chooses the same split).
pub fn build_recast_model(
    cfg: &RunConfig,
    parent_cfg: &RunConfig,
    parent_ckpt: &Path,
    corpus: &Corpus,
    device: &Device,
) -> anyhow::Result<(Looped, SplitChoice)> {
    anyhow::ensure!(
        parent_cfg.model.arch == Arch::Gpt,
        "a recast run starts from a GPT; its parent is {:?}",
        parent_cfg.model.arch
    );
    let looped = cfg
        .model
        .looped
        .as_ref()
        .filter(|_| cfg.model.arch == Arch::Looped)
        .context("a recast run must be a looped model (model.arch = \"looped\")")?;
    let n_layers = parent_cfg.model.n_layers;
    anyhow::ensure!(
        looped.blocks() == n_layers,
        "a recast run keeps its parent's {n_layers} blocks: n_prelude + n_core + n_coda = {} + {} + {}",
        looped.n_prelude,
        looped.n_core,
        looped.n_coda
    );
    let parent = super::checkpoint::load_parent_params(parent_ckpt, device)?;
    let choice = match looped.recast_split {
        Some(RecastSplit::Blocks([start, end])) => SplitChoice {
            split: Split { start, end },
            dynamics: None,
        },
        None | Some(RecastSplit::Auto(_)) => {
            let gpt = Gpt::new(
                &parent_cfg.model,
                corpus.vocab_size(),
                parent_cfg.data.seq_len,
                parent_cfg.seed,
                TRAIN_DTYPE,
                device,
            )?;
            load_params(loopscale_model::CausalLm::params(&gpt), &parent)
                .context("loading the parent GPT")?;
            let t = &cfg.train;
            let inputs: Vec<_> = corpus
                .validation_batches(cfg.data.seq_len, t.batch_size, t.eval_tokens, device)?
                .into_iter()
                .map(|b| b.inputs)
                .collect();
            let dynamics = no_grad(|| block_dynamics(&gpt, &inputs))?;
            let split = choose_core(&dynamics.relative_change, looped.n_core)
                .map_err(anyhow::Error::msg)?;
            SplitChoice {
                split,
                dynamics: Some(dynamics),
            }
        }
    };
    let model_cfg =
        recast_config(&parent_cfg.model, &cfg.model, choice.split).map_err(anyhow::Error::msg)?;
    let model = Looped::new(
        &model_cfg,
        corpus.vocab_size(),
        cfg.data.seq_len,
        cfg.seed,
        TRAIN_DTYPE,
        device,
    )?;
    init_from_gpt(&model, &parent, choice.split)
        .with_context(|| format!("recasting {}", parent_ckpt.display()))?;
    Ok((model, choice))
}
