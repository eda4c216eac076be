//! Which parts each looped variant gives the Parcae core ([`super::parts`]), built from the
//! configuration: the only place that maps a config's switches to variant types.
//!
//! | switch | part | variant |
//! |---|---|---|
//! | `loop_conditioning = "time_step"` | [`Conditioner`](super::parts::Conditioner): [`CoreConditioning`] | LoopFormer |
//! | `loop_gate = "selective"` | [`StateUpdate`](super::parts::StateUpdate): [`SelectiveGate`] | LoopUS |
//! | `exit_head = true` | [`ExitPolicy`](super::parts::ExitPolicy): [`ExitHead`] | LoopUS |
//! | `melt_from` set | [`CacheGate`](super::parts::CacheGate): [`KvGate`] | MELT |
//!
//! Recasting a trained GPT into a looped model (LoopUS) changes the weights, not the parts:
//! [`super::recast`].

use candle_core::Result;

use super::conditioning::CoreConditioning;
use super::config::{LoopConditioning, LoopGate, LoopedConfig, ModelConfig};
use super::layers::{BlockInit, init_std};
use super::loopus::{ExitHead, SelectiveGate};
use super::melt::KvGate;
use super::params::ParamStore;
use super::parts::LoopParts;

/// How the core's blocks start. A conditioned core's gates start at zero (identity blocks);
/// scaled-zero's zero output projections on top would leave both factors of `g ⊙ W_out(..)`
/// without a gradient, so a conditioned core's output projections start orthogonal at the
/// input scale. `core_cfg` is the core's width; `depth` the unrolled depth at the mean.
pub fn core_init(lc: &LoopedConfig, core_cfg: &ModelConfig, depth: usize) -> BlockInit {
    let init = BlockInit::of(core_cfg, depth);
    match (lc.loop_conditioning, init.out_std) {
        (LoopConditioning::TimeStep, None) => BlockInit {
            out_std: Some(init.std),
            ..init
        },
        _ => init,
    }
}

/// The parts `lc` asks for, their parameters registered in `params` (in this order:
/// conditioning, gate, exit head, cache gate).
pub fn build(params: &mut ParamStore, cfg: &ModelConfig, lc: &LoopedConfig) -> Result<LoopParts> {
    let r = lc.recurrent_width(cfg.d_model);
    let mut parts = LoopParts::default();
    if lc.loop_conditioning == LoopConditioning::TimeStep {
        let std = init_std(cfg.init, r);
        parts.conditioner = Some(Box::new(CoreConditioning::new(params, r, lc.n_core, std)?));
    }
    if lc.loop_gate == LoopGate::Selective {
        let std = init_std(cfg.init, r);
        parts.update = Some(Box::new(SelectiveGate::new(params, r, std)?));
    }
    if lc.exit_head {
        parts.exit = Some(Box::new(ExitHead::new(params, r, cfg.norm_eps)?));
    }
    if cfg.melt_from.is_some() {
        parts.cache_gate = Some(Box::new(KvGate::new(params, r, lc.n_core, cfg.n_heads)?));
    }
    Ok(parts)
}
